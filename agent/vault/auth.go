package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"

	"github.com/certkeeper/certkeeper/agent/renewal"
	"github.com/certkeeper/certkeeper/config"
)

// loginFunc obtains a token and sets it on the client, returning the auth
// secret (for renewal) or nil when the token cannot be renewed.
type loginFunc func(ctx context.Context, c *api.Client) (*api.Secret, error)

func newLogin(a config.Auth) (loginFunc, error) {
	switch a.Method {
	case config.AuthToken:
		return tokenLogin(a.TokenFile), nil
	case config.AuthAppRole:
		return appRoleLogin(a), nil
	}
	return nil, fmt.Errorf("auth method %q is not supported", a.Method)
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

func appRoleLogin(a config.Auth) loginFunc {
	return func(ctx context.Context, c *api.Client) (*api.Secret, error) {
		b, err := os.ReadFile(a.RoleIDFile)
		if err != nil {
			return nil, fmt.Errorf("reading role_id file: %w", err)
		}
		roleID := strings.TrimSpace(string(b))
		auth, err := approle.NewAppRoleAuth(roleID, &approle.SecretID{FromFile: a.SecretIDFile}, approle.WithMountPath(a.Mount))
		if err != nil {
			return nil, fmt.Errorf("approle login: %w", err)
		}
		ctx, info := withCallInfo(ctx)
		secret, err := c.Auth().Login(ctx, auth)
		if err != nil {
			return nil, fmt.Errorf("approle login: %w", classify(err, info))
		}
		return secret, nil
	}
}

// session holds the current token. Logins are serialised: when a hundred
// renewals find the token revoked at once, one of them logs in and the rest
// use its token, so Vault sees one login, not a hundred.
type session struct {
	client *api.Client
	login  loginFunc
	log    *slog.Logger

	mu         sync.Mutex
	gen        int  // bumped on every successful login
	valid      bool // a token is set and believed good
	failures   int
	nextLogin  time.Time // after a failed login, others wait until then
	lastErr    error
	stopWatch  context.CancelFunc
	expiration time.Time
}

func newSession(c *api.Client, login loginFunc, log *slog.Logger) *session {
	return &session{client: c, login: login, log: log}
}

// ensure returns the generation of a token believed good, logging in if
// there is none.
func (s *session) ensure(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.valid {
		return s.gen, nil
	}
	if now := time.Now(); now.Before(s.nextLogin) {
		return 0, fmt.Errorf("vault login failed, next attempt at %s: %w", s.nextLogin.Format(time.TimeOnly), s.lastErr)
	}
	secret, err := s.login(ctx, s.client)
	if err != nil {
		d := renewal.DefaultBackoff.Delay(s.failures, rand.Float64())
		s.failures++
		s.nextLogin = time.Now().Add(d)
		s.lastErr = err
		return 0, err
	}
	s.failures, s.lastErr = 0, nil
	s.gen++
	s.valid = true
	s.watch(secret)
	s.log.Info("logged in to vault", "accessor", accessor(secret), "ttl", leaseDuration(secret).String(), "renewable", secret != nil && secret.Auth != nil && secret.Auth.Renewable)
	return s.gen, nil
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
		s.expiration = time.Now().Add(d)
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
					s.expiration = time.Now().Add(leaseDuration(r.Secret))
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
