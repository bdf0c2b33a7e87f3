package templates

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSockaddrRunsNothing: consul-template's sockaddr runs `ip route`
// (found through $PATH) to find the default interface, which validate,
// run as root, would do while checking a config. It is refused at check
// and at render, and nothing runs.
func TestSockaddrRunsNothing(t *testing.T) {
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	script := "#!/bin/sh\necho \"$0 $*\" >> " + ran + "\necho 'default via 192.0.2.1 dev eth0'\n"
	if err := os.WriteFile(filepath.Join(dir, "ip"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	cert, err := NewCertificate("web", testBundle(t, "ec", 256))
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{
		`{{ sockaddr "GetPrivateIP" }}`,
		`{{ with certificate }}{{ .Cert }}{{ end }}{{ sockaddr "GetDefaultInterfaces | attr \"name\"" }}`,
	} {
		if _, err := Check(Input{Text: text}, Certificate{Name: "web"}); err == nil || !strings.Contains(err.Error(), `function "sockaddr" is disabled: it runs a program`) {
			t.Errorf("Check(%s) = %v, want sockaddr refused", text, err)
		}
		if out, err := Render(Input{Text: text}, cert); err == nil || !strings.Contains(err.Error(), "disabled in certkeeper templates") {
			t.Errorf("Render(%s) = %q, %v, want sockaddr refused", text, out, err)
		}
	}
	if b, err := os.ReadFile(ran); err == nil {
		t.Errorf("a template ran a program:\n%s", b)
	}
}

// TestNothingPrintsToTheLog: spew_dump and spew_printf print to the
// process's stdout, which for the daemon is its log; a template must not
// be able to put the key there.
func TestNothingPrintsToTheLog(t *testing.T) {
	cert, err := NewCertificate("web", testBundle(t, "ec", 256))
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	for _, text := range []string{
		"{{ with certificate }}{{ spew_dump .Key }}{{ end }}",
		`{{ with certificate }}{{ spew_printf "%s" .Key }}{{ end }}`,
	} {
		if _, err := Render(Input{Text: text}, cert); err == nil || !strings.Contains(err.Error(), "disabled in certkeeper templates") {
			t.Errorf("Render(%s) = %v, want it refused", text, err)
		}
	}
	os.Stdout = stdout
	w.Close()
	printed, _ := io.ReadAll(r)
	if strings.Contains(string(printed), strings.Split(cert.Key, "\n")[1]) {
		t.Errorf("a template printed the private key to certkeeper's output:\n%s", printed)
	}
}
