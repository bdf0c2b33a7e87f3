package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/backoff"
)

// loginFunc obtains a token and sets it on the client, returning the auth
// secret (for renewal) or nil when the token cannot be renewed.
type loginFunc func(ctx context.Context, c *api.Client) (*api.Secret, error)

// prepareFunc does what an auth method must do at start, before any
// login is needed; nil when there is nothing.
type prepareFunc func(ctx context.Context, c *api.Client) error

func newLogin(a config.Auth, closeIdle func()) (loginFunc, prepareFunc, error) {
	switch a.Method {
	case config.AuthToken:
		return tokenLogin(a.TokenFile), nil, nil
	case config.AuthAppRole:
		r := &appRole{auth: a}
		return r.login, r.prepare, nil
	case config.AuthCert:
		return certLogin(a, closeIdle), nil, nil
	}
	return nil, nil, fmt.Errorf("auth method %q is not supported", a.Method)
}

// tokenLogin reads the token each time, so an operator can replace the
// file and the agent picks the new token up at its next login.
func tokenLogin(file string) loginFunc {
	return func(ctx context.Context, c *api.Client) (*api.Secret, error) {
		token := os.Getenv("VAULT_TOKEN")
		if file != "" {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("reading token file: %w", err)
			}
			token = strings.TrimSpace(string(b))
		}
		if token == "" {
			return nil, errors.New("no vault token: set token_file in auth \"token\", or VAULT_TOKEN")
		}
		c.SetToken(token)
		ctx, info := withCallInfo(ctx)
		self, err := c.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("looking up token: %w", classify(err, info))
		}
		ttl, _ := self.TokenTTL()
		renewable, _ := self.TokenIsRenewable()
		acc, _ := self.TokenAccessor()
		return &api.Secret{Auth: &api.SecretAuth{ClientToken: token, Accessor: acc, Renewable: renewable, LeaseDuration: int(ttl.Seconds())}}, nil
	}
}

// session holds the current token. Logins are serialised: when a hundred
// renewals find the token revoked at once, one of them logs in and the rest
// use its token, so Vault sees one login, not a hundred.
type session struct {
	client *api.Client
	login  loginFunc
	log    *slog.Logger
	now    func() time.Time
	rand   func() float64

	mu         sync.Mutex
	gen        int  // bumped on every successful login
	valid      bool // a token is set and believed good
	failures   int
	nextLogin  time.Time // after a failed login, others wait until then
	lastErr    error
	stopWatch  context.CancelFunc
	expiration time.Time
	loggedInAt time.Time // of the current token
	// deniedGen is a generation that was logged in because of a 403 and
	// got the 403 again: its denials are policy, not token trouble.
	deniedGen int
}

func newSession(c *api.Client, login loginFunc, log *slog.Logger, now func() time.Time, rand func() float64) *session {
	return &session{client: c, login: login, log: log, now: now, rand: rand}
}

// ensure returns the generation of a token believed good, logging in if
// there is none.
func (s *session) ensure(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.valid {
		return s.gen, nil
	}
	if now := s.now(); now.Before(s.nextLogin) {
		return 0, fmt.Errorf("vault login failed, next attempt at %s: %w", s.nextLogin.Format(time.TimeOnly), s.lastErr)
	}
	secret, err := s.login(ctx, s.client)
	if err != nil {
		d := backoff.Default.Delay(s.failures, s.rand())
		s.failures++
		s.nextLogin = s.now().Add(d)
		s.lastErr = err
		return 0, err
	}
	s.failures, s.lastErr = 0, nil
	s.gen++
	s.valid = true
	s.loggedInAt = s.now()
	s.watch(secret)
	s.log.Info("logged in to vault", "accessor", accessor(secret), "ttl", leaseDuration(secret).String(), "renewable", secret != nil && secret.Auth != nil && secret.Auth.Renewable)
	return s.gen, nil
}

// policyRefreshAfter is how old a token must be before a 403 that the
// token itself survives is worth a new login: a role's policy list reaches
// only tokens issued after it changed, so a denial may be cured by a login
// made after the fix, but never by one a second after the last.
const policyRefreshAfter = 5 * time.Minute

// reloginMayHelp decides, after a 403 with the token of generation gen,
// whether logging in again could change the answer. A 403 means either a
// dead token or a policy that forbids the path. Vault answers lookup-self
// for any live token (the default policy allows it), so a token that passes
// it is alive, and a fresh login would only hear the same 403: that is a
// policy problem, and looping logins at it is what this avoids.
func (s *session) reloginMayHelp(ctx context.Context, gen int) bool {
	s.mu.Lock()
	stale := gen != s.gen || s.now().Sub(s.loggedInAt) > policyRefreshAfter
	known := gen == s.deniedGen
	s.mu.Unlock()
	if stale {
		return true
	}
	if known {
		return false
	}
	_, err := s.client.Auth().Token().LookupSelfWithContext(ctx)
	return err != nil
}

// noteDenied records that the fresh token of generation gen was refused
// too, so its next 403 goes straight to the caller.
func (s *session) noteDenied(gen int) {
	s.mu.Lock()
	s.deniedGen = gen
	s.mu.Unlock()
}

// invalidate drops the token of generation gen, unless a newer login
// already replaced it.
func (s *session) invalidate(gen int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen == s.gen {
		s.valid = false
	}
}

// Expiration is when the current token expires; zero if unknown or none.
func (s *session) Expiration() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.valid {
		return time.Time{}
	}
	return s.expiration
}

// watch renews the token while Vault allows; when it no longer can, the
// token is dropped and the next request logs in again.
func (s *session) watch(secret *api.Secret) {
	if s.stopWatch != nil {
		s.stopWatch()
		s.stopWatch = nil
	}
	s.expiration = time.Time{}
	if d := leaseDuration(secret); d > 0 {
		s.expiration = s.now().Add(d)
	}
	if secret == nil || secret.Auth == nil || !secret.Auth.Renewable {
		return
	}
	w, err := s.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: secret})
	if err != nil {
		s.log.Warn("cannot renew vault token; will log in again when it expires", "error", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopWatch = cancel
	gen := s.gen
	go w.Start()
	go func() {
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case r := <-w.RenewCh():
				s.mu.Lock()
				if gen == s.gen {
					s.expiration = s.now().Add(leaseDuration(r.Secret))
				}
				s.mu.Unlock()
			case err := <-w.DoneCh():
				if err != nil {
					s.log.Info("vault token renewal stopped; will log in again when needed", "error", err)
				} else {
					s.log.Info("vault token reached its maximum lifetime; will log in again when needed")
				}
				s.invalidate(gen)
				return
			}
		}
	}()
}

func (s *session) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopWatch != nil {
		s.stopWatch()
	}
}

func leaseDuration(secret *api.Secret) time.Duration {
	if secret == nil || secret.Auth == nil {
		return 0
	}
	return time.Duration(secret.Auth.LeaseDuration) * time.Second
}

// accessor identifies a token in logs without revealing it.
func accessor(secret *api.Secret) string {
	if secret == nil || secret.Auth == nil {
		return ""
	}
	return secret.Auth.Accessor
}
