// Package vault is certkeeper's only door to Vault: it logs in, keeps the
// token alive, and asks the PKI secrets engine for certificates. It does no
// retrying of its own (the api client's retries are off too): callers back
// off, so retries never stack into a storm.
package vault

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/certkeeper/certkeeper/config"
)

// Client talks to Vault for the agent. It is safe for concurrent use.
type Client struct {
	api     *api.Client
	session *session
	log     *slog.Logger
	issuers issuerCache
}

// Observer is told about every HTTP request made to Vault, for metrics.
type Observer interface {
	ObserveVaultRequest(operation string, code int, d time.Duration)
}

// Options are what New needs beyond the config.
type Options struct {
	Log      *slog.Logger
	Observer Observer // may be nil
	// Logins, if not nil, hears every login attempt by method (metrics).
	Logins LoginObserver
	// Reissue, if not nil, is asked to renew the certificate block of
	// that name at once: cert auth's certificate, still valid but refused,
	// after a later method of the chain logged in instead.
	Reissue func(certificate string)
	// Now and Rand decide login backoff, token expiry and Retry-After;
	// they default to the real clock and math/rand.
	Now  func() time.Time
	Rand func() float64
}

// New makes a client for cfg. It does not contact Vault: login happens on
// the first request, so a certkeeper with nothing to renew costs Vault
// nothing.
func New(cfg config.Vault, opts Options) (*Client, error) {
	apiCfg := api.DefaultConfig()
	if apiCfg.Error != nil {
		return nil, fmt.Errorf("vault client: %w", apiCfg.Error)
	}
	apiCfg.Address = cfg.Addresses[0]
	apiCfg.Timeout = cfg.Timeout
	// Our own backoff governs retries; the api client's would stack on it.
	apiCfg.MaxRetries = 0
	var err error
	// DefaultConfig read VAULT_* variables that would quietly change where
	// and how certkeeper talks to Vault: VAULT_AGENT_ADDR reroutes every
	// request, VAULT_RATE_LIMIT throttles them. The config file decides.
	apiCfg.AgentAddress = ""
	apiCfg.SRVLookup = false
	apiCfg.Limiter = nil
	// DefaultConfig also applied VAULT_SKIP_VERIFY, VAULT_CAPATH,
	// VAULT_CLIENT_CERT and VAULT_TLS_SERVER_NAME to the TLS config, and
	// ConfigureTLS only ever adds to what it finds (it never turns
	// InsecureSkipVerify back off). Start from a clean TLS config, so only
	// the config file can turn verification off.
	if tr, ok := apiCfg.HttpClient.Transport.(*http.Transport); ok {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if err = apiCfg.ConfigureTLS(&api.TLSConfig{
		CACert:        cfg.CACert,
		TLSServerName: cfg.TLSServerName,
		Insecure:      cfg.TLSSkipVerify,
	}); err != nil {
		return nil, fmt.Errorf("vault tls config: %w", err)
	}
	keepConnections(apiCfg.HttpClient.Transport, cfg.MaxParallel)
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	base, ok := apiCfg.HttpClient.Transport.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("vault client: unexpected transport %T", apiCfg.HttpClient.Transport)
	}
	if cfg.TLSSkipVerify {
		log.Warn("TLS verification of vault is OFF (tls_skip_verify = true): anyone between certkeeper and vault can read its token and forge certificates")
	}
	for _, a := range cfg.Addresses {
		if config.PlainHTTP(a) {
			log.Warn("vault address "+config.PlainHTTPRisk, "address", a)
		}
	}
	var transport http.RoundTripper = base
	for _, a := range cfg.Auth {
		if a.Method == config.AuthCert {
			// The config allows one cert block: a connection presents one
			// client certificate.
			certs := newClientCertSource(a)
			base.TLSClientConfig.GetClientCertificate = certs.get
			transport = &certRotationTransport{next: transport, certs: certs, closeIdle: base.CloseIdleConnections}
			break
		}
	}
	if len(cfg.Addresses) > 1 {
		ft, err := newFailoverTransport(transport, cfg.Addresses, log)
		if err != nil {
			return nil, fmt.Errorf("vault addresses: %w", err)
		}
		apiCfg.Address, transport = ft.Address(), ft
	}
	now, rnd := opts.Now, opts.Rand
	if now == nil {
		now = time.Now
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	apiCfg.HttpClient.Transport = &observingTransport{next: transport, observer: opts.Observer, now: now}
	c, err := api.NewClient(apiCfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	// NewClient picks VAULT_TOKEN and VAULT_NAMESPACE from the environment;
	// the token is decided by the auth method alone.
	c.ClearToken()
	c.SetNamespace(cfg.Namespace)
	env := loginEnv{closeIdle: base.CloseIdleConnections, timeout: cfg.Timeout, now: now}
	var methods []*method
	for _, a := range cfg.Auth {
		login, prepare, err := newLogin(a, env)
		if err != nil {
			return nil, err
		}
		methods = append(methods, &method{cfg: a, login: login, prepare: prepare})
	}
	if len(methods) == 0 {
		return nil, errors.New("vault client: no auth method")
	}
	s := newSession(c, methods, log, now, rnd)
	s.logins, s.reissue = opts.Logins, opts.Reissue
	return &Client{api: c, session: s, log: log}, nil
}

// Prepare does what the auth methods need done at start, before any
// certificate is due: today, unwrapping a response-wrapped secret_id,
// whose wrapping token would expire if left for the first login. With one
// method, its error is returned, worth logging loudly (the agent can still
// serve what is on disk). In a chain, a method that cannot be prepared is
// only warned about here: the others may log in, and its own logins say
// why it fails.
func (c *Client) Prepare(ctx context.Context) error {
	methods := c.session.methods
	for _, m := range methods {
		if m.prepare == nil {
			continue
		}
		err := m.prepare(ctx, c.api)
		if err == nil {
			continue
		}
		if len(methods) == 1 {
			return err
		}
		c.log.Warn("an auth method cannot be prepared; its logins fail until this is fixed, and the other methods are tried",
			"method", m.cfg.Method, "mount", m.cfg.Mount, "error", err)
	}
	return nil
}

// Close stops token renewal.
func (c *Client) Close() { c.session.close() }

// write sends an authenticated write, logging in first if needed, and once
// more if Vault says the token is no longer good.
func (c *Client) write(ctx context.Context, path string, data map[string]any) (*api.Secret, error) {
	return c.authed(ctx, path, func(ctx context.Context) (*api.Secret, error) {
		return c.api.Logical().WriteWithContext(ctx, path, data)
	})
}

// authed sends one authenticated request (call, to path), logging in
// first if needed, and once more if Vault says the token is no longer
// good.
func (c *Client) authed(ctx context.Context, path string, call func(context.Context) (*api.Secret, error)) (*api.Secret, error) {
	for attempt := 0; ; attempt++ {
		gen, err := c.session.ensure(ctx)
		if err != nil {
			return nil, err
		}
		ctx, info := withCallInfo(ctx)
		secret, err := call(ctx)
		if err == nil {
			return secret, nil
		}
		err = classify(err, info)
		var ve *Error
		if errors.As(err, &ve) && ve.Status == http.StatusForbidden {
			// A revoked or expired token looks like this; so does a policy
			// that forbids the path. Tell them apart before logging in.
			if attempt == 0 && c.session.reloginMayHelp(ctx, gen) {
				c.log.Info("vault refused the token, logging in again", "path", path)
				c.session.invalidate(gen)
				continue
			}
			if attempt > 0 {
				c.session.noteDenied(gen)
			}
			return nil, &DeniedError{Path: path, Err: err}
		}
		return nil, err
	}
}

// DeniedError is a 403 that a working (or fresh) token gets too, and no
// amount of logging in will change that. Vault answers 403 for any path a
// token's policies do not grant, before it looks whether anything is
// there, so the cause is as likely a mount or role that does not exist (a
// typo in the config) as a policy that lacks the path. It needs a human,
// so it reads like it, and names both.
type DeniedError struct {
	Path string
	Err  error
}

func (e *DeniedError) Error() string {
	exists := "that the path exists"
	if mount, role, ok := pkiRolePath(e.Path); ok {
		exists = fmt.Sprintf("that mount %q and its role %q exist (vault secrets list; vault list %s/roles)", mount, role, mount)
	} else if mount, ok := strings.CutSuffix(e.Path, "/issuers"); ok {
		exists = fmt.Sprintf("that mount %q exists (vault secrets list)", mount)
	}
	return fmt.Sprintf("permission denied by vault policy, or no such mount or role: a valid token may not use %s, so logging in again does not help; "+
		"vault answers 403 for any path the policy does not grant, whether it exists or not: check %s, "+
		"then grant the path in the policy of certkeeper's role (certkeeper policy prints what it needs) (%v)", e.Path, exists, e.Err)
}

// pkiRolePath takes a sign or issue path apart: <mount>/sign/<role>, where
// a mount may itself hold slashes.
func pkiRolePath(path string) (mount, role string, ok bool) {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return "", "", false
	}
	rest, role := path[:i], path[i+1:]
	for _, op := range []string{"/sign", "/issue"} {
		if m, found := strings.CutSuffix(rest, op); found && m != "" && role != "" {
			return m, role, true
		}
	}
	return "", "", false
}
func (e *DeniedError) Unwrap() error { return e.Err }

// Error is a failed Vault request, with what a caller needs to back off
// correctly. Its text never holds a token or secret.
type Error struct {
	Status     int           // HTTP status; 0 when Vault was not reached
	RetryAfter time.Duration // from a 429's Retry-After header
	Err        error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// loginWait is the error of a request not sent because the last login
// failed and the next one is not due for wait. Its RetryAfter makes the
// caller's next attempt come no sooner (an earlier one would only meet
// this again), and its text names no time of its own: the caller says
// when it tries next, once.
func loginWait(wait time.Duration, last error) error {
	ve := &Error{RetryAfter: wait, Err: fmt.Errorf("vault login failed: %w", last)}
	var inner *Error
	if errors.As(last, &inner) {
		ve.Status = inner.Status // Transient judges the login's failure
	}
	return ve
}

func classify(err error, info *callInfo) error {
	ve := &Error{Err: err, Status: info.status, RetryAfter: info.retryAfter}
	var re *api.ResponseError
	if errors.As(err, &re) {
		ve.Status = re.StatusCode
		ve.Err = fmt.Errorf("vault answered %d on %s: %s", re.StatusCode, urlPath(re.URL), vaultMessages(re.Errors))
	}
	return ve
}

// multiError is how Vault (through hashicorp/go-multierror) spells several
// errors in one message: "1 error occurred:\n\t* permission denied\n\n".
// Shown on one line it became "1 error occurred:; \t* permission denied; ; ".
var multiError = regexp.MustCompile(`^\s*\d+ errors? occurred:\s*`)

// vaultMessages puts Vault's error messages on one line: each message of
// a multi-error becomes one item, whitespace runs become one space, and
// items are joined with "; ".
func vaultMessages(errs []string) string {
	var items []string
	for _, e := range errs {
		if loc := multiError.FindStringIndex(e); loc != nil {
			for _, item := range strings.Split(e[loc[1]:], "\n") {
				item = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(item), "* "))
				if item != "" {
					items = append(items, strings.Join(strings.Fields(item), " "))
				}
			}
			continue
		}
		if e = strings.Join(strings.Fields(e), " "); e != "" {
			items = append(items, e)
		}
	}
	return strings.Join(items, "; ")
}

// urlPath drops the scheme, host and query (the api client's list=true)
// so messages stay short and readable.
func urlPath(u string) string {
	u, _, _ = strings.Cut(u, "?")
	if i := strings.Index(u, "/v1/"); i >= 0 {
		return u[i+len("/v1/"):]
	}
	return u
}

// callInfo carries what the transport saw back to the caller that made the
// request, since the api client's errors drop response headers.
type callInfo struct {
	status     int
	retryAfter time.Duration
}

type callInfoKey struct{}

func withCallInfo(ctx context.Context) (context.Context, *callInfo) {
	info := &callInfo{}
	return context.WithValue(ctx, callInfoKey{}, info), info
}

type observingTransport struct {
	next     http.RoundTripper
	observer Observer
	now      func() time.Time

	// holdUntil is when the last 429's Retry-After ends: until then no
	// request of this client goes out, whichever part of certkeeper makes
	// it (a renewal, the trust bundles, the revocation or issuer checks),
	// so one that did not get the 429 does not hit Vault while it asked
	// for quiet.
	mu        sync.Mutex
	holdUntil time.Time
}

func (t *observingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.hold(req.Context()); err != nil {
		return nil, err
	}
	start := t.now()
	resp, err := t.next.RoundTrip(req)
	if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
		if wait := parseRetryAfter(resp.Header.Get("Retry-After"), t.now()); wait > 0 {
			t.mu.Lock()
			t.holdUntil = later(t.holdUntil, t.now().Add(wait))
			t.mu.Unlock()
		}
	}
	code := 0
	if resp != nil {
		code = resp.StatusCode
	}
	if t.observer != nil {
		t.observer.ObserveVaultRequest(Operation(req.URL.Path), code, t.now().Sub(start))
	}
	if info, ok := req.Context().Value(callInfoKey{}).(*callInfo); ok && resp != nil {
		info.status = code
		info.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), t.now())
	}
	return resp, err
}

// hold waits out a Retry-After Vault gave this client, or ctx.
func (t *observingTransport) hold(ctx context.Context) error {
	t.mu.Lock()
	wait := t.holdUntil.Sub(t.now())
	t.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// MaxRetryAfter caps the wait a Retry-After header can impose. Vault's
// rate-limit quotas ask for seconds; a header asking for hours (a broken
// proxy, or one that means harm) must not park renewals until the
// certificates expire.
const MaxRetryAfter = 10 * time.Minute

func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs > 0 {
		if secs > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), MaxRetryAfter)
	}
	return 0
}

// Operation names a Vault API path for metrics, without its variable parts
// (mount and role names), so label values stay few.
func Operation(path string) string {
	p := strings.TrimPrefix(path, "/v1/")
	switch {
	case strings.HasPrefix(p, "auth/token/renew-self"):
		return "token_renew"
	case strings.HasPrefix(p, "auth/token/lookup-self"):
		return "token_lookup"
	case strings.HasPrefix(p, "auth/") && strings.HasSuffix(p, "/login"):
		return "login"
	case strings.HasPrefix(p, "sys/wrapping/unwrap"):
		return "unwrap"
	case strings.Contains(p, "/sign/"):
		return "sign"
	case strings.Contains(p, "/issue/"):
		return "issue"
	case strings.HasSuffix(p, "/crl/rotate"):
		return "crl_rotate"
	case strings.HasSuffix(p, "/revoke-with-key"):
		return "revoke"
	case strings.Contains(p, "/crl"):
		return "crl"
	case strings.Contains(p, "/cert/") && !strings.HasSuffix(p, "/ca_chain"):
		return "cert"
	case strings.Contains(p, "ca_chain") || strings.Contains(p, "/issuer"):
		return "ca"
	}
	return "other"
}

// Transient reports whether err is worth retrying soon: Vault unreachable,
// overloaded, sealed or between leaders. Policy and request errors are
// retried too, but they deserve louder logs.
func Transient(err error) bool {
	var ve *Error
	if !errors.As(err, &ve) {
		return false
	}
	if ve.Status == 0 || ve.Status == http.StatusTooManyRequests || ve.Status >= 500 {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}
