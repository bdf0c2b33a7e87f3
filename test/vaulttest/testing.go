package vaulttest

import (
	"os"
	"path/filepath"
	"testing"
)

// New launches a server for the test and stops it in cleanup. A missing
// binary fails the test rather than skipping it: an integration run that
// silently tests nothing is worse than a red one.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Launch(t.Context(), opts)
	if err != nil {
		t.Fatalf("launching vault: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", s.logPath, s.LogTail())
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stopping vault: %v", err)
		}
	})
	return s
}

// PKI bootstraps the two-tier CA and roles (see Bootstrap).
func (s *Server) PKI(t testing.TB) *PKI {
	t.Helper()
	p, err := Bootstrap(t.Context(), s.Client, s.Addr)
	if err != nil {
		t.Fatalf("bootstrapping pki: %v", err)
	}
	return p
}

// AppRole creates an AppRole limited to the PKI mounts (see CreateAppRole).
func (s *Server) AppRole(t testing.TB, o AppRoleOptions) (roleID, secretID string) {
	t.Helper()
	roleID, secretID, err := CreateAppRole(t.Context(), s.Client, o)
	if err != nil {
		t.Fatalf("creating approle: %v", err)
	}
	return roleID, secretID
}

// CountCerts returns how many certificates mount has stored, so a test can
// prove that something (a restart, say) issued nothing.
func (s *Server) CountCerts(t testing.TB, mount string) int {
	t.Helper()
	sec, err := s.Client.Logical().ListWithContext(t.Context(), mount+"/certs")
	if err != nil {
		t.Fatalf("listing %s/certs: %v", mount, err)
	}
	if sec == nil || sec.Data == nil {
		return 0 // Vault answers 404 to a LIST with no entries
	}
	keys, ok := sec.Data["keys"].([]any)
	if !ok {
		t.Fatalf("listing %s/certs: keys is %T, want a list", mount, sec.Data["keys"])
	}
	return len(keys)
}

// Revoke revokes the certificate with the given serial (colon-separated hex,
// as Vault returns it) in mount.
func (s *Server) Revoke(t testing.TB, mount, serial string) {
	t.Helper()
	_, err := s.Client.Logical().WriteWithContext(t.Context(), mount+"/revoke", map[string]any{
		"serial_number": serial,
	})
	if err != nil {
		t.Fatalf("revoking %s in %s: %v", serial, mount, err)
	}
}

// WriteCreds writes role-id and secret-id files into dir with mode 0600, the
// way an operator would provision an agent, and returns their paths.
func WriteCreds(t testing.TB, dir, roleID, secretID string) (roleIDFile, secretIDFile string) {
	t.Helper()
	roleIDFile = filepath.Join(dir, "role-id")
	secretIDFile = filepath.Join(dir, "secret-id")
	for path, v := range map[string]string{roleIDFile: roleID, secretIDFile: secretID} {
		if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
			t.Fatalf("writing %s: %v", path, err)
		}
	}
	return roleIDFile, secretIDFile
}
