package vault

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// FuzzParseIssued feeds the sign/issue answer parser any JSON body, decoded
// the way the api client decodes Vault's responses. It must not panic,
// must not accept an answer without a certificate (or, for issue, a key),
// and must never put the private key into an error.
func FuzzParseIssued(f *testing.F) {
	f.Add([]byte(`{"data":{"certificate":"C","issuing_ca":"I","ca_chain":["I","R"],"serial_number":"01:02"}}`), false)
	f.Add([]byte(`{"data":{"certificate":"C","private_key":"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\n-----END EC PRIVATE KEY-----"}}`), true)
	f.Add([]byte(`{"data":{"certificate":42,"ca_chain":"I","private_key":["SECRETKEYBYTES"]}}`), true)
	f.Add([]byte(`{"data":null,"warnings":["TTL of \"72h\" exceeded the effective max_ttl"]}`), false)
	f.Fuzz(func(t *testing.T, body []byte, wantKey bool) {
		secret, err := api.ParseSecret(bytes.NewReader(body))
		if err != nil || secret == nil || secret.Data == nil {
			return
		}
		out, err := parseIssued(secret.Data, wantKey)
		if err != nil {
			if key, ok := secret.Data["private_key"].(string); ok && len(key) >= 8 && strings.Contains(err.Error(), key) {
				t.Fatalf("error quotes the private key: %v", err)
			}
			return
		}
		if out.Certificate == "" || (wantKey && out.PrivateKey == "") {
			t.Fatalf("accepted an answer without certificate or key: %+v", out)
		}
	})
}

// FuzzParseRetryAfter: a Retry-After header is whatever Vault (or a proxy
// in front of it) sends. The wait must be between 0 and MaxRetryAfter
// (fuzzing found "9227000000" overflowing to a negative duration).
func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, s := range []string{"7", "0", "-3", "soon", "Thu, 01 Jan 2026 00:01:00 GMT", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d := parseRetryAfter(v, now)
		if d < 0 || d > MaxRetryAfter {
			t.Fatalf("Retry-After %q gave a wait of %v, want 0 to %v", v, d, MaxRetryAfter)
		}
	})
}
