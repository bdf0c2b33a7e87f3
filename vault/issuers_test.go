package vault

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/config"
)

// issuerVault answers a PKI mount's issuer list and issuer reads, counting
// them; lists wait on gate so callers can be made to overlap.
type issuerVault struct {
	lists, reads atomic.Int32
	gate         chan struct{}
}

const (
	issuerA = "5a3e0c6f-1d2b-4c7a-9e8f-0123456789ab"
	issuerB = "9b8c7d6e-5f4a-4b3c-8d2e-fedcba987654"
)

func (v *issuerVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasSuffix(r.URL.Path, "/issuers") || strings.HasSuffix(r.URL.Path, "/issuers/"):
		v.lists.Add(1)
		if v.gate != nil {
			<-v.gate
		}
		w.Write([]byte(`{"data":{"keys":["` + issuerA + `","` + issuerB + `"],"key_info":{"` + issuerA + `":{"is_default":true,"key_id":"k"},"` + issuerB + `":{"key_id":""}}}}`))
	case strings.Contains(r.URL.Path, "/issuer/"):
		v.reads.Add(1)
		ref := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1/pki_int/issuer/"), "/")[0]
		w.Write([]byte(`{"data":{"certificate":"PEM of ` + ref + `"}}`))
	default:
		http.NotFound(w, r)
	}
}

func issuerClient(t *testing.T, addr string) *Client {
	t.Helper()
	c, err := New(config.Vault{Addresses: []string{addr}, Timeout: 5 * time.Second, MaxParallel: 4, Auth: []config.Auth{{Method: config.AuthToken}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestIssuerReadsShared: the CA rotation check and the revocation check
// each list a mount's issuers and read their certificates. Lists asked
// at the same moment go to Vault once; each issuer's certificate is read
// once per process, whoever asks; a list asked after the last answered
// goes to Vault again, so a new default is seen.
func TestIssuerReadsShared(t *testing.T) {
	v := &issuerVault{gate: make(chan struct{})}
	srv := httptest.NewServer(v)
	defer srv.Close()
	c := issuerClient(t, srv.URL)

	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			list, err := c.ListIssuers(t.Context(), "pki_int")
			if err != nil || len(list) != 2 || !list[0].Default || list[1].HasKey {
				t.Errorf("list: %+v, %v", list, err)
			}
		})
	}
	// Both callers are in: the first is waiting for Vault's answer, the
	// second for the first.
	for v.lists.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(v.gate)
	wg.Wait()
	if n := v.lists.Load(); n != 1 {
		t.Errorf("two overlapping lists went to Vault %d times, want 1", n)
	}

	pem, err := c.IssuerCertificate(t.Context(), "pki_int", issuerA)
	if err != nil || pem != "PEM of "+issuerA {
		t.Fatalf("issuer certificate: %q, %v", pem, err)
	}
	all, err := c.Issuers(t.Context(), "pki_int")
	if err != nil || len(all) != 2 || all[1].Certificate != "PEM of "+issuerB {
		t.Fatalf("issuers: %+v, %v", all, err)
	}
	if _, err := c.Issuers(t.Context(), "pki_int"); err != nil {
		t.Fatal(err)
	}
	if n := v.reads.Load(); n != 2 {
		t.Errorf("issuer certificates read %d times for 2 issuers, want 2", n)
	}
	if n := v.lists.Load(); n != 3 {
		t.Errorf("lists after the overlapping pair: %d in all, want 3 (each later list asks Vault)", n)
	}

	// A name is not an id: "default" may be another issuer tomorrow.
	for range 2 {
		if _, err := c.IssuerCertificate(t.Context(), "pki_int", "default"); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.reads.Load(); n != 4 {
		t.Errorf("reads of issuer \"default\" were cached: %d reads in all, want 4", n)
	}
}
