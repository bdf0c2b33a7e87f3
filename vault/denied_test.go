package vault

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestVaultMessages: Vault's multi-error text becomes one clean phrase per
// error; it used to be shown as "1 error occurred:; \t* permission denied; ; ".
func TestVaultMessages(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want string
	}{
		{[]string{"1 error occurred:\n\t* permission denied\n\n"}, "permission denied"},
		{[]string{"2 errors occurred:\n\t* unknown role: web\n\t* mount is sealed\n\n"}, "unknown role: web; mount is sealed"},
		{[]string{"permission denied"}, "permission denied"},
		{[]string{"invalid role or secret ID", "1 error occurred:\n\t* no handler for route \"pki_server/sign/web\"\n\n"}, `invalid role or secret ID; no handler for route "pki_server/sign/web"`},
		{[]string{"a\n  b\tc "}, "a b c"},
		{nil, ""},
	} {
		if got := vaultMessages(tt.in); got != tt.want {
			t.Errorf("vaultMessages(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestDeniedNamesMountAndRole: a 403 a valid token gets on a sign path may
// be a mount or role that does not exist as much as a policy that lacks the
// path; the error says both, names the mount and role, and carries Vault's
// message cleanly.
func TestDeniedNamesMountAndRole(t *testing.T) {
	v := newScriptedVault()
	v.sign = func(w http.ResponseWriter, n int) bool {
		vaultErr(w, 403, "1 error occurred:\n\t* permission denied\n\n")
		return true
	}
	srv := httptest.NewServer(v)
	defer srv.Close()
	c, _ := newTestClient(t, []string{srv.URL}, nil)
	_, err := c.Obtain(t.Context(), signReq)
	var denied *DeniedError
	if !errors.As(err, &denied) {
		t.Fatalf("err = %v, want a DeniedError", err)
	}
	msg := err.Error()
	for _, want := range []string{"no such mount or role", `check that mount "pki" and its role "web" exist`, "(vault answered 403 on pki/sign/web: permission denied)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	for _, bad := range []string{"error occurred", "\t", "\n", "; ;"} {
		if strings.Contains(msg, bad) {
			t.Errorf("error holds %q:\n%s", bad, msg)
		}
	}
	for path, want := range map[string]string{
		"pki/nested/sign/web": `mount "pki/nested" and its role "web"`,
		"pki_int/issue/api":   `mount "pki_int" and its role "api"`,
		"pki_clients/issuers": `mount "pki_clients" exists`,
		"auth/token/renew":    "that the path exists",
	} {
		if got := (&DeniedError{Path: path, Err: errors.New("x")}).Error(); !strings.Contains(got, want) {
			t.Errorf("%s: %s, want it to name %s", path, got, want)
		}
	}
}
