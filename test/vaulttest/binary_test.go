package vaulttest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBinaryFindsModuleRootPastNestedModules(t *testing.T) {
	root := t.TempDir()
	nested := filepath.Join(root, "test", "vaultserver")
	deeper := filepath.Join(nested, "cmd")
	writeFile(t, filepath.Join(root, "go.mod"), "module github.com/certkeeper/certkeeper\n\ngo 1.26\n")
	writeFile(t, filepath.Join(nested, "go.mod"), "module github.com/certkeeper/certkeeper/test/vaultserver\n")
	if err := os.MkdirAll(deeper, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(binEnv, "")

	t.Chdir(deeper)
	_, err := Binary()
	if err == nil || !strings.Contains(err.Error(), "make vault") ||
		!strings.Contains(err.Error(), filepath.Join(root, "bin", "vault")) {
		t.Fatalf("Binary() without bin/vault = %v, want an error naming %s and `make vault`",
			err, filepath.Join(root, "bin", "vault"))
	}

	writeFile(t, filepath.Join(root, "bin", "vault"), "#!/bin/sh\n")
	got, err := Binary()
	if err != nil {
		t.Fatalf("Binary(): %v", err)
	}
	if want := filepath.Join(root, "bin", "vault"); got != want {
		t.Fatalf("Binary() = %s, want %s (the nested module's dir must be skipped)", got, want)
	}
}

func TestBinaryOutsideModule(t *testing.T) {
	t.Setenv(binEnv, "")
	t.Chdir(t.TempDir())
	if _, err := Binary(); err == nil || !strings.Contains(err.Error(), binEnv) {
		t.Fatalf("Binary() outside the module = %v, want an error mentioning $%s", err, binEnv)
	}
}

func TestBinaryFromEnv(t *testing.T) {
	p := filepath.Join(t.TempDir(), "vault")
	t.Setenv(binEnv, p)
	if _, err := Binary(); err == nil {
		t.Fatalf("Binary() with $%s naming a missing file: no error", binEnv)
	}
	writeFile(t, p, "#!/bin/sh\n")
	if got, err := Binary(); err != nil || got != p {
		t.Fatalf("Binary() = %q, %v; want %q", got, err, p)
	}
}

func TestWriteCreds(t *testing.T) {
	dir := t.TempDir()
	roleFile, secretFile := WriteCreds(t, dir, "the-role", "the-secret")
	for path, want := range map[string]string{roleFile: "the-role", secretFile: "the-secret"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("%s = %q, want %q", path, b, want)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", path, fi.Mode().Perm())
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}
