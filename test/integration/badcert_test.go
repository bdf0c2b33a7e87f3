//go:build integration && faults

package integration

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/faultproxy"
	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// TestBadCertificatesRejected: at renewal Vault (or something between it
// and certkeeper) returns, one attempt after another, a certificate for
// another key, one with a SAN nobody asked for, one already expired, and
// one from a CA that is not in the chain. Each is rejected with a message
// saying why, the files on disk stay as they were, attempts back off, and
// the first good answer is written.
func TestBadCertificatesRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, vaulttest.Options{})
	root := e.vault.Client
	// A role that takes names from the request, not the CSR, to make a
	// certificate for the agent's key with a SAN it did not ask for.
	if _, err := root.Logical().Write(vaulttest.IntMount+"/roles/tamper", map[string]any{
		"allowed_domains": vaulttest.Domain, "allow_subdomains": true, "allow_localhost": true, "allow_ip_sans": true,
		"use_csr_sans": false, "use_csr_common_name": false, "key_type": "any", "max_ttl": "1h",
	}); err != nil {
		t.Fatal(err)
	}
	foreignCA, err := vaulttest.NewTestCA(t.TempDir(), "foreign")
	if err != nil {
		t.Fatal(err)
	}
	const cn = "web.example.internal"
	names := map[string]any{"common_name": cn, "alt_names": cn + ",localhost", "ip_sans": "127.0.0.1"}
	with := func(m map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range names {
			out[k] = v
		}
		for k, v := range m {
			out[k] = v
		}
		return out
	}

	type tamper struct {
		name string
		want string // in the rejection message
		make func(csrPEM string) (string, error)
	}
	tampers := []tamper{
		{"key mismatch", "does not match the private key", func(string) (string, error) {
			// Genuine, same names, but Vault made its key.
			sec, err := root.Logical().Write(vaulttest.IntMount+"/issue/"+vaulttest.RoleEC, with(map[string]any{"ttl": "1h"}))
			if err != nil {
				return "", err
			}
			return sec.Data["certificate"].(string), nil
		}},
		{"wrong SAN", "were not asked for", func(csr string) (string, error) {
			sec, err := root.Logical().Write(vaulttest.IntMount+"/sign/tamper", with(map[string]any{"csr": csr, "alt_names": cn + ",localhost,evil." + vaulttest.Domain, "ttl": "1h"}))
			if err != nil {
				return "", err
			}
			return sec.Data["certificate"].(string), nil
		}},
		{"expired", "expired", func(csr string) (string, error) {
			sec, err := root.Logical().Write(vaulttest.IntMount+"/sign/"+vaulttest.RoleEC, with(map[string]any{"csr": csr, "ttl": "1s"}))
			if err != nil {
				return "", err
			}
			time.Sleep(2500 * time.Millisecond) // let it expire before certkeeper sees it
			return sec.Data["certificate"].(string), nil
		}},
		{"unknown CA", "does not chain to the issuing CA", func(csr string) (string, error) {
			block, _ := pem.Decode([]byte(csr))
			req, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil {
				return "", err
			}
			certPEM, _, err := foreignCA.Issue(req.PublicKey, cn, []net.IP{net.IPv4(127, 0, 0, 1)}, []string{cn, "localhost"}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
			return string(certPEM), err
		}},
	}

	p := e.proxy()
	var mu sync.Mutex
	signs := 0
	var hookErrs []error
	p.SetHook(func(ex *faultproxy.Exchange, forward func() error) error {
		if !strings.Contains(ex.Path, "/sign/") {
			return forward()
		}
		mu.Lock()
		n := signs
		signs++
		mu.Unlock()
		if err := forward(); err != nil {
			return err
		}
		// The first sign is the good initial issuance; then one tamper per
		// attempt; then Vault's answers pass again.
		if n < 1 || n > len(tampers) || ex.Status != 200 {
			return nil
		}
		var in struct {
			CSR string `json:"csr"`
		}
		json.Unmarshal(ex.Body, &in)
		var resp map[string]any
		if err := json.Unmarshal(ex.RespBody, &resp); err != nil {
			return err
		}
		cert, err := tampers[n-1].make(in.CSR)
		if err != nil {
			mu.Lock()
			hookErrs = append(hookErrs, fmt.Errorf("%s: %w", tampers[n-1].name, err))
			mu.Unlock()
			return err
		}
		resp["data"].(map[string]any)["certificate"] = cert
		ex.RespBody, err = json.Marshal(resp)
		return err
	})

	cfg := e.writeRawConfig(e.vaultBlock(fmt.Sprintf("%q", p.Addr)), shortCert(e, "web"))
	d := startDaemon(t, cfg)
	d.WaitLog(`certificate issued and written.*cert=web`, 1, time.Minute)
	before := fileSum(t, e.setPaths("web")...)
	mark := d.mark()
	for i, tp := range tampers {
		d.waitLogAfter(mark, `vault returned a certificate certkeeper will not use`, i+1, 3*time.Minute)
		if got := fileSum(t, e.setPaths("web")...); got != before {
			t.Fatalf("files changed after the %s certificate was rejected", tp.name)
		}
	}
	d.waitLogAfter(mark, `certificate issued and written.*cert=web`, 1, 3*time.Minute)
	mu.Lock()
	for _, err := range hookErrs {
		t.Errorf("making a bad certificate: %v", err)
	}
	mu.Unlock()

	rejections := linesContaining(d.Logs.String()[mark:], `vault returned a certificate certkeeper will not use`)
	if len(rejections) != len(tampers) {
		t.Errorf("%d rejections, want %d:\n%s", len(rejections), len(tampers), strings.Join(rejections, "\n"))
	}
	for i, tp := range tampers {
		if i < len(rejections) && !strings.Contains(rejections[i], tp.want) {
			t.Errorf("rejection of the %s certificate does not say %q:\n%s", tp.name, tp.want, rejections[i])
		}
	}
	if got := fileSum(t, e.setPaths("web")...); got == before {
		t.Error("the good certificate after the bad ones was not written")
	}
	e.checkPair(t, "web")
	intervals := gaps(signTimes(p.Records())[1:])
	t.Logf("bad certificates rejected; intervals between attempts %v", intervals)
	for i, g := range intervals {
		if g < 900*time.Millisecond {
			t.Errorf("attempt %d came %v after a rejection: no backoff", i+2, g)
		}
	}
	d.Stop()
}

// linesContaining returns the lines of s that contain sub.
func linesContaining(s, sub string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return out
}
