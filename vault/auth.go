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

// method is one auth block of the chain. Its backoff is its own: a
// method that failed is not tried again before nextTry, however often the
// others are, so a broken method costs Vault one attempt per backoff
// step, not one per login.
type method struct {
	cfg     config.Auth
	login   loginFunc
	prepare prepareFunc

	failures int
	nextTry  time.Time
	lastErr  error
	// reissueAsked: a renewal of cert auth's certificate was asked for
	// since this cert method last logged in; asked once, so a certificate
	// that a fresh one does not cure is not renewed at every login.
	reissueAsked bool
}

// loginEnv is what the login functions share beyond their config block.
type loginEnv struct {
	closeIdle func() // drops keep-alive connections (cert auth)
	timeout   time.Duration
	now       func() time.Time
}

func newLogin(a config.Auth, env loginEnv) (loginFunc, prepareFunc, error) {
	switch a.Method {
	case config.AuthToken:
		return tokenLogin(a.TokenFile), nil, nil
	case config.AuthAppRole:
		r := &appRole{auth: a}
		return r.login, r.prepare, nil
	case config.AuthCert:
		return certLogin(a, env.closeIdle), nil, nil
	case config.AuthAWS:
		return newAWSLogin(a, env).login, nil, nil
	case config.AuthJWT:
		return newJWTLogin(a, env).login, nil, nil
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
//
// A login walks the chain of methods from the top and stops at the first
// that logs in, so a preferred method that works again is used again at
// the next login; methods still backing off from a failure are passed
// over without a request.
type session struct {
	client  *api.Client
	methods []*method
	log     *slog.Logger
	now     func() time.Time
	rand    func() float64
	// logins hears every login attempt (metrics); reissue asks for a new
	// cert auth certificate. Either may be nil.
	logins  LoginObserver
	reissue func(certificate string)

	mu         sync.Mutex
	gen        int       // bumped on every successful login
	valid      bool      // a token is set and believed good
	inUse      int       // index of the method whose token is set; -1 for none
	nextLogin  time.Time // after every method failed, others wait until then
	lastErr    error
	stopWatch  context.CancelFunc
	expiration time.Time
	loggedInAt time.Time // of the current token
	// deniedGen is a generation that was logged in because of a 403 and
	// got the 403 again: its denials are policy, not token trouble.
	deniedGen int
}

func newSession(c *api.Client, methods []*method, log *slog.Logger, now func() time.Time, rand func() float64) *session {
	return &session{client: c, methods: methods, log: log, now: now, rand: rand, inUse: -1}
}

// ensure returns the generation of a token believed good, logging in if
// there is none.
func (s *session) ensure(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.valid {
		return s.gen, nil
	}
	now := s.now()
	if now.Before(s.nextLogin) {
		return 0, loginWait(s.nextLogin.Sub(now), s.lastErr)
	}
	var failed []error
	for i, m := range s.methods {
		if now.Before(m.nextTry) {
			s.log.Debug("auth method passed over: backing off after its last failure", "method", m.cfg.Method, "mount", m.cfg.Mount, "next_try", m.nextTry.Format(time.RFC3339))
			failed = append(failed, &MethodError{Method: m.cfg.Method, Mount: m.cfg.Mount, NotBefore: m.nextTry, Err: m.lastErr})
			continue
		}
		secret, err := m.login(ctx, s.client)
		s.observe(m, err == nil)
		if err != nil {
			m.lastErr = err
			m.nextTry = s.now().Add(backoff.Default.Delay(m.failures, s.rand()))
			m.failures++
			failed = append(failed, &MethodError{Method: m.cfg.Method, Mount: m.cfg.Mount, Err: err})
			if i < len(s.methods)-1 {
				s.log.Warn("vault login failed; trying the next auth method", "method", m.cfg.Method, "mount", m.cfg.Mount,
					"error", err, "failures", m.failures, "retry_at", m.nextTry.Format(time.RFC3339))
			}
			if ctx.Err() != nil {
				break
			}
			continue
		}
		m.failures, m.lastErr, m.nextTry, m.reissueAsked = 0, nil, time.Time{}, false
		s.loggedIn(i, secret)
		return s.gen, nil
	}
	// Every method failed or is backing off: nobody tries again before
	// the first of them may.
	s.nextLogin = time.Time{}
	for _, m := range s.methods {
		if s.nextLogin.IsZero() || m.nextTry.Before(s.nextLogin) {
			s.nextLogin = m.nextTry
		}
	}
	if len(failed) == 1 {
		// One method: its error as it is, as before chains existed.
		s.lastErr = failed[0].(*MethodError).Err
	} else {
		s.lastErr = &LoginError{Methods: failed}
	}
	return 0, s.lastErr
}

// loggedIn puts the token from method i in force.
func (s *session) loggedIn(i int, secret *api.Secret) {
	m := s.methods[i]
	s.gen++
	s.valid = true
	s.inUse = i
	s.loggedInAt = s.now()
	s.watch(secret)
	s.log.Info("logged in to vault", "accessor", accessor(secret), "method", m.cfg.Method, "mount", m.cfg.Mount,
		"ttl", leaseDuration(secret).String(), "renewable", secret != nil && secret.Auth != nil && secret.Auth.Renewable)
	if i == 0 {
		return
	}
	pref := s.methods[0]
	s.log.Warn("logged in with a fallback auth method; the preferred one is tried again at the next login",
		"method", m.cfg.Method, "mount", m.cfg.Mount, "preferred", pref.cfg.Method, "preferred_mount", pref.cfg.Mount,
		"preferred_skipped_because", errText(pref.lastErr), "preferred_retry_at", pref.nextTry.Format(time.RFC3339))
	for _, before := range s.methods[:i] {
		if before.cfg.Method == config.AuthCert {
			s.reissueCert(before)
		}
	}
}

// reissueCert asks, once per failing spell, for a new certificate for cert
// auth that another method had to stand in for. A certificate that has
// expired, or is missing, is renewed by the agent anyway (it is past its
// renewal point); one that is still valid but no longer logs in (revoked,
// or no longer trusted by the cert role) would be kept until its renewal
// point, and every login until then would fall back.
func (s *session) reissueCert(m *method) {
	if s.reissue == nil || m.reissueAsked || m.lastErr == nil {
		return
	}
	if !certValidAt(m.cfg.ClientCert, s.now()) {
		return
	}
	m.reissueAsked = true
	s.log.Info("renewing the cert auth certificate now, so the next login can use cert auth again",
		"cert", m.cfg.Certificate, "cert_auth_error", errText(m.lastErr))
	s.reissue(m.cfg.Certificate)
}

func (s *session) observe(m *method, ok bool) {
	if s.logins != nil {
		s.logins.ObserveLogin(m.cfg.Method, ok)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// MethodError is why one auth method did not log in: it failed now, or
// it was passed over because it failed before and is backing off.
type MethodError struct {
	Method, Mount string
	// NotBefore is set when the method was not tried: it may be tried
	// again from then on.
	NotBefore time.Time
	Err       error
}

func (e *MethodError) Error() string {
	name := e.Method
	if e.Mount != e.Method {
		name += " (mount " + e.Mount + ")"
	}
	if !e.NotBefore.IsZero() {
		// No time in the text: status says when the chain is tried next,
		// once (AuthStatus has each method's own next attempt).
		return fmt.Sprintf("auth %s: not tried, backing off after: %v", name, e.Err)
	}
	return fmt.Sprintf("auth %s: %v", name, e.Err)
}
func (e *MethodError) Unwrap() error { return e.Err }

// LoginError is a login at which no method of the chain logged in.
type LoginError struct {
	Methods []error // *MethodError, in the order of the chain
}

func (e *LoginError) Error() string {
	parts := make([]string, len(e.Methods))
	for i, m := range e.Methods {
		parts[i] = m.Error()
	}
	return "no auth method logged in: " + strings.Join(parts, "; ")
}
func (e *LoginError) Unwrap() []error { return e.Methods }

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
		s.inUse = -1
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
