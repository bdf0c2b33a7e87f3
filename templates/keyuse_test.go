package templates

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestUsesKey: any read of Key, or any use of the whole certificate value,
// means the output may hold the key, whatever function wraps it. The
// encoded cases are what a dry run's output cannot show: an earlier check
// looked for the placeholder key in the rendered output, and passed
// {{ .Key | base64Encode }} with mode 0644.
func TestUsesKey(t *testing.T) {
	tests := []struct {
		name, text string
		want       bool
	}{
		{"plain key", "{{ with certificate }}{{ .Cert }}{{ .Key }}{{ end }}", true},
		{"base64Encode", "{{ with certificate }}{{ .Key | base64Encode }}{{ end }}", true},
		{"sprig_b64enc", "{{ with certificate }}{{ sprig_b64enc .Key }}{{ end }}", true},
		{"toUpper", "{{ with certificate }}{{ toUpper .Key }}{{ end }}", true},
		{"chain on the function", "{{ certificate.Key | base64URLEncode }}", true},
		{"variable field", "{{ $c := certificate }}{{ $c.Key | sha256Hex }}", true},
		{"whole value to JSON", "{{ certificate | toJSON }}", true},
		{"whole value, encoded", "{{ certificate | toJSON | base64Encode }}", true},
		{"whole value printed", "{{ certificate }}", true},
		{"whole value via dot", "{{ with certificate }}{{ printf \"%v\" . }}{{ end }}", true},
		{"whole value through a variable", "{{ $c := certificate }}{{ $d := $c }}{{ toYAML $d }}", true},
		{"assigned later in a loop", `{{ $c := "" }}{{ range loop 2 }}{{ $c | toJSON }}{{ $c = certificate }}{{ end }}`, true},
		{"in a branch never taken", "{{ if false }}{{ with certificate }}{{ .Key | base64Encode }}{{ end }}{{ end }}", true},
		{"defined template given the certificate", `{{ define "k" }}{{ . | toJSON }}{{ end }}{{ template "k" certificate }}`, true},
		{"defined template reading Key", `{{ define "k" }}{{ .Key | base64Encode }}{{ end }}{{ with certificate }}{{ template "k" . }}{{ end }}`, true},
		{"root variable of a defined template", `{{ define "k" }}{{ $ | toJSON }}{{ end }}{{ template "k" certificate }}`, true},
		{"parenthesised", "{{ (certificate).Key | trimSpace }}", true},
		{"custom delimiters", "[[ with certificate ]][[ .Key | base64Encode ]][[ end ]]", true},

		{"leaf and chain", "{{ with certificate }}{{ .Cert }}{{ .Chain | base64Encode }}{{ end }}", false},
		{"fields by chain", "{{ certificate.Fullchain }}{{ certificate.CA | toUpper }}", false},
		{"variable fields", "{{ $c := certificate }}{{ $c.Cert }}{{ $c.NotAfter.Format \"2006-01-02\" }}", false},
		{"names", "{{ with certificate }}{{ range .DNSNames }}{{ . }}\n{{ end }}{{ .CommonName | toUpper }}{{ end }}", false},
		{"defined template given a field", `{{ define "c" }}{{ . | base64Encode }}{{ end }}{{ template "c" certificate.Cert }}`, false},
		{"defined template reading fields", `{{ define "c" }}{{ .Cert }}{{ end }}{{ template "c" certificate }}`, false},
		{"condition only", "{{ if certificate }}x{{ end }}", false},
		{"no certificate at all", `{{ timestamp "2006" }}`, false},
	}
	for _, tt := range tests {
		in := Input{Text: tt.text}
		if strings.HasPrefix(tt.text, "[[") {
			in.LeftDelim, in.RightDelim = "[[", "]]"
		}
		got, err := UsesKey(in)
		if err != nil || got != tt.want {
			t.Errorf("%s: UsesKey(%s) = %v, %v; want %v", tt.name, tt.text, got, err, tt.want)
		}
		// validate decides through Check; the answer must be the same.
		res, err := Check(in, Certificate{Name: "web", CommonName: "web.example.internal"})
		if err != nil {
			t.Errorf("%s: Check: %v", tt.name, err)
			continue
		}
		if res.IncludesKey != tt.want {
			t.Errorf("%s: Check(%s).IncludesKey = %v, want %v", tt.name, tt.text, res.IncludesKey, tt.want)
		}
	}
}

// TestUsesKeyWithoutRendering: templates the engine refuses at run time
// are judged from their tree all the same.
func TestUsesKeyWithoutRendering(t *testing.T) {
	for _, text := range []string{
		`{{ index certificate "Key" | toLower }}`,
		"{{ range certificate }}{{ end }}",
	} {
		if got, err := UsesKey(Input{Text: text}); err != nil || !got {
			t.Errorf("UsesKey(%s) = %v, %v; want true", text, got, err)
		}
	}
}

func TestStockTemplatesUseTheKey(t *testing.T) {
	for name, want := range map[string]bool{"bundle": true, "haproxy": true, "json": true} {
		in, _ := Stock(name)
		if got, err := UsesKey(in); err != nil || got != want {
			t.Errorf("stock %s: UsesKey = %v, %v; want %v", name, got, err, want)
		}
	}
}

// TestOnlyKeyHoldsTheKey keeps UsesKey's premise true: of the certificate
// value's fields, only Key holds key material, and no field is a struct or
// map that could carry it unseen. A new field of another kind needs
// UsesKey to learn about it.
func TestOnlyKeyHoldsTheKey(t *testing.T) {
	cert, err := NewCertificate("web", testBundle(t, "ec", 256))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Split(cert.Key, "\n")[1]
	v := reflect.ValueOf(cert)
	for i := range v.NumField() {
		f, val := v.Type().Field(i), v.Field(i)
		switch {
		case f.Type == reflect.TypeFor[time.Time](), f.Type.Kind() == reflect.Int:
		case f.Type.Kind() == reflect.String:
			if f.Name != "Key" && strings.Contains(val.String(), body) {
				t.Errorf("field %s holds key material", f.Name)
			}
		case f.Type == reflect.TypeFor[[]string]():
			for _, s := range val.Interface().([]string) {
				if strings.Contains(s, body) {
					t.Errorf("field %s holds key material", f.Name)
				}
			}
		default:
			t.Errorf("field %s is a %s: UsesKey only knows strings, string lists, times and numbers", f.Name, f.Type)
		}
	}
	if reflect.TypeFor[Certificate]().NumMethod() != 0 {
		t.Error("Certificate has methods a template could call; UsesKey does not look into them")
	}
}
