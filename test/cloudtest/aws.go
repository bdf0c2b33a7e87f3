// Package cloudtest stands in, on loopback, for the cloud services a host
// logs in to Vault with: EC2's instance metadata service (IMDSv2) and
// STS, an OIDC issuer's signing keys, and the GCP and Azure metadata
// servers that mint identity tokens. No cloud is reachable from the tests;
// Vault itself is always the real one (test/vaulttest), talking to these
// through its own settings (sts_endpoint, jwks_url).
//
// The stand-ins check what the real services check that matters to
// certkeeper (IMDSv2's session token, a SigV4 signature over the headers
// Vault requires, the metadata headers) and can be told to fail the ways
// the real ones do: down, refusing, hanging, answering garbage.
package cloudtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Mode is how a stand-in answers.
type Mode int

const (
	// OK answers as the real service does.
	OK Mode = iota
	// Refuse answers with the service's own error (STS: 403
	// SignatureDoesNotMatch; metadata servers: their error status).
	Refuse
	// Garbage answers 200 with an HTML page, as a captive portal or a
	// misrouted proxy would.
	Garbage
	// Hang accepts the request and never answers.
	Hang
	// V1Only (IMDS) refuses the IMDSv2 session token request, as an
	// IMDSv1-only endpoint would.
	V1Only
)

// AWSCredentials are what an instance profile hands out.
type AWSCredentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

// serve listens on loopback and serves h until the test ends. A plain
// handler, never a ServeMux: Vault sends STS requests to the path "//",
// which a ServeMux redirects and Vault does not follow.
func serve(t testing.TB, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		srv.Close()
	})
	return "http://" + l.Addr().String()
}

// hang holds a request until its client gives up or the test ends.
func hang(r *http.Request, stop <-chan struct{}) {
	select {
	case <-r.Context().Done():
	case <-stop:
	}
}

// IMDS is EC2's instance metadata service, IMDSv2: a PUT for a session
// token, then the role name and its credentials with that token.
type IMDS struct {
	URL   string
	Role  string
	Creds AWSCredentials

	mu       sync.Mutex
	mode     Mode
	token    string
	requests []string
	stop     chan struct{}
}

// NewIMDS serves role's credentials creds.
func NewIMDS(t testing.TB, role string, creds AWSCredentials) *IMDS {
	m := &IMDS{Role: role, Creds: creds, token: "imds-session-" + fmt.Sprint(time.Now().UnixNano()), stop: make(chan struct{})}
	m.URL = serve(t, http.HandlerFunc(m.serveHTTP))
	t.Cleanup(func() { close(m.stop) })
	return m
}

// SetMode changes how the service answers from now on.
func (m *IMDS) SetMode(mode Mode) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mode = mode
}

// Requests lists the requests served so far, as "METHOD path".
func (m *IMDS) Requests() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.requests...)
}

func (m *IMDS) serveHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	mode := m.mode
	m.requests = append(m.requests, r.Method+" "+r.URL.Path)
	m.mu.Unlock()
	switch mode {
	case Hang:
		hang(r, m.stop)
		return
	case Garbage:
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html><body>Welcome to the hotel network</body></html>")
		return
	}
	if r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" {
		ttl := r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds")
		if mode == V1Only {
			http.Error(w, "", http.StatusForbidden)
			return
		}
		if ttl == "" {
			http.Error(w, "missing X-aws-ec2-metadata-token-ttl-seconds", http.StatusBadRequest)
			return
		}
		// The SDK refuses a token whose answer does not echo the TTL.
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", ttl)
		io.WriteString(w, m.token)
		return
	}
	// IMDSv1 answers without a session token; v2 requires it.
	if mode != V1Only && r.Header.Get("X-Aws-Ec2-Metadata-Token") != m.token {
		http.Error(w, "", http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/latest/meta-data/iam/security-credentials/":
		if mode == Refuse {
			http.NotFound(w, r) // no instance profile
			return
		}
		io.WriteString(w, m.Role)
	case "/latest/meta-data/iam/security-credentials/" + m.Role:
		json.NewEncoder(w).Encode(map[string]string{
			"Code": "Success", "LastUpdated": time.Now().UTC().Format(time.RFC3339), "Type": "AWS-HMAC",
			"AccessKeyId": m.Creds.AccessKeyID, "SecretAccessKey": m.Creds.SecretAccessKey, "Token": m.Creds.SessionToken,
			"Expiration": time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339),
		})
	default:
		http.NotFound(w, r)
	}
}

// STS answers GetCallerIdentity for requests signed (SigV4) with a key
// it knows, over the headers Vault requires (host, x-amz-date, and the
// server ID header when ServerID is set), dated within 15 minutes: what
// the real STS checks that certkeeper can get wrong. It names the caller
// by the role its key belongs to.
type STS struct {
	URL     string
	Account string

	mu       sync.Mutex
	mode     Mode
	keys     map[string]stsKey // by access key ID
	serverID string
	calls    []STSCall
	stop     chan struct{}
}

type stsKey struct {
	creds AWSCredentials
	role  string
}

// STSCall is one request STS saw, and what it made of it.
type STSCall struct {
	Host          string
	Region        string
	SignedHeaders []string
	Accepted      bool
	Reason        string // why it was refused
}

// NewSTS makes an STS for account whose required server ID header value
// is serverID ("" requires none).
func NewSTS(t testing.TB, account, serverID string) *STS {
	s := &STS{Account: account, serverID: serverID, keys: map[string]stsKey{}, stop: make(chan struct{})}
	s.URL = serve(t, http.HandlerFunc(s.serveHTTP))
	t.Cleanup(func() { close(s.stop) })
	return s
}

// Allow makes creds a key of role (an IAM role name in the account).
func (s *STS) Allow(creds AWSCredentials, role string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[creds.AccessKeyID] = stsKey{creds: creds, role: role}
}

// SetMode changes how STS answers from now on.
func (s *STS) SetMode(mode Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = mode
}

// Calls lists the requests STS saw.
func (s *STS) Calls() []STSCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]STSCall(nil), s.calls...)
}

// RoleARN is the IAM role ARN Vault's role binds: without a path, as
// the assumed-role ARN STS answers carries none.
func (s *STS) RoleARN(role string) string {
	return fmt.Sprintf("arn:aws:iam::%s:role/%s", s.Account, role)
}

var authzRe = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]+)$`)

func (s *STS) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	s.mu.Lock()
	mode := s.mode
	s.mu.Unlock()
	if mode == Hang {
		hang(r, s.stop)
		return
	}
	call, key := s.check(r, body)
	if call.Accepted && mode == Refuse {
		call.Accepted, call.Reason = false, "refusing (test)"
	}
	s.mu.Lock()
	s.calls = append(s.calls, call)
	s.mu.Unlock()
	// Exactly text/xml: Vault refuses "text/xml; charset=utf-8".
	w.Header().Set("Content-Type", "text/xml")
	if !call.Accepted {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>%s</Message></Error><RequestId>0</RequestId></ErrorResponse>`, call.Reason)
		return
	}
	fmt.Fprintf(w, `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>arn:aws:sts::%s:assumed-role/%s/i-0123456789abcdef0</Arn>
    <UserId>AROATESTROLEID0000001:i-0123456789abcdef0</UserId>
    <Account>%s</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>`, s.Account, key.role, s.Account)
}

// check verifies the signature by signing the same request again with
// the key it names, at the time it states, and comparing.
func (s *STS) check(r *http.Request, body []byte) (STSCall, stsKey) {
	call := STSCall{Host: r.Host}
	refuse := func(reason string) (STSCall, stsKey) {
		call.Reason = reason
		return call, stsKey{}
	}
	if r.Method != http.MethodPost || string(body) != "Action=GetCallerIdentity&Version=2011-06-15" {
		return refuse("not a GetCallerIdentity POST")
	}
	m := authzRe.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return refuse("no SigV4 Authorization header")
	}
	call.Region = m[3]
	call.SignedHeaders = strings.Split(m[5], ";")
	if m[4] != "sts" {
		return refuse("signed for service " + m[4])
	}
	s.mu.Lock()
	key, known := s.keys[m[1]]
	serverID := s.serverID
	s.mu.Unlock()
	if !known {
		return refuse("The security token included in the request is invalid")
	}
	if r.Header.Get("X-Amz-Security-Token") != key.creds.SessionToken {
		return refuse("wrong session token")
	}
	need := []string{"host", "x-amz-date"}
	if serverID != "" {
		need = append(need, "x-vault-aws-iam-server-id")
		if r.Header.Get("X-Vault-Aws-Iam-Server-Id") != serverID {
			return refuse("wrong X-Vault-AWS-IAM-Server-ID")
		}
	}
	for _, h := range need {
		found := false
		for _, sh := range call.SignedHeaders {
			found = found || sh == h
		}
		if !found {
			return refuse(h + " is not signed")
		}
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return refuse("no X-Amz-Date")
	}
	if d := time.Since(at); d > 15*time.Minute || d < -15*time.Minute {
		return refuse("Signature expired")
	}
	// Vault forwards to <sts_endpoint>/<path>: "//" for "https://host/".
	path := "/" + strings.TrimLeft(r.URL.Path, "/")
	again, _ := http.NewRequest(http.MethodPost, "https://"+r.Host+path, bytes.NewReader(body))
	for _, h := range call.SignedHeaders {
		if h != "host" {
			again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: key.creds.AccessKeyID, SecretAccessKey: key.creds.SecretAccessKey, SessionToken: key.creds.SessionToken}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, again, hex.EncodeToString(sum[:]), "sts", call.Region, at); err != nil {
		return refuse(err.Error())
	}
	if m2 := authzRe.FindStringSubmatch(again.Header.Get("Authorization")); m2 == nil || m2[6] != m[6] {
		return refuse("The request signature we calculated does not match the signature you provided")
	}
	call.Accepted = true
	return call, key
}
