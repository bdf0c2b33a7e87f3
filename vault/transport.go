package vault

import "net/http"

// keepConnections lets the transport keep an idle connection for every
// request the agent may have in flight, plus login and token renewal. The
// api client's pooled transport keeps only GOMAXPROCS+1 per host, so with
// vault.max_parallel renewals in flight most answers closed their
// connection and the next request opened a new one: 444 TCP connections
// for 1,002 requests in the N=1000 benchmark, each a TLS handshake for
// Vault and for us in production.
func keepConnections(rt http.RoundTripper, maxParallel int) {
	tr, ok := rt.(*http.Transport)
	if !ok {
		return
	}
	if n := maxParallel + 2; tr.MaxIdleConnsPerHost < n {
		tr.MaxIdleConnsPerHost = n
		if tr.MaxIdleConns != 0 && tr.MaxIdleConns < n {
			tr.MaxIdleConns = n
		}
	}
}
