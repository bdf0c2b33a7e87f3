//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/certkeeper/certkeeper/internal/pki"
)

// Tools under comparison.
const (
	toolCertkeeper      = "certkeeper"       // sign mode (the default): key made locally, CSR signed
	toolCertkeeperIssue = "certkeeper-issue" // issue mode: Vault makes the key
	toolAgent           = "vault-agent"      // Vault Agent with pkiCert templates (issue)
	toolFloor           = "floor"            // bare vault/api loop, writes nothing
	// toolBaseline is certkeeper in sign mode from another binary (-baseline),
	// to measure a change before and after in one run.
	toolBaseline = "certkeeper-base"
)

// job is one kind of run: a tool, a number of certificates, a key type.
type job struct {
	Tool string
	N    int
	Key  string // "ec" (P-256) or "rsa" (2048)
}

func (j job) String() string { return fmt.Sprintf("%s N=%d %s", j.Tool, j.N, j.Key) }

func (j job) role() string {
	if j.Key == "rsa" {
		return roleRSA
	}
	return roleEC
}

// certName is the configured name, and file stem, of certificate i.
func certName(i int) string { return fmt.Sprintf("c%d", i) }

func commonName(i int) string { return certName(i) + ".example.internal" }

// ttl is asked of Vault by every tool; the roles allow up to 72h.
const ttl = "24h"

// layout is what a tool needs on disk and how to tell when it is done.
type layout struct {
	args     []string   // command line after the binary
	bin      string     // binary to run
	sets     [][]string // file names under tlsDir, one list per certificate
	nonEmpty bool
	tlsDir   string
	// readyLine, when set, is the log line that says a restart finished
	// looking at every certificate.
	readyLine string
	check     func() (valid int, err error)
}

// prepare writes the tool's config under dir and returns how to run it.
func prepare(o *options, bv *benchVault, j job, dir string) (*layout, error) {
	tlsDir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(tlsDir, 0o755); err != nil {
		return nil, err
	}
	switch j.Tool {
	case toolCertkeeper, toolCertkeeperIssue, toolBaseline:
		return prepareCertkeeper(o, bv, j, dir, tlsDir)
	case toolAgent:
		return prepareAgent(o, bv, j, dir, tlsDir)
	case toolFloor:
		return &layout{
			bin: o.self,
			args: []string{"floor", "-addr", bv.srv.Addr, "-role-id-file", bv.roleIDFile, "-secret-id-file", bv.secretIDFile,
				"-n", fmt.Sprint(j.N), "-path", "pki_int/issue/" + j.role(), "-ttl", ttl, "-parallel", fmt.Sprint(o.parallel)},
			tlsDir: tlsDir,
			check:  func() (int, error) { return j.N, nil },
		}, nil
	}
	return nil, fmt.Errorf("unknown tool %q", j.Tool)
}

func prepareCertkeeper(o *options, bv *benchVault, j job, dir, tlsDir string) (*layout, error) {
	mode := "sign"
	if j.Tool == toolCertkeeperIssue {
		mode = "issue"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `state_dir = %q

vault {
  address      = %q
  max_parallel = %d
  auth "approle" {
    role_id_file   = %q
    secret_id_file = %q
  }
}
`, filepath.Join(dir, "state"), bv.srv.Addr, o.parallel, bv.roleIDFile, bv.secretIDFile)
	sets := make([][]string, j.N)
	for i := range j.N {
		n := certName(i)
		sets[i] = []string{n + ".key", n + ".crt", n + ".ca.pem"}
		fmt.Fprintf(&b, `
certificate %q {
  mount       = "pki_int"
  role        = %q
  common_name = %q
  ttl         = %q
  key_type    = %q
  issue_mode  = %q
  key_file    = %q
  cert_file   = %q
  ca_file     = %q
}
`, n, j.role(), commonName(i), ttl, j.Key, mode,
			filepath.Join(tlsDir, sets[i][0]), filepath.Join(tlsDir, sets[i][1]), filepath.Join(tlsDir, sets[i][2]))
	}
	cfg := filepath.Join(dir, "certkeeper.hcl")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	args := []string{"run", "-config", cfg}
	bin := o.certkeeper
	if j.Tool == toolBaseline {
		bin = o.baseline
	}
	return &layout{
		bin:       bin,
		args:      args,
		sets:      sets,
		tlsDir:    tlsDir,
		readyLine: "ready: every certificate and trust bundle is in place",
		check: func() (int, error) {
			return countValid(j.N, func(i int) error {
				return checkPair(filepath.Join(tlsDir, sets[i][1]), filepath.Join(tlsDir, sets[i][0]))
			})
		},
	}, nil
}

func prepareAgent(o *options, bv *benchVault, j job, dir, tlsDir string) (*layout, error) {
	text, sets := agentConfig(bv.srv.Addr, bv.roleIDFile, bv.secretIDFile, j.role(), tlsDir, j.N)
	cfg := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		return nil, err
	}
	return &layout{
		bin:      o.vault,
		args:     []string{"agent", "-config=" + cfg},
		sets:     sets,
		nonEmpty: true,
		tlsDir:   tlsDir,
		check: func() (int, error) {
			return countValid(j.N, func(i int) error {
				p := filepath.Join(tlsDir, sets[i][0])
				return checkPair(p, p)
			})
		},
	}, nil
}

// agentConfig is the Vault Agent configuration of the benchmark, for n
// certificates from role written under tlsDir, and the file each goes
// to. The converter's side-by-side test converts this very text.
func agentConfig(addr, roleIDFile, secretIDFile, role, tlsDir string, n int) (string, [][]string) {
	var b strings.Builder
	fmt.Fprintf(&b, `vault {
  address = %q
}

auto_auth {
  method "approle" {
    config = {
      role_id_file_path                   = %q
      secret_id_file_path                 = %q
      remove_secret_id_file_after_reading = false
    }
  }
}
`, addr, roleIDFile, secretIDFile)
	sets := make([][]string, n)
	for i := range n {
		name := certName(i) + ".pem"
		sets[i] = []string{name}
		// One file per certificate holding cert, CA and key: pkiCert
		// reads its own destination back on start, so this is the layout
		// that lets Vault Agent restart without reissuing.
		contents := fmt.Sprintf(`{{ with pkiCert "pki_int/issue/%s" "common_name=%s" "ttl=%s" }}{{ .Cert }}{{ .CA }}{{ .Key }}{{ end }}`,
			role, commonName(i), ttl)
		fmt.Fprintf(&b, `
template {
  destination = %q
  contents    = %q
  perms       = "0600"
}
`, filepath.Join(tlsDir, name), contents)
	}
	return b.String(), sets
}

// checkPair parses the first certificate in certPath and the key in
// keyPath and checks they belong together.
func checkPair(certPath, keyPath string) error {
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return err
	}
	certs, err := pki.ParseCertificates(cb)
	if err != nil {
		return fmt.Errorf("%s: %w", certPath, err)
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return err
	}
	key, err := pki.ParseKey(kb)
	if err != nil {
		return fmt.Errorf("%s: %w", keyPath, err)
	}
	return pki.KeyMatches(certs[0], key)
}

func countValid(n int, check func(i int) error) (int, error) {
	valid := 0
	var first error
	for i := range n {
		if err := check(i); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		valid++
	}
	return valid, first
}
