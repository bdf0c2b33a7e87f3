package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// TestPiecewiseParseMatchesWhole: parsing a config a piece at a time gives
// exactly the Config, or exactly the error text, that parsing it whole
// does, for every config in testdata and for configs built to split
// badly (a heredoc or a comment holding a line that looks like a
// top-level item, an unindented nested block, an attribute set twice).
func TestPiecewiseParseMatchesWhole(t *testing.T) {
	inputs := map[string][]byte{}
	files, _ := filepath.Glob("testdata/*.hcl")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[f] = b
	}
	var many strings.Builder
	many.WriteString("vault {\n  address = \"https://v:8200\"\n}\n# a comment at the top level\n")
	for i := range 50 {
		fmt.Fprintf(&many, "certificate \"c%d\" {\n  mount = \"pki_int\"\n  role = \"web\"\n  common_name = \"c%d.example.internal\"\n  cert_file = \"/tls/c%d.crt\"\n  key_file = \"/tls/c%d.key\"\n}\n\n", i, i, i, i)
	}
	inputs["many.hcl"] = []byte(many.String())
	inputs["many-no-vault.hcl"] = []byte(strings.Replace(many.String(), "vault {\n  address = \"https://v:8200\"\n}\n", "", 1))
	inputs["many-last-broken.hcl"] = []byte(many.String() + "certificate \"x\" {\n")
	inputs["many-duplicate-vault.hcl"] = []byte(many.String() + "vault {\n  address = \"https://w:8200\"\n}\n")
	inputs["many-duplicate-state-dir.hcl"] = []byte("state_dir = \"/a\"\n" + many.String() + "state_dir = \"/b\"\n")
	inputs["heredoc.hcl"] = []byte(strings.Replace(many.String(), `common_name = "c7.example.internal"`,
		"common_name = <<EOT\nc7.example.internal\nEOT", 1))
	inputs["comment.hcl"] = []byte(strings.Replace(many.String(), "# a comment at the top level\n",
		"/*\ncertificate \"ghost\" {\n}\n*/\n", 1))
	inputs["unindented.hcl"] = []byte(strings.Replace(many.String(), "vault {\n  address = \"https://v:8200\"\n}\n",
		"vault {\naddress = \"https://v:8200\"\nauth \"token\" {\ntoken_file = \"/t\"\n}\n}\n", 1))

	defer func(n int) { chunkSize = n }(chunkSize)
	for name, src := range inputs {
		t.Run(name, func(t *testing.T) {
			chunkSize = 1 << 30 // never split: the reference
			wantCfg, wantErr := Parse(name, src, withTemplates)
			chunkSize = 1 // split at every line that starts an item
			gotCfg, gotErr := Parse(name, src, withTemplates)
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Fatalf("error differs:\npieces: %v\nwhole:  %v", gotErr, wantErr)
			}
			if !reflect.DeepEqual(gotCfg, wantCfg) {
				t.Errorf("config differs:\npieces: %+v\nwhole:  %+v", gotCfg, wantCfg)
			}
		})
	}
}

// TestPiecewiseParseSplits: a large config really is decoded in pieces,
// each block keeping only the positions of its values (not its syntax
// tree), so the memory saving is not silently lost.
func TestPiecewiseParseSplits(t *testing.T) {
	var src strings.Builder
	for i := range 20 {
		fmt.Fprintf(&src, "certificate \"c%d\" {\n  mount = \"m\"\n  role = \"r\"\n  common_name = \"c%d\"\n  cert_file = \"/c%d.crt\"\n  key_file = \"/c%d.key\"\n}\n", i, i, i, i)
	}
	pieces := splitTopLevel([]byte(src.String()), 1)
	if len(pieces) != 20 {
		t.Fatalf("%d pieces, want one per block", len(pieces))
	}
	if p := pieces[3]; p.pos.Line != 22 || p.pos.Byte != p.from || !strings.HasPrefix(src.String()[p.from:], `certificate "c3"`) {
		t.Errorf("piece 3 = %+v", p)
	}
	raw, diags := decodeHCL([]byte(src.String()), "x.hcl", 1)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if len(raw.Certificates) != 20 {
		t.Fatalf("%d certificates decoded, want 20", len(raw.Certificates))
	}
	last := raw.Certificates[19]
	p, ok := last.Body.(*positions)
	if !ok {
		t.Fatalf("a block keeps its body as %T, want only its positions", last.Body)
	}
	if r := valueRange(p, "mount", hcl.Range{}); r.Start.Line != 135 || r.Start.Column != 11 {
		t.Errorf("mount of c19 is at %d:%d, want 135:11", r.Start.Line, r.Start.Column)
	}
	if last.DefRange.Start.Line != 134 {
		t.Errorf("c19 starts at line %d, want 134", last.DefRange.Start.Line)
	}
}
