//go:build integration

package vaulttest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

func TestDevServerIssuesThroughAppRole(t *testing.T) {
	start := time.Now()
	s := New(t, Options{})
	t.Logf("dev server ready in %s", time.Since(start))

	p := s.PKI(t)
	roleID, secretID := s.AppRole(t, AppRoleOptions{Name: "agent"})
	c := login(t, s.Addr, roleID, secretID)

	before := s.CountCerts(t, IntMount)
	sec, err := c.Logical().WriteWithContext(t.Context(), IntMount+"/issue/"+RoleEC, map[string]any{
		"common_name": "svc." + Domain,
		"ttl":         "1h",
	})
	if err != nil {
		t.Fatalf("issuing as approle: %v", err)
	}
	if got := s.CountCerts(t, IntMount); got != before+1 {
		t.Errorf("CountCerts(%s) = %d after one issue, want %d", IntMount, got, before+1)
	}

	chain := caChain(t, sec)
	if len(chain) != 2 {
		t.Fatalf("ca_chain has %d certificates, want intermediate and root", len(chain))
	}
	if strings.TrimSpace(chain[0]) != strings.TrimSpace(p.IntermediatePEM) ||
		strings.TrimSpace(chain[1]) != strings.TrimSpace(p.RootPEM) {
		t.Errorf("ca_chain is not [intermediate, root]:\n%s", strings.Join(chain, "\n"))
	}
	leaf := parseCert(t, sec.Data["certificate"].(string))
	verify(t, leaf, p.RootPEM, chain[0], "svc."+Domain)
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("role %s issued a %T key, want ECDSA", RoleEC, leaf.PublicKey)
	}
	if want := s.Addr + "/v1/" + IntMount + "/crl"; len(leaf.CRLDistributionPoints) != 1 || leaf.CRLDistributionPoints[0] != want {
		t.Errorf("CRL distribution points = %v, want [%s]", leaf.CRLDistributionPoints, want)
	}

	// The policy grants what the agent reads besides issuing...
	for _, path := range []string{
		IntMount + "/cert/ca_chain", IntMount + "/issuer/default", IntMount + "/cert/" + sec.Data["serial_number"].(string),
		RootMount + "/cert/ca_chain", RootMount + "/issuer/default",
	} {
		if got, err := c.Logical().ReadWithContext(t.Context(), path); err != nil || got == nil {
			t.Errorf("approle token reading %s: %v, %v", path, got, err)
		}
	}
	if got, err := c.Logical().ListWithContext(t.Context(), IntMount+"/issuers"); err != nil || got == nil {
		t.Errorf("approle token listing %s/issuers: %v, %v", IntMount, got, err)
	}
	// ...and confines it to PKI: anything else is a 403.
	if _, err := c.Logical().WriteWithContext(t.Context(), RootMount+"/root/sign-intermediate", map[string]any{"csr": "x"}); !isForbidden(err) {
		t.Errorf("approle token on %s/root/sign-intermediate: err = %v, want 403", RootMount, err)
	}
	if _, err := c.Sys().ListMountsWithContext(t.Context()); !isForbidden(err) {
		t.Errorf("approle token listing sys/mounts: err = %v, want 403", err)
	}

	serial := sec.Data["serial_number"].(string)
	s.Revoke(t, IntMount, serial)
	crl := fetchCRL(t, s.Addr+"/v1/"+IntMount+"/crl")
	if !crlHas(crl, leaf) {
		t.Errorf("CRL of %s does not list revoked serial %s", IntMount, serial)
	}
}

func TestRolesIssueTheirKeyTypes(t *testing.T) {
	s := New(t, Options{})
	p := s.PKI(t)
	roleID, secretID := s.AppRole(t, AppRoleOptions{Name: "agent"})
	c := login(t, s.Addr, roleID, secretID)

	for _, tc := range []struct {
		role    string
		keyType string // %T of the leaf's public key
	}{
		{RoleEC, "*ecdsa.PublicKey"},
		{RoleRSA, "*rsa.PublicKey"},
		{RoleEd25519, "ed25519.PublicKey"},
	} {
		t.Run("issue/"+tc.role, func(t *testing.T) {
			sec, err := c.Logical().WriteWithContext(t.Context(), IntMount+"/issue/"+tc.role, map[string]any{
				"common_name": tc.role + "." + Domain,
			})
			if err != nil {
				t.Fatalf("issue: %v", err)
			}
			leaf := parseCert(t, sec.Data["certificate"].(string))
			verify(t, leaf, p.RootPEM, p.IntermediatePEM, tc.role+"."+Domain)
			if got := fmt.Sprintf("%T", leaf.PublicKey); got != tc.keyType {
				t.Errorf("key type = %s, want %s", got, tc.keyType)
			}
			if ttl := leaf.NotAfter.Sub(leaf.NotBefore); ttl < 23*time.Hour || ttl > 25*time.Hour {
				t.Errorf("default ttl = %s, want about 24h", ttl)
			}
		})
	}

	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]any{"p384": ecKey, "ed25519": edKey, "rsa": rsaKey} {
		t.Run("sign/any/"+name, func(t *testing.T) {
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
				Subject:  pkix.Name{CommonName: "csr." + Domain},
				DNSNames: []string{"csr." + Domain},
			}, key)
			if err != nil {
				t.Fatal(err)
			}
			sec, err := c.Logical().WriteWithContext(t.Context(), IntMount+"/sign/"+RoleAny, map[string]any{
				"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
			})
			if err != nil {
				t.Fatalf("sign: %v", err)
			}
			verify(t, parseCert(t, sec.Data["certificate"].(string)), p.RootPEM, p.IntermediatePEM, "csr."+Domain)
		})
	}

	t.Run("any cannot issue", func(t *testing.T) {
		_, err := c.Logical().WriteWithContext(t.Context(), IntMount+"/issue/"+RoleAny, map[string]any{
			"common_name": "any." + Domain,
		})
		if err == nil {
			t.Fatal("issue on role any succeeded, want an error")
		}
	})

	t.Run("outside allowed domains", func(t *testing.T) {
		_, err := c.Logical().WriteWithContext(t.Context(), IntMount+"/issue/"+RoleEC, map[string]any{
			"common_name": "svc.example.com",
		})
		if err == nil {
			t.Fatal("issue for svc.example.com succeeded, want an error")
		}
	})
}

func TestPersistentServerKeepsStateAcrossRestarts(t *testing.T) {
	start := time.Now()
	s := New(t, Options{Persistent: true})
	t.Logf("persistent server initialised and unsealed in %s", time.Since(start))
	s.PKI(t)
	roleID, secretID := s.AppRole(t, AppRoleOptions{Name: "agent"})
	c := login(t, s.Addr, roleID, secretID)
	issue(t, c)
	addr, count := s.Addr, s.CountCerts(t, IntMount)

	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := c.Logical().ReadWithContext(t.Context(), IntMount+"/roles/"+RoleEC); err == nil {
		t.Fatal("vault still answers after Stop")
	}
	start = time.Now()
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("persistent server restarted and unsealed in %s", time.Since(start))
	if s.Addr != addr {
		t.Fatalf("address changed across restart: %s -> %s", addr, s.Addr)
	}
	if got := s.CountCerts(t, IntMount); got != count {
		t.Errorf("CountCerts after restart = %d, want %d", got, count)
	}
	role, err := s.Client.Logical().ReadWithContext(t.Context(), IntMount+"/roles/"+RoleEC)
	if err != nil || role == nil || role.Data["key_type"] != "ec" {
		t.Fatalf("reading role %s after restart: %v, %v", RoleEC, role, err)
	}
	issue(t, c) // the token from before the restart is still valid
	if got := s.CountCerts(t, IntMount); got != count+1 {
		t.Errorf("CountCerts after issuing again = %d, want %d", got, count+1)
	}

	// A crash must not lose state either.
	if err := s.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start after Kill: %v", err)
	}
	issue(t, login(t, s.Addr, roleID, secretID))
	if got := s.CountCerts(t, IntMount); got != count+2 {
		t.Errorf("CountCerts after crash and issue = %d, want %d", got, count+2)
	}
}

// login does what the agent does: a plain write to auth/approle/login.
func login(t *testing.T, addr, roleID, secretID string) *api.Client {
	t.Helper()
	c, err := NewClient(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	sec, err := c.Logical().WriteWithContext(t.Context(), "auth/approle/login", map[string]any{
		"role_id":   roleID,
		"secret_id": secretID,
	})
	if err != nil {
		t.Fatalf("approle login: %v", err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		t.Fatalf("approle login returned no token: %+v", sec)
	}
	c.SetToken(sec.Auth.ClientToken)
	return c
}

func issue(t *testing.T, c *api.Client) {
	t.Helper()
	_, err := c.Logical().WriteWithContext(t.Context(), IntMount+"/issue/"+RoleEC, map[string]any{
		"common_name": "svc." + Domain,
	})
	if err != nil {
		t.Fatalf("issuing: %v", err)
	}
}

func isForbidden(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

func caChain(t *testing.T, sec *api.Secret) []string {
	t.Helper()
	raw, ok := sec.Data["ca_chain"].([]any)
	if !ok {
		t.Fatalf("ca_chain is %T, want a list", sec.Data["ca_chain"])
	}
	var chain []string
	for _, v := range raw {
		chain = append(chain, v.(string))
	}
	return chain
}

func parseCert(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatalf("no PEM in %q", s)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// verify checks that leaf chains to the root for both TLS roles, as mTLS
// peers will check it.
func verify(t *testing.T, leaf *x509.Certificate, rootPEM, intPEM, dnsName string) {
	t.Helper()
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(rootPEM)) || !inters.AppendCertsFromPEM([]byte(intPEM)) {
		t.Fatal("cannot parse CA certificates")
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := leaf.Verify(x509.VerifyOptions{
			DNSName:       dnsName,
			Roots:         roots,
			Intermediates: inters,
			KeyUsages:     []x509.ExtKeyUsage{usage},
		})
		if err != nil {
			t.Errorf("verifying leaf for usage %v: %v", usage, err)
		}
	}
}

func fetchCRL(t *testing.T, url string) *x509.RevocationList {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("parsing CRL from %s: %v", url, err)
	}
	return crl
}

func crlHas(crl *x509.RevocationList, c *x509.Certificate) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
			return true
		}
	}
	return false
}
