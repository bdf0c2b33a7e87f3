package vault

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
)

// TestConnectionsKeptAlive: renewals in waves of max_parallel reuse their
// connections instead of opening (and, with TLS, handshaking) a new one
// for most requests.
func TestConnectionsKeptAlive(t *testing.T) {
	const parallel, waves = 16, 5
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/auth/token/lookup-self":
			json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"ttl": 3600, "renewable": false, "accessor": "acc"}})
		case "/v1/pki_int/sign/web":
			// Long enough that a whole wave is in flight at once.
			time.Sleep(20 * time.Millisecond)
			json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"certificate": "C", "issuing_ca": "I", "serial_number": "01"}})
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("t0k3n"), 0o600)
	c, err := New(config.Vault{
		Addresses:   []string{srv.URL},
		Timeout:     10 * time.Second,
		MaxParallel: parallel,
		Auth:        []config.Auth{{Method: config.AuthToken, TokenFile: tokenFile}},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	for range waves {
		var wg sync.WaitGroup
		for range parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.Obtain(t.Context(), CertRequest{Certificate: config.Certificate{Mount: "pki_int", Role: "web", CommonName: "web"}, CSR: []byte("csr")}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	// One wave's worth of connections (plus the lookup's), then reuse.
	if n := conns.Load(); n > parallel+2 {
		t.Errorf("%d requests opened %d connections, want at most %d", waves*parallel+1, n, parallel+2)
	}
}
