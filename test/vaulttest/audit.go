package vaulttest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// EnableFileAudit turns on a file audit device writing JSON lines to path,
// and for each auth mount given (such as "aws", "jwt-gcp") lets the role
// asked for and the error answered appear in clear rather than HMAC'd, so
// a test can tell logins apart. Tokens, JWTs and signed requests stay
// HMAC'd.
func EnableFileAudit(ctx context.Context, c *api.Client, path string, authMounts ...string) error {
	if err := c.Sys().EnableAuditWithOptionsWithContext(ctx, "file", &api.EnableAuditOptions{
		Type: "file", Options: map[string]string{"file_path": path},
	}); err != nil {
		return fmt.Errorf("enabling the file audit device: %w", err)
	}
	for _, m := range authMounts {
		if err := c.Sys().TuneMountWithContext(ctx, "auth/"+m, api.MountConfigInput{
			AuditNonHMACRequestKeys:  []string{"role", "name"},
			AuditNonHMACResponseKeys: []string{"error"},
		}); err != nil {
			return fmt.Errorf("tuning auth/%s for the audit log: %w", m, err)
		}
	}
	return nil
}

// EnableFileAudit is the test form of EnableFileAudit.
func (s *Server) EnableFileAudit(t testing.TB, path string, authMounts ...string) {
	t.Helper()
	if err := EnableFileAudit(t.Context(), s.Client, path, authMounts...); err != nil {
		t.Fatal(err)
	}
}

// AuditLogin is one login as Vault's audit log records it: the response
// line of a request to auth/<mount>/login.
type AuditLogin struct {
	Time time.Time
	// MountType is the auth method (cert, aws, jwt, approle); MountPoint
	// is where it is mounted ("auth/jwt-gcp/").
	MountType, MountPoint string
	// Role is the role asked for (cert auth's "name"), when the mount
	// lets it through in clear.
	Role string
	OK   bool
	// Error is Vault's answer to a failed login, when in clear.
	Error string
	// Line is the audit log line, for excerpts.
	Line string
}

// Mount is the mount without the auth/ prefix and the trailing slash.
func (l AuditLogin) Mount() string {
	return strings.TrimSuffix(strings.TrimPrefix(l.MountPoint, "auth/"), "/")
}

// ReadAuditLogins returns every login in the audit log at path, in order.
// Success is a response carrying auth (the top-level auth of an entry is
// the caller's token, not the login's).
func ReadAuditLogins(path string) ([]AuditLogin, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []AuditLogin
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e struct {
			Time    time.Time `json:"time"`
			Type    string    `json:"type"`
			Request struct {
				Path       string         `json:"path"`
				MountType  string         `json:"mount_type"`
				MountPoint string         `json:"mount_point"`
				Data       map[string]any `json:"data"`
			} `json:"request"`
			Response struct {
				Auth *struct{} `json:"auth"`
				Data struct {
					Error string `json:"error"`
				} `json:"data"`
			} `json:"response"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("audit log line: %w", err)
		}
		if e.Type != "response" || !strings.HasPrefix(e.Request.Path, "auth/") || !strings.HasSuffix(e.Request.Path, "/login") {
			continue
		}
		role, _ := e.Request.Data["role"].(string)
		if role == "" {
			role, _ = e.Request.Data["name"].(string)
		}
		out = append(out, AuditLogin{Time: e.Time, MountType: e.Request.MountType, MountPoint: e.Request.MountPoint,
			Role: role, OK: e.Response.Auth != nil, Error: e.Response.Data.Error, Line: sc.Text()})
	}
	return out, sc.Err()
}

// AuditLogins is the test form of ReadAuditLogins.
func AuditLogins(t testing.TB, path string) []AuditLogin {
	t.Helper()
	l, err := ReadAuditLogins(path)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
