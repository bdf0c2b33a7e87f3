package vault

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestRetryAfterHoldsEveryRequest: after a 429 with Retry-After, no
// request of the client reaches Vault until the wait is over, whichever
// path it is for: the part of certkeeper that did not get the 429 must
// not hit a Vault that asked for quiet.
func TestRetryAfterHoldsEveryRequest(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		first := len(at) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	tr := &observingTransport{next: http.DefaultTransport, now: time.Now}
	get := func(path string) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/v1/pki_int/sign/web"); code != http.StatusTooManyRequests {
		t.Fatalf("first answer %d", code)
	}
	get("/v1/pki_int/issuer/default/json")
	if gap := at[1].Sub(at[0]); gap < time.Second {
		t.Errorf("a request for another path reached Vault %v after a 429 with Retry-After: 1", gap)
	}
}
