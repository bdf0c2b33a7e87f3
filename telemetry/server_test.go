package telemetry

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/agent"
)

func TestUnready(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	good := agent.Status{Name: "good", NotAfter: now.Add(time.Hour), RenewAt: now.Add(30 * time.Minute), LastResult: "issued"}
	tests := []struct {
		name string
		st   agent.Status
		want string // "" = ready
	}{
		{"valid", good, ""},
		{"due, renewing, no failure yet", with(good, func(s *agent.Status) { s.RenewAt = now.Add(-time.Minute) }), ""},
		{"failing before its renewal point", with(good, func(s *agent.Status) { s.Failures = 2; s.LastError = "x" }), ""},
		{"failing past its renewal point", with(good, func(s *agent.Status) {
			s.RenewAt, s.Failures, s.LastError, s.NextAttempt = now.Add(-time.Minute), 3, "connection refused", now.Add(time.Minute)
		}), "past its renewal point (2027-01-15T07:59:00Z) and renewal failed 3 times in a row; expires 2027-01-15T09:00:00Z: connection refused; next attempt 2027-01-15T08:01:00Z"},
		{"expired", with(good, func(s *agent.Status) { s.NotAfter = now }), "expired at 2027-01-15T08:00:00Z"},
		{"first pass pending", agent.Status{Name: "p", LastResult: "pending"}, "no certificate yet (first pass not finished)"},
		{"nothing on disk and failing", agent.Status{Name: "m", LastResult: "failed", Failures: 1, LastError: "denied"}, "no certificate on disk: denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Unready([]agent.Status{tt.st}, now)
			if tt.want == "" {
				if len(got) != 0 {
					t.Errorf("unready: %q", got)
				}
				return
			}
			if len(got) != 1 || got[0] != tt.st.Name+": "+tt.want {
				t.Errorf("got %q\nwant %q", got, tt.st.Name+": "+tt.want)
			}
		})
	}
}

func with(st agent.Status, f func(*agent.Status)) agent.Status {
	f(&st)
	return st
}

func get(t *testing.T, h http.Handler, path string, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandler(t *testing.T) {
	now := time.Now()
	fa := &fakeAgent{statuses: []agent.Status{{Name: "web", CommonName: "web.example.internal", Serial: "01",
		NotAfter: now.Add(time.Hour), RenewAt: now.Add(30 * time.Minute), LastResult: "issued", State: agent.StateValid}}}
	reg := NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ExposeState(Sources{Certificates: fa}); err != nil {
		t.Fatal(err)
	}
	h := Handler(HandlerOptions{Gatherer: reg, Status: fa, ConfigPath: "/etc/certkeeper/certkeeper.hcl"})

	if r := get(t, h, "/healthz"); r.StatusCode != 200 || body(t, r) != "ok\n" {
		t.Errorf("/healthz: %d", r.StatusCode)
	}
	if r := get(t, h, "/readyz"); r.StatusCode != 200 {
		t.Errorf("/readyz with a good certificate: %d %s", r.StatusCode, body(t, r))
	}

	r := get(t, h, "/metrics")
	text := body(t, r)
	if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("/metrics: %d %s", r.StatusCode, r.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		"# TYPE certkeeper_certificate_not_after_timestamp_seconds gauge",
		`certkeeper_certificate_not_after_timestamp_seconds{name="web"}`,
		"go_goroutines", "process_start_time_seconds",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	r = get(t, h, "/metrics", "Accept", "application/openmetrics-text; version=1.0.0")
	om := body(t, r)
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/openmetrics-text") || !strings.HasSuffix(om, "# EOF\n") {
		t.Errorf("OpenMetrics not served: %s", r.Header.Get("Content-Type"))
	}
	if !strings.Contains(om, `certkeeper_certificate_renewals_total{name="web",result="success"} 0`) {
		t.Errorf("OpenMetrics body lacks the renewals counter:\n%s", om)
	}

	r = get(t, h, "/v1/status?offset=0")
	if r.Header.Get(ConfigHeader) != "/etc/certkeeper/certkeeper.hcl" {
		t.Errorf("%s header = %q", ConfigHeader, r.Header.Get(ConfigHeader))
	}
	var p StatusPage
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil || len(p.Certificates) != 1 || p.Certificates[0].Serial != "01" {
		t.Errorf("/v1/status = %+v, %v", p, err)
	}

	// Renewal failing past the renewal point: not ready, and says why.
	fa.mu.Lock()
	fa.statuses[0].RenewAt = now.Add(-time.Minute)
	fa.statuses[0].Failures = 4
	fa.statuses[0].LastError = "vault unreachable"
	fa.mu.Unlock()
	r = get(t, h, "/readyz")
	if b := body(t, r); r.StatusCode != 503 || !strings.Contains(b, "web: past its renewal point") || !strings.Contains(b, "vault unreachable") {
		t.Errorf("/readyz = %d %q", r.StatusCode, b)
	}
	if r := get(t, h, "/healthz"); r.StatusCode != 200 {
		t.Error("/healthz follows readiness; it must only say the process is alive")
	}
	if r := get(t, h, "/nope"); r.StatusCode != 404 {
		t.Errorf("/nope = %d", r.StatusCode)
	}
}

// A taken address is retried, not fatal, and the endpoint comes up once
// the address is free.
func TestServeRetriesUntilTheAddressIsFree(t *testing.T) {
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := squatter.Addr().String()
	listening := make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ServeOptions{Listen: addr, RetryEvery: 50 * time.Millisecond, Log: slog.New(slog.DiscardHandler),
			Handler:  http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hi") }),
			OnListen: func(a net.Addr) { listening <- a }})
	}()
	time.Sleep(150 * time.Millisecond)
	select {
	case <-listening:
		t.Fatal("listened on an address that was taken")
	default:
	}
	squatter.Close()
	select {
	case <-listening:
	case <-time.After(10 * time.Second):
		t.Fatal("never listened after the address was freed")
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after shutdown: %v", err)
	}
}

// TestListenFailureIsRecorded: a taken address is counted
// (certkeeper_telemetry_listen_failures_total), makes
// /readyz fail with the reason, and is what the Listener reports, until
// the endpoint binds; the count stays.
func TestListenFailureIsRecorded(t *testing.T) {
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := squatter.Addr().String()
	reg := NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(addr, m)
	fa := &fakeAgent{statuses: []agent.Status{{Name: "web", NotAfter: time.Now().Add(time.Hour), RenewAt: time.Now().Add(time.Minute), State: agent.StateValid}}}
	h := Handler(HandlerOptions{Gatherer: reg, Status: fa, Listener: l})
	listening := make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go Serve(ctx, ServeOptions{Listen: addr, RetryEvery: 50 * time.Millisecond, Log: slog.New(slog.DiscardHandler),
		Handler: h, Listener: l, OnListen: func(a net.Addr) { listening <- a }})
	deadline := time.Now().Add(10 * time.Second)
	for l.Status().Failures < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no failed bind recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := l.Status()
	if st.Listening || !strings.Contains(st.LastError, "address already in use") || st.Since.IsZero() {
		t.Errorf("listener status while taken: %+v", st)
	}
	// What the endpoint would answer, were it reached.
	r := get(t, h, "/readyz")
	if b := body(t, r); r.StatusCode != 503 || !strings.Contains(b, "telemetry endpoint cannot listen on "+addr) || !strings.Contains(b, "address already in use") {
		t.Errorf("/readyz while the address is taken = %d %q", r.StatusCode, b)
	}
	text := body(t, get(t, h, "/metrics"))
	if !regexp.MustCompile(`(?m)^certkeeper_telemetry_listen_failures_total [2-9]`).MatchString(text) {
		t.Errorf("/metrics while the address is taken lacks the failures:\n%s", grepLines(text, "certkeeper_telemetry"))
	}

	squatter.Close()
	select {
	case <-listening:
	case <-time.After(10 * time.Second):
		t.Fatal("never listened after the address was freed")
	}
	if r := get(t, h, "/readyz"); r.StatusCode != 200 {
		t.Errorf("/readyz once listening = %d %s", r.StatusCode, body(t, r))
	}
	text = body(t, get(t, h, "/metrics"))
	if !regexp.MustCompile(`(?m)^certkeeper_telemetry_listen_failures_total [2-9]`).MatchString(text) {
		t.Errorf("/metrics once listening:\n%s", grepLines(text, "certkeeper_telemetry"))
	}
}

func grepLines(text, sub string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestStatusIsBounded: a bare GET of /v1/status is a summary whatever the
// number of certificates; the list comes in pages of at most maxPage,
// which cover every certificate exactly once, in name order.
func TestStatusIsBounded(t *testing.T) {
	fa := newFleetAgent(2500)
	h := Handler(HandlerOptions{Gatherer: NewRegistry(), Status: fa, ConfigPath: "/etc/certkeeper/certkeeper.hcl"})
	r := get(t, h, "/v1/status")
	raw := body(t, r)
	var s StatusSummary
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		t.Fatal(err)
	}
	if len(raw) > 32<<10 {
		t.Errorf("the summary of 2,500 certificates is %d bytes", len(raw))
	}
	if s.Certificates != 2500 || s.States[agent.StateValid] != 2450 || s.States[agent.StateFailing] != 50 {
		t.Errorf("summary counts: %d certificates, states %v", s.Certificates, s.States)
	}
	if s.AttentionTotal != 50 || len(s.Attention) != attentionMax || s.Attention[0].Name != "svc-00000" || s.Attention[0].LastError == "" {
		t.Errorf("attention: %d in all, %d listed, first %+v", s.AttentionTotal, len(s.Attention), s.Attention[0])
	}
	if s.EarliestExpiry == nil || s.List != "/v1/status?offset=0&limit=100" {
		t.Errorf("summary: earliest %v, list %q", s.EarliestExpiry, s.List)
	}

	var seen []string
	for next := "/v1/status?offset=0&limit=5000"; next != ""; {
		r := get(t, h, next)
		var p StatusPage
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil || r.StatusCode != 200 {
			t.Fatalf("%s: %d %v", next, r.StatusCode, err)
		}
		if p.Limit != maxPage || len(p.Certificates) > maxPage || p.Total != 2500 {
			t.Fatalf("%s: limit %d, %d certificates of %d", next, p.Limit, len(p.Certificates), p.Total)
		}
		for _, st := range p.Certificates {
			seen = append(seen, st.Name)
		}
		next = p.Next
	}
	if len(seen) != 2500 || !slices.IsSorted(seen) || len(slices.Compact(slices.Clone(seen))) != 2500 {
		t.Errorf("pages gave %d certificates (sorted %v)", len(seen), slices.IsSorted(seen))
	}
	if r := get(t, h, "/v1/status?offset=2400&limit=200"); strings.Contains(body(t, r), `"next"`) {
		t.Error("the last page has a next")
	}
	for _, bad := range []string{"/v1/status?offset=-1", "/v1/status?limit=0", "/v1/status?limit=x"} {
		if r := get(t, h, bad); r.StatusCode != 400 {
			t.Errorf("%s = %d, want 400", bad, r.StatusCode)
		}
	}
}
