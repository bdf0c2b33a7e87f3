// Package faultproxy sits between certkeeper and Vault in tests and
// misbehaves on command: it passes traffic, holds requests without ever
// answering (a hung Vault), resets connections (a dead one), delays, or
// lets a hook answer or rewrite HTTP responses (errors, rate limits,
// tampered certificates). It records every request it reads, so a test can
// say how hard certkeeper leaned on Vault during a fault.
//
// It speaks plain HTTP/1.1 to both sides, which is what the Vault client
// uses towards an http:// address. It touches nothing but its own sockets.
package faultproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Mode is how the proxy treats requests.
type Mode int

const (
	// Pass forwards requests to Vault (through the hook, if any).
	Pass Mode = iota
	// Blackhole reads each request and never answers: a Vault that accepts
	// connections and hangs.
	Blackhole
	// Reset reads each request and resets the connection: a Vault that
	// dies under the client.
	Reset
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Blackhole:
		return "blackhole"
	case Reset:
		return "reset"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// Exchange is one request and, once answered, its response. A hook may
// change the response, or fill it in without asking Vault.
type Exchange struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte

	Status     int
	RespHeader http.Header
	RespBody   []byte
}

// Reply answers the exchange with a JSON body, as Vault would.
func (ex *Exchange) Reply(status int, jsonBody string) {
	ex.Status = status
	ex.RespHeader = http.Header{"Content-Type": {"application/json"}}
	ex.RespBody = []byte(jsonBody)
}

// Hook handles one exchange. It calls forward to have Vault answer (which
// fills the response fields), and may then change the response; or it sets
// the response itself (Reply) and does not call forward.
type Hook func(ex *Exchange, forward func() error) error

// Record is what the proxy saw of one request.
type Record struct {
	// At is when the request was read; Answered when its answer was
	// ready to go out (zero when none was sent). A client cannot act on
	// an answer before Answered.
	At, Answered time.Time
	Method       string
	Path         string
	Mode         Mode
	// Status is the status sent back; 0 when none was (blackhole, reset, or
	// Vault unreachable).
	Status int
	// In and Out are the bytes of the request read from the client
	// (headers and body) and of the response written to it.
	In, Out int64
}

// Proxy is a listening fault proxy. Its methods are safe for concurrent use.
type Proxy struct {
	// Addr is the proxy's http:// URL, to give certkeeper instead of Vault's.
	Addr string

	upstream string
	ln       net.Listener

	mu      sync.Mutex
	mode    Mode
	delay   time.Duration
	hook    Hook
	records []Record
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// New starts a proxy on 127.0.0.1 in front of upstream (an http:// URL or a
// host:port).
func New(upstream string) (*Proxy, error) {
	host := upstream
	if u, ok := stripScheme(upstream); ok {
		host = u
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fault proxy: %w", err)
	}
	p := &Proxy{
		Addr:     "http://" + ln.Addr().String(),
		upstream: host,
		ln:       ln,
		conns:    map[net.Conn]struct{}{},
	}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

func stripScheme(s string) (string, bool) {
	for _, prefix := range []string{"http://", "https://"} {
		if len(s) > len(prefix) && s[:len(prefix)] == prefix {
			return s[len(prefix):], true
		}
	}
	return s, false
}

// SetMode changes how requests read from now on are treated.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	p.mode = m
	p.mu.Unlock()
}

// SetDelay makes the proxy wait d before handling each request.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// SetHook installs h for requests in Pass mode; nil forwards unchanged.
func (p *Proxy) SetHook(h Hook) {
	p.mu.Lock()
	p.hook = h
	p.mu.Unlock()
}

// Records returns a copy of every request seen so far, in arrival order.
func (p *Proxy) Records() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Record(nil), p.records...)
}

// Close stops the proxy and drops every connection, hung ones included.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go func() {
			defer p.wg.Done()
			p.handle(c)
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
			c.Close()
		}()
	}
}

// handle serves one client connection, request by request, with one
// upstream connection dialled when first needed.
func (p *Proxy) handle(c net.Conn) {
	in := &countingReader{r: c}
	br := bufio.NewReader(in)
	var up *upstreamConn
	defer func() {
		if up != nil {
			up.conn.Close()
		}
	}()
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode, delay, hook := p.mode, p.delay, p.hook
		p.mu.Unlock()
		rec := Record{At: time.Now(), Method: req.Method, Path: req.URL.Path, Mode: mode}
		// The client sends one request at a time on a connection, so what
		// was read since the last one (less what is still buffered) is this
		// request.
		rec.In = in.take() - int64(br.Buffered())
		in.n += int64(br.Buffered())

		switch mode {
		case Blackhole:
			p.record(rec)
			// Hold the connection until the client gives up or the proxy
			// closes: never a byte back.
			io.Copy(io.Discard, br)
			return
		case Reset:
			p.record(rec)
			resetConn(c)
			return
		}
		if delay > 0 {
			time.Sleep(delay)
		}
		ex := &Exchange{Method: req.Method, Path: req.URL.Path, Header: req.Header, Body: body}
		forward := func() error {
			var err error
			if up == nil {
				if up, err = dialUpstream(p.upstream); err != nil {
					return err
				}
			}
			if err = up.roundTrip(req, body, ex); err != nil {
				up.conn.Close()
				up = nil
			}
			return err
		}
		if hook == nil {
			err = forward()
		} else {
			err = hook(ex, forward)
		}
		if err != nil || ex.Status == 0 {
			// Vault unreachable: look unreachable to the client too.
			p.record(rec)
			resetConn(c)
			return
		}
		rec.Status = ex.Status
		// The record is kept before the client can read a byte of the
		// answer: a test that saw its response then asked for Records
		// missed the last one when it was kept after the write.
		var resp bytes.Buffer
		if err = writeResponse(&resp, req, ex); err != nil {
			p.record(rec)
			return
		}
		rec.Out = int64(resp.Len())
		rec.Answered = time.Now()
		p.record(rec)
		if _, err = c.Write(resp.Bytes()); err != nil || req.Close {
			return
		}
	}
}

func (p *Proxy) record(r Record) {
	p.mu.Lock()
	p.records = append(p.records, r)
	p.mu.Unlock()
}

// resetConn closes c with SO_LINGER 0, so the peer sees a reset rather than
// an orderly close.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

type upstreamConn struct {
	conn net.Conn
	br   *bufio.Reader
}

func dialUpstream(addr string) (*upstreamConn, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &upstreamConn{conn: conn, br: bufio.NewReader(conn)}, nil
}

func (u *upstreamConn) roundTrip(req *http.Request, body []byte, ex *Exchange) error {
	out := req.Clone(req.Context())
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	out.TransferEncoding = nil
	out.RequestURI = ""
	if err := out.Write(u.conn); err != nil {
		return err
	}
	resp, err := http.ReadResponse(u.br, out)
	if err != nil {
		return err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	ex.Status, ex.RespHeader, ex.RespBody = resp.StatusCode, resp.Header, respBody
	if resp.Close {
		return errors.New("upstream closed the connection")
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// take returns the count and starts it again.
func (c *countingReader) take() int64 {
	n := c.n
	c.n = 0
	return n
}

func writeResponse(c io.Writer, req *http.Request, ex *Exchange) error {
	h := ex.RespHeader.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Del("Transfer-Encoding")
	h.Del("Content-Length")
	resp := &http.Response{
		StatusCode:    ex.Status,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(ex.RespBody)),
		ContentLength: int64(len(ex.RespBody)),
		Request:       req,
	}
	return resp.Write(c)
}

// PerMinute counts records in consecutive one-minute windows starting at
// from; the last window may be partial.
func PerMinute(records []Record, from, to time.Time, match func(Record) bool) []int {
	var out []int
	for start := from; start.Before(to); start = start.Add(time.Minute) {
		n := 0
		for _, r := range records {
			if !r.At.Before(start) && r.At.Before(start.Add(time.Minute)) && r.At.Before(to) && (match == nil || match(r)) {
				n++
			}
		}
		out = append(out, n)
	}
	return out
}

// MaxInWindow is the largest number of matching records inside any window
// of length w (sliding, anchored at each record), which bounds the rate a
// client reached whatever the phase of fixed one-minute windows.
func MaxInWindow(records []Record, w time.Duration, match func(Record) bool) int {
	var times []time.Time
	for _, r := range records {
		if match == nil || match(r) {
			times = append(times, r.At)
		}
	}
	best := 0
	for i := range times {
		n := 0
		for j := i; j < len(times) && times[j].Sub(times[i]) < w; j++ {
			n++
		}
		best = max(best, n)
	}
	return best
}
