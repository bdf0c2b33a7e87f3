package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/certkeeper/certkeeper/config"
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

// TestChainWaitSaysNoTimeOfItsOwn: in a chain each method backs off on
// its own, and neither the error of a login where one was passed over
// (still backing off) nor that of a request held back by the chain's
// backoff names a time; the latter carries the wait and the failing
// login's status.
func TestChainWaitSaysNoTimeOfItsOwn(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	tried := map[string]int{}
	fail := func(name string, status int) loginFunc {
		return func(context.Context, *api.Client) (*api.Secret, error) {
			tried[name]++
			return nil, &Error{Status: status, Err: fmt.Errorf("%s login refused", name)}
		}
	}
	// cert has failed often (a long backoff), approle not yet.
	cert := &method{cfg: config.Auth{Method: "cert", Mount: "cert"}, login: fail("cert", 400), failures: 6}
	role := &method{cfg: config.Auth{Method: "approle", Mount: "approle"}, login: fail("approle", 400)}
	s := newSession(nil, []*method{cert, role}, slog.New(slog.DiscardHandler), clk.now, func() float64 { return 0.99 })
	timeOfDay := regexp.MustCompile(`\d\d:\d\d:\d\d`)

	if _, err := s.ensure(t.Context()); err == nil {
		t.Fatal("logged in")
	}
	clk.advance(role.nextTry.Sub(clk.now()))
	if !cert.nextTry.After(clk.now()) {
		t.Fatal("test setup: cert's backoff is not longer than approle's")
	}
	_, err := s.ensure(t.Context())
	if tried["cert"] != 1 || tried["approle"] != 2 {
		t.Fatalf("tried %v: cert, still backing off, should be passed over", tried)
	}
	if err == nil || !strings.Contains(err.Error(), "auth cert: not tried, backing off after: cert login refused") || timeOfDay.MatchString(err.Error()) {
		t.Errorf("a login that passed cert over: %v", err)
	}

	_, err = s.ensure(t.Context())
	if tried["approle"] != 2 {
		t.Errorf("approle tried within its backoff")
	}
	if err == nil || strings.Contains(err.Error(), "next attempt") || timeOfDay.MatchString(err.Error()) {
		t.Errorf("a request held back by the backoff names a time of its own: %v", err)
	}
	var ve *Error
	if !errors.As(err, &ve) || ve.RetryAfter <= 0 || ve.RetryAfter != role.nextTry.Sub(clk.now()) || ve.Status != 400 {
		t.Errorf("err = %#v, want a vault.Error carrying the wait until approle's next try and the login's status", ve)
	}
}
