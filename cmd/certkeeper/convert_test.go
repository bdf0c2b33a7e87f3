package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestConvertCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"convert", "vault-agent", "../../vaultagent/testdata/split-secret.hcl"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), `certificate "shop.example.internal" {`) {
		t.Errorf("stdout has no certificate block:\n%s", stdout.String())
	}
	if want := "certkeeper convert: 1 certificate, 2 things not translated"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q does not say %q", stderr.String(), want)
	}
	for _, args := range [][]string{{"convert"}, {"convert", "consul-template", "x.hcl"}, {"convert", "vault-agent"}} {
		stdout.Reset()
		stderr.Reset()
		if code := run(args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage: certkeeper convert vault-agent FILE") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and the usage", args, code, stderr.String())
		}
	}
	if code := run([]string{"convert", "vault-agent", "no-such-file.hcl"}, &stdout, &stderr); code != 1 {
		t.Errorf("a missing file: exit %d, want 1", code)
	}
}
