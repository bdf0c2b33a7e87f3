//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBadConfigsStopEverything: a config with wrong types, unknown keys,
// duplicate names, two certificates writing one path, outputs over the
// credentials, or huge (over the 16 MB limit) or binary content makes validate, once and run all
// exit 1 with file:line:col messages, and nothing at all is written: no
// state directory, no output file. No Vault is needed (none is running).
func TestBadConfigsStopEverything(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	state := filepath.Join(dir, "state")
	head := fmt.Sprintf("state_dir = %q\nvault {\n  address = \"http://127.0.0.1:1\"\n}\n", state)
	cert := func(name, extra string) string {
		return fmt.Sprintf(`
certificate %q {
  mount       = "pki_int"
  role        = "ec"
  common_name = "%s.example.internal"
  cert_file   = "%s/%s.crt"
  key_file    = "%s/%s.key"
  %s
}
`, name, name, out, name, out, name, extra)
	}
	cases := []struct {
		name string
		src  []byte
		want []string // each must appear in the output
	}{
		{"wrong types", []byte(head + cert("web", `alt_names = "web.example.internal"`+"\n  key_bits = \"lots\"")),
			[]string{`:12:16: Unsuitable value type: Unsuitable value: list of string required, but have string`, `:13:15: Unsuitable value type: Unsuitable value: a number is required`}},
		{"unknown key", []byte(head + cert("web", `colour = "blue"`)),
			[]string{`:12:3: Unsupported argument: An argument named "colour" is not expected here.`}},
		{"duplicate names", []byte(head + cert("web", "") + cert("web", "")),
			[]string{`:15:1: certificate "web" is defined twice (first at line 6)`}},
		{"two certificates, one path", []byte(head + cert("web", "") + strings.ReplaceAll(cert("api", ""), out+"/api.key", out+"/web.key")),
			[]string{fmt.Sprintf(`:15:1: certificate "api" writes %s/web.key, which certificate "web" also writes`, out)}},
		{"output over a credential", []byte(fmt.Sprintf("state_dir = %q\nvault {\n  address = \"http://127.0.0.1:1\"\n  auth \"token\" {\n    token_file = %q\n  }\n}\n", state, out+"/web.key") + cert("web", "")),
			[]string{fmt.Sprintf(`:14:17: certificate "web" key_file %s/web.key is the auth token_file (line 5), which certkeeper reads: an output must never overwrite an input`, out)}},
		{"binary", append([]byte(head), 0x00, 0xff, 0xfe, 0x01, '\n'),
			[]string{`:5:1: Invalid character`}},
		{"huge", append([]byte(head+cert("web", "")), bytes.Repeat([]byte("# padding\n"), 1_700_000)...),
			[]string{`bytes is more than a config can be`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "certkeeper.hcl")
			if err := os.WriteFile(cfg, tc.src, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range []string{"validate", "once", "run"} {
				stdout, stderr, code := runCommand(t, cmd, cfg)
				all := stdout + stderr
				if code != 1 {
					t.Errorf("%s exited %d, want 1:\n%s", cmd, code, all)
				}
				for _, w := range tc.want {
					if !strings.Contains(all, w) {
						t.Errorf("%s output lacks %q:\n%s", cmd, w, all)
					}
				}
				if tc.name != "huge" && !regexp.MustCompile(regexp.QuoteMeta(cfg)+`:\d+:\d+: `).MatchString(all) {
					t.Errorf("%s output has no %s:line:col: message:\n%s", cmd, cfg, all)
				}
				if tc.name == "huge" && !strings.Contains(all, cfg) {
					t.Errorf("%s output does not name the file:\n%s", cmd, all)
				}
				for _, p := range []string{out, state} {
					if _, err := os.Stat(p); err == nil {
						t.Errorf("%s with a bad config created %s", cmd, p)
						os.RemoveAll(p)
					}
				}
			}
		})
	}
}

// runCommand runs a certkeeper subcommand with a deadline (run must exit
// by itself on a bad config, not wait for a signal).
func runCommand(t *testing.T, sub, cfg string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(certkeeperBin, sub, "-config", cfg)
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), errb.String(), ee.ExitCode()
		}
		return out.String(), errb.String(), 0
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("certkeeper %s with a bad config did not exit", sub)
		return "", "", -1
	}
}
