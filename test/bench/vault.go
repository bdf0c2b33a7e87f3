//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// Roles the benchmark issues from. no_store keeps the dev server's memory
// flat across thousands of certificates, as operators do for high-volume
// roles, so later rounds do not run against a fatter Vault than earlier
// ones.
const (
	roleEC  = "bench-ec"
	roleRSA = "bench-rsa"
)

// benchVault is the one dev Vault every run in a benchmark talks to.
type benchVault struct {
	srv          *vaulttest.Server
	roleIDFile   string
	secretIDFile string
	auditPath    string // "" when requests are not counted
}

func startVault(ctx context.Context, dir string, audit bool) (*benchVault, error) {
	vdir := filepath.Join(dir, "vault")
	if err := os.MkdirAll(vdir, 0o700); err != nil {
		return nil, err
	}
	srv, err := vaulttest.Launch(ctx, vaulttest.Options{Dir: vdir})
	if err != nil {
		return nil, err
	}
	bv := &benchVault{srv: srv}
	if err := bv.setup(ctx, dir, audit); err != nil {
		srv.Stop()
		return nil, err
	}
	return bv, nil
}

func (bv *benchVault) setup(ctx context.Context, dir string, audit bool) error {
	c := bv.srv.Client
	if _, err := vaulttest.Bootstrap(ctx, c, bv.srv.Addr); err != nil {
		return err
	}
	for name, keyType := range map[string]string{roleEC: "ec", roleRSA: "rsa"} {
		role := map[string]any{
			"allowed_domains":    vaulttest.Domain,
			"allow_subdomains":   true,
			"allow_bare_domains": true,
			"max_ttl":            "72h",
			"ttl":                "24h",
			"no_store":           true,
			"key_type":           keyType,
			"key_bits":           map[string]int{"ec": 256, "rsa": 2048}[keyType],
		}
		if _, err := c.Logical().WriteWithContext(ctx, vaulttest.IntMount+"/roles/"+name, role); err != nil {
			return fmt.Errorf("writing role %s: %w", name, err)
		}
	}
	roleID, secretID, err := vaulttest.CreateAppRole(ctx, c, vaulttest.AppRoleOptions{Name: "bench"})
	if err != nil {
		return err
	}
	bv.roleIDFile = filepath.Join(dir, "role-id")
	bv.secretIDFile = filepath.Join(dir, "secret-id")
	for path, v := range map[string]string{bv.roleIDFile: roleID, bv.secretIDFile: secretID} {
		if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
			return err
		}
	}
	if audit {
		bv.auditPath = filepath.Join(dir, "audit.log")
		_, err := c.Logical().WriteWithContext(ctx, "sys/audit/file", map[string]any{
			"type":    "file",
			"options": map[string]any{"file_path": bv.auditPath},
		})
		if err != nil {
			return fmt.Errorf("enabling the file audit device: %w", err)
		}
	}
	return nil
}

func (bv *benchVault) stop() { bv.srv.Stop() }

// auditMark is where the audit log ends now; requests after it belong to
// the run that starts next.
func (bv *benchVault) auditMark() int64 {
	if bv.auditPath == "" {
		return 0
	}
	fi, err := os.Stat(bv.auditPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// requests counts the requests Vault saw since mark, by kind.
type requests map[string]int

func (r requests) total() int {
	n := 0
	for _, v := range r {
		n += v
	}
	return n
}

// issuance is how many certificates were asked for.
func (r requests) issuance() int { return r["issue"] + r["sign"] }

// public is how many reads were of what PKI serves without a token
// (issuer lists, issuer certificates, CRLs): certkeeper's CA rotation
// and revocation checks make them at every start.
func (r requests) public() int { return r["ca"] + r["crl"] }

func (r requests) String() string {
	if r == nil {
		return "not counted"
	}
	if len(r) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, r[k]))
	}
	return strings.Join(parts, " ")
}

// requestsSince counts the requests Vault saw since mark by kind, and the
// TCP connections they came over (distinct client ports): an agent that
// does not keep its connections alive pays a new connection (and, with
// TLS, a handshake on both sides) for most requests.
func (bv *benchVault) requestsSince(mark int64) (requests, int, error) {
	if bv.auditPath == "" {
		return nil, 0, nil
	}
	f, err := os.Open(bv.auditPath)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	if _, err := f.Seek(mark, io.SeekStart); err != nil {
		return nil, 0, err
	}
	out := requests{}
	ports := map[int]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e struct {
			Type    string `json:"type"`
			Request struct {
				Path       string `json:"path"`
				RemotePort int    `json:"remote_port"`
			} `json:"request"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Type != "request" {
			continue
		}
		out[kind(e.Request.Path)]++
		ports[e.Request.RemotePort] = true
	}
	return out, len(ports), sc.Err()
}

// kind groups Vault paths the way the report talks about them.
func kind(path string) string {
	switch {
	case strings.HasPrefix(path, "auth/") && strings.HasSuffix(path, "/login"):
		return "login"
	case strings.HasPrefix(path, "auth/token/"):
		return "token"
	case strings.Contains(path, "/issue/"):
		return "issue"
	case strings.Contains(path, "/sign/"):
		return "sign"
	case strings.Contains(path, "ca_chain"), strings.Contains(path, "/issuer"), strings.HasSuffix(path, "/ca"), strings.Contains(path, "/ca/"), strings.Contains(path, "/cert/ca"):
		return "ca"
	case strings.Contains(path, "/crl"):
		return "crl"
	}
	return "other:" + path
}
