package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// schemaKeys walks the HCL struct tags from t down, and returns every
// attribute key by block path ("certificate.template"), so the test below
// sees a key the moment it is added to the schema.
func schemaKeys(t reflect.Type, path string, out map[string][]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if _, ok := out[path]; !ok {
		out[path] = nil
	}
	for i := range t.NumField() {
		tag, ok := t.Field(i).Tag.Lookup("hcl")
		if !ok {
			continue
		}
		name, kind, _ := strings.Cut(tag, ",")
		switch kind {
		case "", "optional":
			out[path] = append(out[path], name)
		case "block":
			child := name
			if path != "" {
				child = path + "." + name
			}
			schemaKeys(t.Field(i).Type, child, out)
		}
	}
}

func TestReferenceCoversTheSchema(t *testing.T) {
	schema := map[string][]string{}
	schemaKeys(reflect.TypeOf(rawFile{}), "", schema)
	ref := LoadReference()
	documented := map[string][]string{}
	for _, s := range ref.Sections {
		if _, dup := documented[s.Path]; dup {
			t.Errorf("reference.txt: block %q appears twice", s.Title)
		}
		documented[s.Path] = nil
		for _, k := range s.Keys {
			if k.Text == "" {
				t.Errorf("reference.txt: %s %s has no description", s.Title, k.Name)
			}
			documented[s.Path] = append(documented[s.Path], k.Name)
		}
	}
	for path, keys := range schema {
		got, ok := documented[path]
		if !ok {
			t.Errorf("reference.txt has no section for block %q (keys %v)", path, keys)
			continue
		}
		for _, k := range keys {
			if !slices.Contains(got, k) {
				t.Errorf("reference.txt does not describe %q in block %q", k, path)
			}
		}
	}
	for path, keys := range documented {
		for _, k := range keys {
			if !slices.Contains(schema[path], k) {
				t.Errorf("reference.txt describes %q in block %q, which the config does not accept", k, path)
			}
		}
	}
	if len(ref.Intro) == 0 {
		t.Error("reference.txt lost its introduction")
	}
}
