package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"

	"github.com/certkeeper/certkeeper/config"
)

// appRole logs in with a role_id and a secret_id. When the secret_id comes
// response-wrapped, the wrapping token is exchanged for it once, at start
// (wrapping tokens live minutes, so waiting for the first renewal would
// find it expired), and the secret_id is then kept only in memory.
type appRole struct {
	auth config.Auth

	mu       sync.Mutex
	secretID string // unwrapped; empty until prepare succeeds
}

// prepare unwraps the secret_id if it is wrapped and not yet unwrapped.
func (r *appRole) prepare(ctx context.Context, c *api.Client) error {
	if !r.auth.SecretIDWrapped {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.secretID != "" {
		return nil
	}
	sid, err := unwrapSecretID(ctx, c, r.auth.SecretIDFile, r.auth.Mount)
	if err != nil {
		return err
	}
	r.secretID = sid
	return nil
}

func (r *appRole) login(ctx context.Context, c *api.Client) (*api.Secret, error) {
	b, err := os.ReadFile(r.auth.RoleIDFile)
	if err != nil {
		return nil, fmt.Errorf("reading role_id file: %w", err)
	}
	roleID := strings.TrimSpace(string(b))
	secretID := &approle.SecretID{FromFile: r.auth.SecretIDFile}
	if r.auth.SecretIDWrapped {
		if err := r.prepare(ctx, c); err != nil {
			return nil, err
		}
		r.mu.Lock()
		secretID = &approle.SecretID{FromString: r.secretID}
		r.mu.Unlock()
	}
	auth, err := approle.NewAppRoleAuth(roleID, secretID, approle.WithMountPath(r.auth.Mount))
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

// WrappingError is a wrapping token that cannot give its secret_id: used
// (by someone else, if not by an earlier certkeeper), expired, or not made
// by a secret-id request. Only a new wrapped secret_id fixes it.
type WrappingError struct {
	File   string
	Reason string
	Err    error
}

func (e *WrappingError) Error() string {
	msg := fmt.Sprintf("the response-wrapped secret_id in %s %s; provision a new one", e.File, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}
func (e *WrappingError) Unwrap() error { return e.Err }

// unwrapSecretID exchanges the wrapping token in file for the secret_id it
// wraps. It looks the token up first: a lookup does not use the token up,
// and it says which request created it, so a token swapped for one that
// wraps something else is refused instead of unwrapped.
func unwrapSecretID(ctx context.Context, c *api.Client, file, mount string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("reading wrapped secret_id: %w", err)
	}
	wt := strings.TrimSpace(string(b))
	if wt == "" {
		return "", &WrappingError{File: file, Reason: "is empty"}
	}
	// A clone shares the transport but not the token: the wrapping token
	// must never become the agent's token, even for a moment.
	cl, err := c.Clone()
	if err != nil {
		return "", fmt.Errorf("unwrapping secret_id: %w", err)
	}
	cl.ClearToken()
	lctx, info := withCallInfo(ctx)
	look, err := cl.Logical().WriteWithContext(lctx, "sys/wrapping/lookup", map[string]any{"token": wt})
	if err != nil {
		return "", wrappingFailure(file, classify(err, info))
	}
	path, _ := lookupString(look, "creation_path")
	if !secretIDPath(path, mount) {
		return "", &WrappingError{File: file, Reason: fmt.Sprintf("was not made by an approle secret-id request (its creation path is %q), so certkeeper will not use it", path)}
	}
	cl.SetToken(wt)
	uctx, info := withCallInfo(ctx)
	sec, err := cl.Logical().WriteWithContext(uctx, "sys/wrapping/unwrap", nil)
	cl.ClearToken()
	if err != nil {
		// Valid at lookup, gone now: someone else unwrapped it in between.
		return "", wrappingFailure(file, classify(err, info))
	}
	sid, _ := lookupString(sec, "secret_id")
	if sid == "" {
		return "", &WrappingError{File: file, Reason: "wrapped no secret_id"}
	}
	return sid, nil
}

// wrappingFailure says plainly when Vault no longer knows the token: the
// one thing an operator must act on.
func wrappingFailure(file string, err error) error {
	var ve *Error
	if errors.As(err, &ve) && (ve.Status == http.StatusBadRequest || ve.Status == http.StatusForbidden) {
		return &WrappingError{File: file, Reason: "was already unwrapped or has expired", Err: err}
	}
	return fmt.Errorf("unwrapping secret_id from %s: %w", file, err)
}

func secretIDPath(path, mount string) bool {
	rest, ok := strings.CutPrefix(path, "auth/"+strings.Trim(mount, "/")+"/role/")
	return ok && (strings.HasSuffix(rest, "/secret-id") || strings.HasSuffix(rest, "/custom-secret-id"))
}

func lookupString(sec *api.Secret, key string) (string, bool) {
	if sec == nil || sec.Data == nil {
		return "", false
	}
	s, ok := sec.Data[key].(string)
	return s, ok
}
