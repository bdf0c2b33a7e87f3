package cloudtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Issuer is an OIDC issuer's signing key: it mints RS256 JWTs and serves
// its JWKS for Vault's jwks_url.
type Issuer struct {
	// JWKSURL serves the public key as a JWKS.
	JWKSURL string
	key     *rsa.PrivateKey
	kid     string
}

// NewIssuer makes a key and serves its JWKS.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss := &Issuer{key: key, kid: "cloudtest-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	jwks, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "kid": iss.kid, "use": "sig", "alg": "RS256",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	iss.JWKSURL = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	})) + "/jwks"
	return iss
}

// PublicKeyPEM is the key for Vault's jwt_validation_pubkeys.
func (i *Issuer) PublicKeyPEM() string {
	der, _ := x509.MarshalPKIXPublicKey(&i.key.PublicKey)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// Mint signs claims, adding iat, nbf and exp (now + ttl).
func (i *Issuer) Mint(claims map[string]any, ttl time.Duration) string {
	c := map[string]any{}
	for k, v := range claims {
		c[k] = v
	}
	now := time.Now().Unix()
	c["iat"], c["nbf"], c["exp"] = now, now, now+int64(ttl/time.Second)
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": i.kid})
	p, _ := json.Marshal(c)
	in := b64(h) + "." + b64(p)
	sum := sha256.Sum256([]byte(in))
	sig, _ := rsa.SignPKCS1v15(rand.Reader, i.key, crypto.SHA256, sum[:])
	return in + "." + b64(sig)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Metadata is a cloud's metadata server minting identity tokens for the
// audience asked, with the claims that cloud puts in them.
type Metadata struct {
	URL string

	mu       sync.Mutex
	mode     Mode
	issued   []string // the tokens handed out
	requests []string // raw queries
	stop     chan struct{}
}

// SetMode changes how the server answers from now on.
func (m *Metadata) SetMode(mode Mode) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mode = mode
}

// Issued lists the tokens handed out, for tests that look for them where
// they must not be.
func (m *Metadata) Issued() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.issued...)
}

// Requests lists the query of every request.
func (m *Metadata) Requests() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.requests...)
}

func newMetadata(t testing.TB, h func(m *Metadata, mode Mode, w http.ResponseWriter, r *http.Request)) *Metadata {
	m := &Metadata{stop: make(chan struct{})}
	m.URL = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		mode := m.mode
		m.requests = append(m.requests, r.URL.RawQuery)
		m.mu.Unlock()
		switch mode {
		case Hang:
			hang(r, m.stop)
			return
		case Garbage:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, "<html><body>Welcome to the hotel network</body></html>")
			return
		}
		h(m, mode, w, r)
	}))
	t.Cleanup(func() { close(m.stop) })
	return m
}

func (m *Metadata) issue(tok string) {
	m.mu.Lock()
	m.issued = append(m.issued, tok)
	m.mu.Unlock()
}

// GCPInstance is what a GCE identity token with format=full says about
// the instance, in its google.compute_engine claim.
type GCPInstance struct {
	ProjectID, Zone, InstanceName, ServiceAccount string
}

// NewGCPMetadata serves GCE's identity endpoint: GET
// /computeMetadata/v1/instance/service-accounts/default/identity with
// Metadata-Flavor: Google, answering the raw JWT, as Google does.
func NewGCPMetadata(t testing.TB, iss *Issuer, inst GCPInstance) *Metadata {
	return newMetadata(t, func(m *Metadata, mode Mode, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/computeMetadata/v1/instance/service-accounts/default/identity" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Metadata-Flavor") != "Google" || mode == Refuse {
			w.Header().Set("Content-Type", "text/html; charset=UTF-8")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, "Missing required header: Metadata-Flavor")
			return
		}
		aud := r.URL.Query().Get("audience")
		if aud == "" {
			http.Error(w, "non-empty audience parameter required", http.StatusBadRequest)
			return
		}
		claims := map[string]any{
			"iss": "https://accounts.google.com", "aud": aud, "azp": "104620185023011540100", "sub": "104620185023011540100",
			"email": inst.ServiceAccount, "email_verified": true,
		}
		if r.URL.Query().Get("format") == "full" {
			claims["google"] = map[string]any{"compute_engine": map[string]any{
				"project_id": inst.ProjectID, "project_number": 123456789012, "zone": inst.Zone,
				"instance_id": "4242424242424242424", "instance_name": inst.InstanceName,
				"instance_creation_timestamp": 1700000000,
			}}
		}
		tok := iss.Mint(claims, time.Hour)
		m.issue(tok)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Metadata-Flavor", "Google")
		io.WriteString(w, tok)
	})
}

// AzureIdentity is the managed identity of an Azure VM, as its access
// tokens name it.
type AzureIdentity struct {
	TenantID, ObjectID, ClientID string
	// ResourceID is the VM's resource ID (xms_mirid).
	ResourceID string
}

// NewAzureMetadata serves Azure IMDS's token endpoint: GET
// /metadata/identity/oauth2/token?api-version=...&resource=... with
// Metadata: true, answering the token JSON.
func NewAzureMetadata(t testing.TB, iss *Issuer, id AzureIdentity) *Metadata {
	return newMetadata(t, func(m *Metadata, mode Mode, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metadata/identity/oauth2/token" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		if r.Header.Get("Metadata") != "true" {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_request","error_description":"Required metadata header not specified"}`)
			return
		}
		if mode == Refuse {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_request","error_description":"Identity not found"}`)
			return
		}
		q := r.URL.Query()
		if q.Get("api-version") == "" || q.Get("resource") == "" {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_request","error_description":"Required query variable 'resource' is missing"}`)
			return
		}
		resource := q.Get("resource")
		tok := iss.Mint(map[string]any{
			"iss": fmt.Sprintf("https://sts.windows.net/%s/", id.TenantID), "aud": resource, "tid": id.TenantID,
			"oid": id.ObjectID, "sub": id.ObjectID, "appid": id.ClientID, "appidacr": "2", "idtyp": "app",
			"xms_mirid": id.ResourceID, "xms_az_rid": id.ResourceID,
		}, time.Hour)
		m.issue(tok)
		now := time.Now().Unix()
		json.NewEncoder(w).Encode(map[string]string{
			"access_token": tok, "client_id": id.ClientID, "expires_in": "86399",
			"expires_on": strconv.FormatInt(now+86399, 10), "ext_expires_in": "86399",
			"not_before": strconv.FormatInt(now, 10), "resource": resource, "token_type": "Bearer",
		})
	})
}
