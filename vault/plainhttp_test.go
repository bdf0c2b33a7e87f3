package vault

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
)

// TestPlainHTTPWarnsAtStart: a client for a plain-http address to another
// host says so in the log when it is made (start, or a reload that
// changes the vault block); loopback http is a local Vault and is quiet.
func TestPlainHTTPWarnsAtStart(t *testing.T) {
	for _, tt := range []struct {
		addrs []string
		warn  string
	}{
		{[]string{"http://10.0.0.5:8200"}, "address=http://10.0.0.5:8200"},
		{[]string{"https://vault-a.example.internal:8200", "http://vault-b.example.internal:8200"}, "address=http://vault-b.example.internal:8200"},
		{[]string{"http://127.0.0.1:8200"}, ""},
		{[]string{"https://vault.example.internal:8200"}, ""},
	} {
		var logs bytes.Buffer
		c, err := New(config.Vault{Addresses: tt.addrs, Timeout: time.Second, MaxParallel: 1, Auth: []config.Auth{{Method: config.AuthToken}}},
			Options{Log: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "is plain http to a host that is not this one")
		if warned != (tt.warn != "") || !strings.Contains(logs.String(), tt.warn) {
			t.Errorf("%v: logs %q, want warning %q", tt.addrs, logs.String(), tt.warn)
		}
	}
}
