package vault

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/certkeeper/certkeeper/config"
)

func TestParseIssuedRefusesWrongShapes(t *testing.T) {
	tests := []struct {
		name    string
		data    map[string]any
		wantKey bool
		wantErr string
	}{
		{"good sign answer", map[string]any{"certificate": "C", "issuing_ca": "I", "ca_chain": []any{"I", "R"}, "serial_number": "01:02"}, false, ""},
		{"no certificate", map[string]any{"issuing_ca": "I"}, false, "no certificate"},
		{"certificate of the wrong type", map[string]any{"certificate": 42.0}, false, "field certificate is float64"},
		{"chain not a list", map[string]any{"certificate": "C", "ca_chain": "I"}, false, "field ca_chain is string, not a list"},
		{"chain of numbers", map[string]any{"certificate": "C", "ca_chain": []any{1.0}}, false, "ca_chain holds a float64"},
		{"issue without key", map[string]any{"certificate": "C"}, true, "no private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseIssued(tt.data, tt.wantKey)
			if tt.wantErr == "" {
				if err != nil || got.Certificate != "C" || len(got.CAChain) != 2 || got.Serial != "01:02" {
					t.Fatalf("got %+v, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseIssuedNeverQuotesKey(t *testing.T) {
	_, err := parseIssued(map[string]any{"certificate": "C", "private_key": []any{"SECRETKEYBYTES"}}, true)
	if err == nil || strings.Contains(err.Error(), "SECRETKEYBYTES") {
		t.Fatalf("err = %v", err)
	}
}

func TestOperation(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/pki_int/sign/web":            "sign",
		"/v1/pki_int/issuer/abc/sign/web": "sign",
		"/v1/pki_int/issue/web":           "issue",
		"/v1/auth/approle/login":          "login",
		"/v1/auth/token/renew-self":       "token_renew",
		"/v1/auth/token/lookup-self":      "token_lookup",
		"/v1/pki/crl/pem":                 "crl",
		"/v1/pki_int/issuer/default/crl":  "crl",
		"/v1/pki_int/cert/ca_chain":       "ca",
		"/v1/pki_int/cert/1a:2b":          "cert",
		"/v1/pki_int/crl/rotate":          "crl_rotate",
		"/v1/pki_int/revoke-with-key":     "revoke",
		"/v1/sys/health":                  "other",
	} {
		if got := Operation(path); got != want {
			t.Errorf("Operation(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := parseRetryAfter("7", now); got != 7*time.Second {
		t.Errorf("seconds: %v", got)
	}
	if got := parseRetryAfter(now.Add(time.Minute).Format(http.TimeFormat), now); got != time.Minute {
		t.Errorf("date: %v", got)
	}
	if got := parseRetryAfter("86400", now); got != MaxRetryAfter {
		t.Errorf("a day: %v, want the %v cap", got, MaxRetryAfter)
	}
	for _, bad := range []string{"", "-3", "soon"} {
		if got := parseRetryAfter(bad, now); got != 0 {
			t.Errorf("%q gave %v", bad, got)
		}
	}
}

func TestClassifyAndTransient(t *testing.T) {
	re := &api.ResponseError{StatusCode: 503, URL: "https://v:8200/v1/pki/sign/web", Errors: []string{"sealed"}}
	err := classify(re, &callInfo{})
	if !Transient(err) || !strings.Contains(err.Error(), "vault answered 503 on pki/sign/web: sealed") {
		t.Errorf("503: %v transient=%v", err, Transient(err))
	}
	err = classify(&api.ResponseError{StatusCode: 400, Errors: []string{"bad name"}}, &callInfo{})
	if Transient(err) {
		t.Errorf("400 counted as transient")
	}
	var ve *Error
	err = classify(&api.ResponseError{StatusCode: 429}, &callInfo{status: 429, retryAfter: 3 * time.Second})
	if !errors.As(err, &ve) || ve.RetryAfter != 3*time.Second || !Transient(err) {
		t.Errorf("429: %+v", ve)
	}
	if !Transient(classify(errors.New("dial tcp: connection refused"), &callInfo{})) {
		t.Error("unreachable Vault not transient")
	}
}

func TestPolicyGrantsRevokeWithKeyOnlyWhenAsked(t *testing.T) {
	cfg := &config.Config{Path: "c.hcl", Certificates: []config.Certificate{
		{Name: "web", Mount: "pki_servers", Role: "web", IssueMode: config.ModeSign, RevokeSuperseded: true},
		{Name: "caller", Mount: "pki_clients", Role: "client", IssueMode: config.ModeSign},
	}}
	p := Policy(cfg)
	for _, want := range []string{
		"path \"pki_servers/revoke-with-key\" {\n  capabilities = [\"update\"]\n}",
		"path \"pki_servers/crl/rotate\" {\n  capabilities = [\"read\"]\n}",
		"path \"pki_clients/crl/rotate\" {\n  capabilities = [\"read\"]\n}",
		"path \"pki_clients/issuer/+/crl/pem\"",
	} {
		if !strings.Contains(p, want) {
			t.Errorf("policy lacks %q:\n%s", want, p)
		}
	}
	for _, never := range []string{`"pki_clients/revoke-with-key"`, `/revoke"`, `"pki_servers/revoke"`, `/cert/`} {
		if strings.Contains(p, never) {
			t.Errorf("policy grants %s:\n%s", never, p)
		}
	}
	cfg.Certificates[0].RevokeSuperseded = false
	if p := Policy(cfg); strings.Contains(p, "revoke") {
		t.Errorf("without revoke_superseded the policy grants a revocation:\n%s", p)
	}
}

func TestRefusedRevocationsAreNotTransient(t *testing.T) {
	for _, tt := range []struct {
		status  int
		msg     string
		refused bool
	}{
		{500, "vault answered 500 on pki/revoke-with-key: provided private key does not match certificate's public key", true},
		{500, "vault answered 500 on pki/revoke-with-key: unable to verify signature on presented cert from any present issuer in this mount; certificates from previous CAs will need ...", true},
		{400, "vault answered 400 on pki/revoke-with-key: Must have private key to revoke via the /revoke-with-key path.", true},
		{500, "vault answered 500 on pki/revoke-with-key: local node not active but active cluster node not found", false},
		{503, "vault answered 503 on pki/revoke-with-key: Vault is sealed", false},
		{429, "vault answered 429 on pki/revoke-with-key: request path ...: rate limit quota exceeded", false},
	} {
		err := &Error{Status: tt.status, Err: errors.New(tt.msg)}
		if got := refused(err); got != tt.refused {
			t.Errorf("refused(%d %q) = %v, want %v", tt.status, tt.msg, got, tt.refused)
		}
	}
}

func TestUnixField(t *testing.T) {
	if got := unixField(json.Number("1764500000")); !got.Equal(time.Unix(1764500000, 0)) {
		t.Errorf("json.Number: %v", got)
	}
	for _, zero := range []any{json.Number("0"), nil, "soon", float64(-1)} {
		if got := unixField(zero); !got.IsZero() {
			t.Errorf("unixField(%v) = %v, want zero", zero, got)
		}
	}
}
