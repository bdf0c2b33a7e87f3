package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
)

// failoverTransport sends each request to the Vault address in use, and
// moves to the next configured address when that one cannot serve: nothing
// listens there (the request is then resent at once, since it was never
// sent), it timed out, or it answered 503 (sealed, or a standby that cannot
// reach the active node). It sticks with an address that works, so a
// healthy cluster sees one node's worth of connections from each agent.
//
// Standby nodes forward requests to the active node themselves (or
// redirect to it), so any unsealed node will do; the order of the list is
// only a preference.
//
// The api client is given a base address that exists nowhere (base):
// requests to it are the ones to route, and anything else, such as a
// standby's redirect to the active node, goes where it was sent, even when
// that is one of the configured addresses.
type failoverTransport struct {
	next  http.RoundTripper
	base  *url.URL
	addrs []*url.URL
	log   *slog.Logger

	mu  sync.Mutex
	cur int
}

// failoverHost is the api client's base host when several addresses are
// configured; .invalid never resolves, so a request that escaped routing
// fails instead of going somewhere unexpected.
const failoverHost = "configured-vault-addresses.invalid"

func newFailoverTransport(next http.RoundTripper, addresses []string, log *slog.Logger) (*failoverTransport, error) {
	t := &failoverTransport{next: next, log: log}
	for _, a := range addresses {
		u, err := url.Parse(a)
		if err != nil {
			return nil, err
		}
		t.addrs = append(t.addrs, u)
	}
	// The scheme of the first address stands for all: the api client's
	// https-to-http redirect check compares against it.
	t.base = &url.URL{Scheme: t.addrs[0].Scheme, Host: failoverHost}
	return t, nil
}

// Address is what the api client must be configured with.
func (t *failoverTransport) Address() string { return t.base.String() }

func (t *failoverTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != t.base.Host {
		return t.next.RoundTrip(req)
	}
	body, err := drainBody(req)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	start := t.cur
	t.mu.Unlock()
	var lastErr error
	for i := range t.addrs {
		idx := (start + i) % len(t.addrs)
		resp, err := t.next.RoundTrip(retarget(req, t.addrs[idx], body))
		switch {
		case err == nil && resp.StatusCode == http.StatusServiceUnavailable:
			// Answered, so not resent: the caller backs off, and its next
			// request tries the next node.
			t.moveOn(idx, "answered 503 (sealed or cut off from the active node)")
			return resp, nil
		case err == nil:
			return resp, nil
		case req.Context().Err() != nil:
			if errors.Is(req.Context().Err(), context.DeadlineExceeded) {
				t.moveOn(idx, "request timed out")
			}
			return nil, err
		case !dialFailed(err):
			return nil, err
		}
		t.moveOn(idx, err.Error())
		lastErr = err
	}
	return nil, fmt.Errorf("no configured vault address answers: %w", lastErr)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// real transport.
func (t *failoverTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// moveOn makes the address after idx the one in use, unless another
// request already moved on from idx.
func (t *failoverTransport) moveOn(idx int, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur != idx {
		return
	}
	t.cur = (idx + 1) % len(t.addrs)
	t.log.Warn("vault address cannot serve; switching to the next one", "from", redact(t.addrs[idx]), "to", redact(t.addrs[t.cur]), "reason", reason)
}

// dialFailed reports whether err happened before anything was sent: no
// connection could be made, so resending cannot duplicate a request.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// drainBody reads the request body into memory so the request can be sent
// again to another address. Vault requests are small (a CSR at most).
func drainBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	return io.ReadAll(req.Body)
}

func retarget(req *http.Request, addr *url.URL, body []byte) *http.Request {
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host = addr.Scheme, addr.Host
	r.Host = addr.Host
	if body != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		r.ContentLength = int64(len(body))
	}
	return r
}

// redact drops user info from an address before it is logged.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}
