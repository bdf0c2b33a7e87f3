package faultproxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func newProxy(t *testing.T) (*Proxy, *atomic.Int32) {
	t.Helper()
	hits := new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"echo":"`+string(body)+`"}`)
	}))
	t.Cleanup(srv.Close)
	p, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, hits
}

func post(ctx context.Context, c *http.Client, url, body string) (int, string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func TestPassAndRecord(t *testing.T) {
	p, hits := newProxy(t)
	c := &http.Client{}
	for range 3 {
		code, body, err := post(t.Context(), c, p.Addr+"/v1/pki/sign/web", "csr")
		if err != nil || code != 200 || body != `{"echo":"csr"}` {
			t.Fatalf("pass: %d %q %v", code, body, err)
		}
	}
	recs := p.Records()
	if len(recs) != 3 || hits.Load() != 3 || recs[0].Path != "/v1/pki/sign/web" || recs[0].Status != 200 {
		t.Fatalf("records %+v, upstream hits %d", recs, hits.Load())
	}
}

func TestHookAnswersAndRewrites(t *testing.T) {
	p, hits := newProxy(t)
	p.SetHook(func(ex *Exchange, forward func() error) error {
		if strings.Contains(ex.Path, "/sign/") {
			ex.Reply(503, `{"errors":["Vault is sealed"]}`)
			ex.RespHeader.Set("Retry-After", "7")
			return nil
		}
		if err := forward(); err != nil {
			return err
		}
		ex.RespBody = []byte(strings.ToUpper(string(ex.RespBody)))
		return nil
	})
	c := &http.Client{}
	code, body, err := post(t.Context(), c, p.Addr+"/v1/pki/sign/web", "x")
	if err != nil || code != 503 || !strings.Contains(body, "sealed") {
		t.Fatalf("hook reply: %d %q %v", code, body, err)
	}
	if hits.Load() != 0 {
		t.Error("a request the hook answered reached the upstream")
	}
	code, body, err = post(t.Context(), c, p.Addr+"/v1/other", "abc")
	if err != nil || code != 200 || body != `{"ECHO":"ABC"}` {
		t.Fatalf("rewrite: %d %q %v", code, body, err)
	}
}

func TestBlackholeNeverAnswers(t *testing.T) {
	p, hits := newProxy(t)
	p.SetMode(Blackhole)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, _, err := post(ctx, &http.Client{}, p.Addr+"/v1/x", "y")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the client's deadline", err)
	}
	if hits.Load() != 0 || len(p.Records()) != 1 || p.Records()[0].Status != 0 {
		t.Fatalf("records %+v hits %d", p.Records(), hits.Load())
	}
}

func TestResetLooksDead(t *testing.T) {
	p, hits := newProxy(t)
	p.SetMode(Reset)
	_, _, err := post(t.Context(), &http.Client{}, p.Addr+"/v1/x", "y")
	if err == nil {
		t.Fatal("a reset connection gave an answer")
	}
	if hits.Load() != 0 || len(p.Records()) == 0 {
		t.Fatalf("records %+v hits %d", p.Records(), hits.Load())
	}
	p.SetMode(Pass)
	if code, _, err := post(t.Context(), &http.Client{}, p.Addr+"/v1/x", "y"); err != nil || code != 200 {
		t.Fatalf("after reset mode ends: %d %v", code, err)
	}
}

func TestWindows(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var recs []Record
	for _, s := range []int{0, 10, 50, 65, 70, 130} {
		recs = append(recs, Record{At: base.Add(time.Duration(s) * time.Second)})
	}
	if got := PerMinute(recs, base, base.Add(3*time.Minute), nil); len(got) != 3 || got[0] != 3 || got[1] != 2 || got[2] != 1 {
		t.Errorf("PerMinute = %v", got)
	}
	if got := MaxInWindow(recs, time.Minute, nil); got != 3 { // 10, 50, 65
		t.Errorf("MaxInWindow = %d, want 3", got)
	}
}
