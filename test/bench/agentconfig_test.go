//go:build linux

package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// benchTestdata is the benchmark's Vault Agent configuration as the
// converter's tests take it (vaultagent/testdata/bench.hcl): the side by
// side run of Vault Agent and certkeeper in test/integration converts it.
const benchTestdata = "../../vaultagent/testdata/bench.hcl"

// TestAgentConfigIsTheConvertersTestdata: the file the converter is tested
// on is what the benchmark runs, so a change here reaches that test. Run
// with BENCH_WRITE_TESTDATA=1 to write it after such a change.
func TestAgentConfigIsTheConvertersTestdata(t *testing.T) {
	text, _ := agentConfig("https://vault.example.internal:8200", "/etc/vault-agent/role-id", "/etc/vault-agent/secret-id", roleEC, "/etc/bench/tls", 3)
	want := `# The Vault Agent configuration of test/bench (agentConfig in
# test/bench/tools.go) for three certificates, which
# TestAgentConfigIsTheConvertersTestdata keeps in step: AppRole, and one
# pkiCert template per certificate with certificate, CA and key in one
# file, the layout that lets pkiCert find its certificate after a restart.
` + text
	if os.Getenv("BENCH_WRITE_TESTDATA") != "" {
		if err := os.WriteFile(benchTestdata, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(benchTestdata)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s is not the benchmark's configuration (BENCH_WRITE_TESTDATA=1 writes it):\n%s", benchTestdata, firstDiff(string(got), want))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return "line " + strconv.Itoa(i+1) + ":\n  file:  " + al[i] + "\n  bench: " + bl[i]
		}
	}
	return "lengths differ"
}
