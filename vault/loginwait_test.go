package vault

import (
	"errors"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestLoginBackoffSaysNoTimeOfItsOwn: after a failed login, a request
// made before the next login is due is not sent; its error carries the
// wait (so the caller's next attempt comes no sooner) and names no time,
// since the caller's status already says when it tries next. It named one
// ("next attempt at 09:23:49") while status said "next attempt in 18s".
func TestLoginBackoffSaysNoTimeOfItsOwn(t *testing.T) {
	v := newScriptedVault()
	v.secret = "another-secret-id" // every login is refused
	srv := httptest.NewServer(v)
	defer srv.Close()
	c, _ := newTestClient(t, []string{srv.URL}, nil)
	if _, err := c.Obtain(t.Context(), signReq); err == nil {
		t.Fatal("a refused login signed")
	}
	_, err := c.Obtain(t.Context(), signReq)
	if err == nil {
		t.Fatal("a refused login signed")
	}
	if n := v.count("/v1/auth/approle/login"); n != 1 {
		t.Errorf("%d logins, want 1: the second request should wait for the login backoff", n)
	}
	if strings.Contains(err.Error(), "next attempt") || regexp.MustCompile(`\d\d:\d\d:\d\d`).MatchString(err.Error()) {
		t.Errorf("the error names a time of its own: %v", err)
	}
	if !strings.Contains(err.Error(), "invalid role or secret ID") {
		t.Errorf("the error lost the login's reason: %v", err)
	}
	var ve *Error
	if !errors.As(err, &ve) || ve.RetryAfter <= 0 || ve.RetryAfter > 5*time.Second || ve.Status != 400 {
		t.Errorf("err = %#v, want a vault.Error with the login backoff's wait (0-5s) and the login's status", ve)
	}
}
