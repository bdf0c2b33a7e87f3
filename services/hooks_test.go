package services

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/notice"
)

// hookService runs, as its check and its reload, a script that saves its
// environment and a copy of $CERTKEEPER_CHANGES under dir/<what>.<n>, and
// fails its first reload while dir/fail-once exists.
func hookService(dir string) config.Service {
	save := func(what string) []string {
		return []string{"sh", "-c", `n=$(ls ` + dir + ` | grep -c '^` + what + `\.env') ; env > ` + dir + `/` + what + `.env.$n; ` +
			`cp "$CERTKEEPER_CHANGES" ` + dir + `/` + what + `.json.$n; echo "$CERTKEEPER_CHANGES" > ` + dir + `/` + what + `.path.$n; ` +
			`if [ ` + what + ` = reload ] && [ -e ` + dir + `/fail-once ]; then rm ` + dir + `/fail-once; exit 1; fi`}
	}
	return config.Service{Name: "app", Check: save("check"), Reload: save("reload"), Timeout: 5 * time.Second, Settle: 500 * time.Millisecond}
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

func readDoc(t *testing.T, path string) notice.Document {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc notice.Document
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, data)
	}
	return doc
}

// TestHooksKnowWhatChanged: the check and the reload command of a batch
// hear, in their environment and in the JSON document, which
// certificates and bundles changed, why, with their names, serials and
// files; a retried reload hears it again; the document is gone after the
// command; nothing of certkeeper's own secrets reaches them.
func TestHooksKnowWhatChanged(t *testing.T) {
	t.Setenv("VAULT_TOKEN", "hvs.CAESIHOOKSMUSTNEVERSEETHISTOKENxxxx")
	t.Setenv("CERTKEEPER_TEST_SECRET", "not-for-children-either")
	f := newFixture(t)
	out := t.TempDir()
	f.cfg.Services = []config.Service{hookService(out)}
	f.cfg.Certificates[0].Notify = []string{"app"}
	f.cfg.Certificates[0].Files.Cert = filepath.Join(f.dir, "web.crt")
	f.m = New(Options{Config: f.cfg, Backoff: fastBackoff})
	os.WriteFile(filepath.Join(out, "fail-once"), nil, 0o644)
	f.run()

	notAfter := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	web := notice.Notice{Kind: notice.Certificate, Name: "web", Reason: notice.Renewal, Serial: "0a:0b", NotAfter: notAfter,
		Names: []string{"web1.example.internal", "127.0.0.1"}, Files: []string{filepath.Join(f.dir, "web.key"), filepath.Join(f.dir, "web.crt")},
		Outputs: map[string]string{"cert_file": filepath.Join(f.dir, "web.crt"), "key_file": filepath.Join(f.dir, "web.key")}}
	bundle := notice.Notice{Kind: notice.TrustBundle, Name: "clients", Reason: notice.CAAdded, Urgent: true,
		Added: []notice.CA{{Subject: "client CA 2", Serial: "01"}}, Files: []string{"/tmp/clients-ca.pem"}}
	f.m.Changed(f.cfg.Certificates[0], f.write("1"), web)
	f.m.Notify("not told why", []string{"app"}, f.write("2")) // a change without a notice adds nothing
	f.m.BundleChanged(config.TrustBundle{Name: "clients", Notify: []string{"app"}}, f.write("3"), bundle)
	waitFor(t, "the retried reload", func() bool { return written(filepath.Join(out, "reload.path.1")) })

	for _, what := range []string{"check.env.0", "reload.env.0", "reload.env.1"} {
		env := readEnv(t, filepath.Join(out, what))
		want := map[string]string{
			EnvService: "app", EnvReasons: "renewal ca_added", EnvUrgent: "1", EnvCertificates: "web", EnvBundles: "clients",
			EnvDomains: "web1.example.internal 127.0.0.1", EnvLineage: f.dir,
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s: %s=%q, want %q", what, k, env[k], v)
			}
		}
		for k, v := range env {
			if strings.HasPrefix(k, "VAULT_") || strings.Contains(v, "HOOKSMUSTNEVERSEE") || strings.Contains(v, "not-for-children") {
				t.Errorf("%s: %s=%s reached the command", what, k, v)
			}
		}
	}
	for _, what := range []string{"check.json.0", "reload.json.1"} {
		doc := readDoc(t, filepath.Join(out, what))
		if doc.Version != 1 || doc.Service != "app" || !doc.Urgent || len(doc.Changes) != 2 {
			t.Fatalf("%s: %+v", what, doc)
		}
		got := doc.Changes[0]
		if got.Kind != notice.Certificate || got.Name != "web" || got.Reason != notice.Renewal || got.Urgent || got.Serial != "0a:0b" ||
			!got.NotAfter.Equal(notAfter) || !slices.Equal(got.Names, web.Names) || got.Outputs["cert_file"] != web.Outputs["cert_file"] || len(got.Files) != 2 {
			t.Errorf("%s: certificate change %+v", what, got)
		}
		if b := doc.Changes[1]; b.Kind != notice.TrustBundle || b.Name != "clients" || b.Reason != notice.CAAdded || !b.Urgent || len(b.Added) != 1 || b.Added[0].Subject != "client CA 2" {
			t.Errorf("%s: bundle change %+v", what, b)
		}
	}
	// The document goes once the command has exited, which is after it
	// wrote what the test reads: wait for that, not for the files.
	path, _ := os.ReadFile(filepath.Join(out, "reload.path.1"))
	waitFor(t, "the document "+strings.TrimSpace(string(path))+" removed after the command", func() bool {
		_, err := os.Stat(strings.TrimSpace(string(path)))
		return os.IsNotExist(err)
	})

	// Two certificates in one batch: no single lineage.
	other := web
	other.Name, other.Outputs = "api", map[string]string{"cert_file": "/elsewhere/api.crt"}
	f.m.Changed(f.cfg.Certificates[0], f.write("4"), web)
	f.m.Changed(f.cfg.Certificates[0], f.write("5"), other)
	waitFor(t, "the next reload", func() bool { return written(filepath.Join(out, "reload.path.2")) })
	env := readEnv(t, filepath.Join(out, "reload.env.2"))
	if _, set := env[EnvLineage]; set || env[EnvCertificates] != "web api" || env[EnvUrgent] != "0" {
		t.Errorf("two certificates: %s=%q (set %v), %s=%q, %s=%q", EnvLineage, env[EnvLineage], set, EnvCertificates, env[EnvCertificates], EnvUrgent, env[EnvUrgent])
	}
}

// written says whether the script has written path (its last file).
func written(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Size() > 0
}
