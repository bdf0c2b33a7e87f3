package telemetry

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
)

// fleetAgent answers Statuses the way *agent.Agent does: under its lock,
// one copy per configured certificate, sorted by name. Its statuses look
// like a real host's: serials, issuers, times, and one in fifty failing
// with a Vault error.
type fleetAgent struct {
	mu     sync.Mutex
	names  []string
	status map[string]*agent.Status
}

func newFleetAgent(n int) *fleetAgent {
	f := &fleetAgent{status: map[string]*agent.Status{}}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for i := range n {
		name := fmt.Sprintf("svc-%05d", i)
		st := &agent.Status{Name: name, CommonName: name + ".fleet.example.internal",
			Serial: fmt.Sprintf("3a:8b:0d:94:40:70:d2:e6:7c:78:67:c2:05:b5:12:a9:09:2b:%02x:%02x", i/256%256, i%256),
			Issuer: "example intermediate CA", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(23 * time.Hour),
			RenewAt: now.Add(15 * time.Hour), State: agent.StateValid, LastResult: "issued", LastSuccess: now.Add(-time.Hour),
			NextAttempt: now.Add(15 * time.Hour)}
		if i%50 == 0 {
			st.State, st.LastResult, st.Failures = agent.StateFailing, "failed", 3
			st.LastError = "pki_servers/sign/web: Put \"https://vault.example.internal:8200/v1/pki_servers/sign/web\": dial tcp 10.0.0.1:8200: connect: connection refused"
		}
		f.names = append(f.names, name)
		f.status[name] = st
	}
	return f
}

func (f *fleetAgent) Statuses() []agent.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]agent.Status, 0, len(f.names))
	for _, n := range f.names {
		out = append(out, *f.status[n])
	}
	slices.SortFunc(out, func(x, y agent.Status) int { return cmp.Compare(x.Name, y.Name) })
	return out
}

// BenchmarkStatusEndpoint is what one GET of /v1/status costs a daemon
// keeping 10,000 certificates: time, allocations, and the bytes sent
// (resp_bytes). "default" is a bare GET (what any reader of the endpoint
// gets first), "page" asks for the first 100.
//
//	go test -run '^$' -bench BenchmarkStatusEndpoint -benchmem ./telemetry/
func BenchmarkStatusEndpoint(b *testing.B) {
	h := Handler(HandlerOptions{Gatherer: NewRegistry(), Status: newFleetAgent(10000), ConfigPath: "/etc/certkeeper/certkeeper.hcl"})
	for _, bc := range []struct{ name, url string }{
		{"default", "/v1/status"},
		{"page", "/v1/status?offset=0&limit=100"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var size int64
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, bc.url, nil))
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d", bc.url, rec.Code)
				}
				size, _ = io.Copy(io.Discard, rec.Body)
			}
			b.ReportMetric(float64(size), "resp_bytes")
		})
	}
}
