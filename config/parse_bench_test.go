package config_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certkeeper/certkeeper/config"
)

// BenchmarkParseFleet parses a config of 10,000 certificates, the size the
// bench runs (go test -bench ParseFleet -benchmem ./config/).
func BenchmarkParseFleet(b *testing.B) {
	dir := b.TempDir()
	var src strings.Builder
	fmt.Fprintf(&src, "state_dir = %q\nvault {\n  address = \"http://127.0.0.1:8200\"\n  auth \"approle\" {\n    role_id_file = %q\n    secret_id_file = %q\n  }\n}\n",
		filepath.Join(dir, "state"), filepath.Join(dir, "role-id"), filepath.Join(dir, "secret-id"))
	for i := range 10000 {
		fmt.Fprintf(&src, "certificate \"c%d\" {\n  mount = \"pki_int\"\n  role = \"web\"\n  common_name = \"c%d.example.internal\"\n  cert_file = %q\n  key_file = %q\n  ca_file = %q\n}\n",
			i, i, filepath.Join(dir, "out", fmt.Sprintf("c%d.crt", i)), filepath.Join(dir, "out", fmt.Sprintf("c%d.key", i)), filepath.Join(dir, "out", fmt.Sprintf("c%d.ca", i)))
	}
	data := []byte(src.String())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := config.Parse(filepath.Join(dir, "certkeeper.hcl"), data, config.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
