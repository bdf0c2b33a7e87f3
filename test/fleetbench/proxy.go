//go:build linux

package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Why a proxy at each node's door rather than Vault's audit log:
//   - The audit log sees only what reaches Vault's request handling. A
//     request a standby answers with a redirect or a 500 during an
//     election, or one cut off when its node dies, is never audited, and
//     those are exactly what the leader-kill phase is about.
//   - An audit entry is timestamped inside Vault, after the request was
//     read, parsed and (on a standby) forwarded; a client waits for all of
//     that. The proxy's time is the node's answer time as a client on the
//     same host sees it, minus only the loopback hop.
//   - A file audit device writes two JSON entries per request on Vault's
//     own path (the active node's, since standbys forward): it would slow
//     the very thing being measured. The proxy costs the bench's process,
//     not Vault's.
//   - On a Raft cluster every node appends to the same configured audit
//     path; the proxy knows which node each request went to.
//
// The proxy does add one loopback hop per request and uses some of the
// shared CPU: the bench measures that hop before the run (proxyOverhead)
// and the report states it.

// record is one request as seen at a Vault node's door: when it arrived,
// how long until the last byte of the answer was written back, and the
// status sent.
type record struct {
	Node   int
	Start  time.Time
	Dur    time.Duration
	Method string
	Path   string // without /v1/
	Status int
}

// kind groups requests for the report.
func (r record) kind() string {
	switch {
	case strings.Contains(r.Path, "/issue/") || strings.Contains(r.Path, "/sign/"):
		return "issue"
	case strings.HasSuffix(r.Path, "/login"):
		return "login"
	case strings.HasPrefix(r.Path, "auth/token/"):
		return "token"
	}
	return "other"
}

// recorder keeps every record of every proxy, in arrival order per proxy.
type recorder struct {
	mu   sync.Mutex
	recs []record
}

func (rc *recorder) add(r record) {
	rc.mu.Lock()
	rc.recs = append(rc.recs, r)
	rc.mu.Unlock()
}

func (rc *recorder) all() []record {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]record(nil), rc.recs...)
}

// nodeProxy is an HTTP reverse proxy in front of one Vault node, on a
// fixed loopback port so that it can be taken down with its node and come
// back on the same address. While down nothing listens: clients get
// "connection refused", exactly as from a dead node, which is what
// certkeeper's address failover reacts to.
type nodeProxy struct {
	index    int
	Addr     string // http://127.0.0.1:port, what certkeeper is given
	hostPort string
	rp       *httputil.ReverseProxy
	rec      *recorder

	mu  sync.Mutex
	srv *http.Server
}

// proxySet is one proxy per node. Redirects a standby sends (to the
// active node's real api_addr) are rewritten to that node's proxy, so
// every request a client makes passes a proxy and is counted once.
type proxySet struct {
	proxies []*nodeProxy
	rec     *recorder
}

func newProxySet(upstreams []string) (*proxySet, error) {
	ps := &proxySet{rec: &recorder{}}
	transport := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     5 * time.Minute,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	rewrite := map[string]string{}
	for i, up := range upstreams {
		u, err := url.Parse(up)
		if err != nil {
			return nil, fmt.Errorf("node address %q: %w", up, err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("proxy for %s: %w", up, err)
		}
		p := &nodeProxy{index: i, hostPort: ln.Addr().String(), rec: ps.rec}
		p.Addr = "http://" + p.hostPort
		rewrite[u.Host] = p.hostPort
		p.rp = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(u)
				pr.Out.Host = pr.In.Host
			},
			Transport: transport,
			ModifyResponse: func(resp *http.Response) error {
				loc := resp.Header.Get("Location")
				if loc == "" {
					return nil
				}
				lu, err := url.Parse(loc)
				if err != nil {
					return nil
				}
				if to, ok := rewrite[lu.Host]; ok {
					lu.Host = to
					resp.Header.Set("Location", lu.String())
				}
				return nil
			},
			// The node died under the request: the client's connection is
			// dropped as the node's would have been, not answered with a
			// 502 that no real Vault sends.
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				panic(http.ErrAbortHandler)
			},
		}
		ps.proxies = append(ps.proxies, p)
		p.serve(ln)
	}
	return ps, nil
}

func (p *nodeProxy) serve(ln net.Listener) {
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second, ErrorLog: quietLog}
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	go srv.Serve(ln)
}

// ServeHTTP times the request from the moment its headers were read to
// the moment the answer was written.
func (p *nodeProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		rec := record{Node: p.index, Start: start, Dur: time.Since(start), Method: r.Method,
			Path: strings.TrimPrefix(r.URL.Path, "/v1/"), Status: sw.status}
		p.rec.add(rec)
		if v := recover(); v != nil {
			panic(v)
		}
	}()
	p.rp.ServeHTTP(sw, r)
}

// Down closes the listener and every connection: from now on the port
// refuses connections.
func (p *nodeProxy) Down() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Up listens again on the same port.
func (p *nodeProxy) Up() error {
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if ln, err = net.Listen("tcp", p.hostPort); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("proxy %d back on %s: %w", p.index, p.hostPort, err)
	}
	p.serve(ln)
	return nil
}

func (ps *proxySet) Close() {
	for _, p := range ps.proxies {
		p.Down()
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush lets the reverse proxy flush through the wrapper.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
