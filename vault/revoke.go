package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Revoked is Vault's answer to a revocation.
type Revoked struct {
	// At is when Vault recorded the revocation; a second request for the
	// same certificate answers the first one's time.
	At time.Time
	// Warnings are Vault's; one says it refused to list a certificate
	// that has already expired, which is not an error.
	Warnings []string
}

// RevokeWithKey revokes a certificate of mount, proving possession of its
// key (<mount>/revoke-with-key with certificate and private_key): it
// needs no more than `update` on that one path, works for certificates
// of no_store roles (Vault then stores the certificate to list it), and
// can revoke nothing whose key this host does not hold. Both are PEM.
//
// Vault answers a request it will never accept (the key does not match,
// no issuer of the mount signed the certificate) with HTTP 500, like a
// passing fault; those come back as *RevokeRefusedError, which retrying
// does not help.
func (c *Client) RevokeWithKey(ctx context.Context, mount, certPEM, keyPEM string) (*Revoked, error) {
	path := mount + "/revoke-with-key"
	sec, err := c.write(ctx, path, map[string]any{"certificate": certPEM, "private_key": keyPEM})
	if err != nil {
		if refused(err) {
			return nil, &RevokeRefusedError{Path: path, Err: err}
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := &Revoked{}
	if sec == nil {
		return out, nil
	}
	out.Warnings = sec.Warnings
	if sec.Data != nil {
		out.At = unixField(sec.Data["revocation_time"])
	}
	return out, nil
}

// RevokeRefusedError is a revocation Vault will never accept as asked.
type RevokeRefusedError struct {
	Path string
	Err  error
}

func (e *RevokeRefusedError) Error() string {
	return fmt.Sprintf("%s: vault refuses this revocation, and asking again will not change that: %v", e.Path, e.Err)
}
func (e *RevokeRefusedError) Unwrap() error { return e.Err }

// refusedMessages are the texts of the user errors Vault 1.21's revoke
// paths answer with HTTP 500 (builtin/logical/pki/path_revoke.go); any
// other 500 may be a passing fault (a standby between leaders) and is
// retried.
var refusedMessages = []string{
	"does not match certificate's public key",
	"unable to verify signature on presented cert",
	"certificate could not be parsed",
	"certificate contains no pem data",
	"provided certificate data was too short",
	"invalid serial number on presented certificate",
	"failed to parse provided private key",
	"contained no data or failed to parse",
	"error validating integrity of private key",
	"unknown public key algorithm",
	"unequal value already present",
	"to its own crl is not allowed",
}

func refused(err error) bool {
	var ve *Error
	if !errors.As(err, &ve) {
		return false
	}
	switch {
	case ve.Status == http.StatusBadRequest:
		return true
	case ve.Status != http.StatusInternalServerError:
		return false
	}
	msg := strings.ToLower(ve.Error())
	for _, m := range refusedMessages {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// RevocationTime reads, without a token, whether Vault has revoked the
// certificate with serial in mount (<mount>/cert/<serial>): the time, or
// zero when it has not, or does not know the certificate (a no_store
// certificate nobody revoked).
func (c *Client) RevocationTime(ctx context.Context, mount, serial string) (time.Time, error) {
	path := fmt.Sprintf("%s/cert/%s", mount, serial)
	ctx, info := withCallInfo(ctx)
	sec, err := c.api.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", path, classify(err, info))
	}
	if sec == nil || sec.Data == nil {
		return time.Time{}, nil
	}
	return unixField(sec.Data["revocation_time"]), nil
}

// unixField reads a Unix time Vault sends as a JSON number; zero (or
// anything else) is the zero time.
func unixField(v any) time.Time {
	var secs int64
	switch n := v.(type) {
	case json.Number:
		secs, _ = n.Int64()
	case float64:
		secs = int64(n)
	case int64:
		secs = n
	}
	if secs <= 0 {
		return time.Time{}
	}
	return time.Unix(secs, 0)
}
