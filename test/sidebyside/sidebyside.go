// Package sidebyside runs Vault Agent on one of its configurations and
// certkeeper on what `certkeeper convert vault-agent` made of it, against
// one real Vault, and compares the files they write: the same paths, the
// same PEM layout, the same subject, SANs and issuer, the same modes, but
// for the differences the converter announces.
//
// The configurations are written as for a real host: Vault at
// https://vault.example.internal:8200, files under /etc, /run and /var.
// Each agent runs
// on its own copy in which those are the test Vault and a directory of
// its own, so the two never write the same file.
package sidebyside

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/certkeeper/certkeeper/test/vaulttest"
)

// VaultAddress is the Vault address the configurations name.
const VaultAddress = "https://vault.example.internal:8200"

// Options say what to run.
type Options struct {
	Vault *vaulttest.Server // with Bootstrap's PKI
	// VaultBin is bin/vault, which is also Vault Agent; CertkeeperBin the
	// certkeeper under test.
	VaultBin, CertkeeperBin string
	// Config is the Vault Agent configuration; the files beside it (and in
	// directories beside it) are copied too, for template sources.
	Config string
	// Expect are the differences the converter announces.
	Expect Expect
}

// Expect lists, relative to /, what may differ.
type Expect struct {
	// OnlyCertkeeper are files only certkeeper writes (cert_file and
	// key_file it always has).
	OnlyCertkeeper []string
	// OnlyVaultAgent are files only Vault Agent writes (a token sink).
	OnlyVaultAgent []string
	// Modes are certkeeper's modes where they differ from Vault Agent's
	// (a key Vault Agent left readable by every user).
	Modes map[string]fs.FileMode
}

// File is one file either agent wrote.
type File struct {
	Path   string // relative to /
	Mode   fs.FileMode
	Layout string // PEM blocks and text, normalised
	Leaf   *x509.Certificate
	CAs    []string // subjects
}

// Result is what each wrote.
type Result struct {
	VaultAgent, Certkeeper map[string]File
	// Converted is the certkeeper config the converter printed for this
	// run.
	Converted string
	expect    Expect
}

var (
	rolePattern   = regexp.MustCompile(`pki_int/issue/([A-Za-z0-9_-]+)`)
	scriptPattern = regexp.MustCompile(`/etc/[A-Za-z0-9_./-]*reload\.sh`)
	runPattern    = regexp.MustCompile(`/run/[A-Za-z0-9_./-]+`)
)

// Run runs both agents and compares what they wrote, failing t on any
// difference Expect does not list.
func Run(t *testing.T, o Options) *Result {
	t.Helper()
	src, err := os.ReadFile(o.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range rolePattern.FindAllStringSubmatch(string(src)+readDirText(t, filepath.Dir(o.Config)), -1) {
		ensureRole(t, o.Vault, m[1])
	}
	roleID, secretID, err := vaulttest.CreateAppRole(t.Context(), o.Vault.Client, vaulttest.AppRoleOptions{Name: "side-by-side", Mounts: []string{"pki_int"}})
	if err != nil {
		t.Fatal(err)
	}
	rootA, rootB := t.TempDir(), t.TempDir()
	res := &Result{expect: o.Expect}

	// Vault Agent, once: exit_after_auth renders every template once and
	// exits.
	cfgA := stage(t, o, rootA, roleID, secretID)
	agentCfg := readText(t, cfgA)
	if strings.HasSuffix(cfgA, ".json") {
		agentCfg = strings.Replace(agentCfg, "{", "{\n  \"exit_after_auth\": true,", 1)
	} else {
		agentCfg += "\nexit_after_auth = true\n"
	}
	writeText(t, cfgA, agentCfg, 0o600)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	agent := exec.CommandContext(ctx, o.VaultBin, "agent", "-config="+cfgA)
	agent.Dir = filepath.Dir(cfgA)
	agent.Env = cleanEnv()
	if out, err := agent.CombinedOutput(); err != nil {
		t.Fatalf("vault agent: %v\n%s", err, out)
	}

	// certkeeper: convert, validate, once.
	cfgB := stage(t, o, rootB, roleID, secretID)
	conv := exec.Command(o.CertkeeperBin, "convert", "vault-agent", cfgB)
	conv.Env = cleanEnv()
	var stderr strings.Builder
	conv.Stderr = &stderr
	converted, err := conv.Output()
	if err != nil {
		t.Fatalf("certkeeper convert: %v\n%s\n%s", err, converted, stderr.String())
	}
	res.Converted = string(converted)
	ckCfg := filepath.Join(filepath.Dir(cfgB), "certkeeper.hcl")
	writeText(t, ckCfg, fmt.Sprintf("state_dir = %q\n\n%s", filepath.Join(rootB, "state"), converted), 0o600)
	for _, args := range [][]string{{"validate", "-config", ckCfg}, {"once", "-config", ckCfg}} {
		cmd := exec.Command(o.CertkeeperBin, args...)
		cmd.Env = cleanEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("certkeeper %s: %v\n%s\nconfig:\n%s", args[0], err, out, converted)
		}
	}

	res.VaultAgent = collect(t, rootA)
	res.Certkeeper = collect(t, rootB)
	compare(t, res, o.Expect)
	return res
}

// stage writes the configuration and its template sources under root,
// pointed at the test Vault and root, with AppRole credentials, the CA
// file and the reload scripts they name, and returns the config's path.
func stage(t *testing.T, o Options, root, roleID, secretID string) string {
	t.Helper()
	rewrite := func(s string) string {
		return rebase(strings.ReplaceAll(s, VaultAddress, o.Vault.Addr), root)
	}
	from := filepath.Dir(o.Config)
	to := filepath.Join(root, "agent")
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, []byte(rewrite(string(data))), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(root, "etc", "vault-agent")
	writeText(t, filepath.Join(etc, "role-id"), roleID, 0o600)
	writeText(t, filepath.Join(etc, "secret-id"), secretID, 0o600)
	writeText(t, filepath.Join(etc, "vault-ca.pem"), readVaultCA(t, o.Vault), 0o644)
	text := readText(t, o.Config) + readDirText(t, from)
	// Vault Agent makes no directory for its pid file.
	for _, p := range runPattern.FindAllString(text, -1) {
		if err := os.MkdirAll(filepath.Dir(rewrite(p)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, script := range scriptPattern.FindAllString(text, -1) {
		p := rewrite(script)
		writeText(t, p, "#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/reloaded\"\n", 0o755)
	}
	return filepath.Join(to, filepath.Base(o.Config))
}

// rebase moves the absolute paths under /etc, /run and /var in s under
// root, in one pass: replacing one directory after the other rewrote the
// root already put in front of a path whenever root itself holds one of
// them (a TMPDIR under /var/tmp made /var/tmp/x/002/var/tmp/x/002/etc/...).
func rebase(s, root string) string {
	return strings.NewReplacer("/etc/", root+"/etc/", "/run/", root+"/run/", "/var/", root+"/var/").Replace(s)
}

// inputs are the files the stage writes, which neither agent does.
var inputs = []string{"etc/vault-agent/role-id", "etc/vault-agent/secret-id", "etc/vault-agent/vault-ca.pem"}

func readVaultCA(t *testing.T, v *vaulttest.Server) string {
	t.Helper()
	sec, err := v.Client.Logical().Read("pki/cert/ca")
	if err != nil || sec == nil {
		t.Fatalf("reading the root CA: %v", err)
	}
	return sec.Data["certificate"].(string) + "\n"
}

// ensureRole makes role on pki_int like Bootstrap's EC role.
func ensureRole(t *testing.T, v *vaulttest.Server, role string) {
	t.Helper()
	_, err := v.Client.Logical().Write("pki_int/roles/"+role, map[string]any{
		"allowed_domains": vaulttest.Domain, "allow_subdomains": true, "allow_bare_domains": true,
		"allow_localhost": true, "allow_ip_sans": true, "allowed_uri_sans": "spiffe://" + vaulttest.Domain + "/*",
		"max_ttl": "72h", "ttl": "24h", "key_type": "ec", "key_bits": 256,
	})
	if err != nil {
		t.Fatalf("writing role %s: %v", role, err)
	}
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			env = append(env, kv)
		}
	}
	return env
}

func readText(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readDirText is every file in the directories beside the config (the
// template sources), concatenated.
func readDirText(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Dir(p) != dir {
			data, _ := os.ReadFile(p)
			b.Write(data)
		}
		return nil
	})
	return b.String()
}

func writeText(t *testing.T, p, text string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

var (
	serialText = regexp.MustCompile(`\b[0-9a-f]{2}(:[0-9a-f]{2}){7,}\b`)
	unixText   = regexp.MustCompile(`\b1[0-9]{9}\b`)
	spaces     = regexp.MustCompile(`\s+`)
)

// collect reads every file under root/etc but the inputs.
func collect(t *testing.T, root string) map[string]File {
	t.Helper()
	out := map[string]File{}
	etc := filepath.Join(root, "etc")
	err := filepath.WalkDir(etc, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if slices.Contains(inputs, rel) || strings.HasSuffix(rel, "reload.sh") {
			return nil
		}
		info, err := os.Stat(p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		f := File{Path: "/" + rel, Mode: info.Mode().Perm()}
		f.Layout, f.Leaf, f.CAs = layout(data)
		out[f.Path] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// layout is what a file holds, without what differs between any two
// issuances: each PEM block by its kind (a key as KEY, whichever of
// PKCS#8, PKCS#1 or SEC 1 it is in), serials and times as words, white
// space as one space.
func layout(data []byte) (string, *x509.Certificate, []string) {
	var b strings.Builder
	var leaf *x509.Certificate
	var cas []string
	rest := data
	for {
		start := strings.Index(string(rest), "-----BEGIN ")
		if start < 0 {
			b.Write(rest)
			break
		}
		b.Write(rest[:start])
		block, after := pem.Decode(rest[start:])
		if block == nil {
			b.Write(rest[start:])
			break
		}
		switch {
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			b.WriteString(" <KEY> ")
		case block.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err == nil && c.IsCA {
				cas = append(cas, c.Subject.String())
				b.WriteString(" <CA " + c.Subject.CommonName + "> ")
			} else if err == nil {
				leaf = c
				b.WriteString(" <LEAF> ")
			}
		default:
			b.WriteString(" <" + block.Type + "> ")
		}
		rest = after
	}
	s := serialText.ReplaceAllString(b.String(), "SERIAL")
	s = unixText.ReplaceAllString(s, "UNIXTIME")
	return strings.TrimSpace(spaces.ReplaceAllString(s, " ")), leaf, cas
}

func names(c *x509.Certificate) string {
	var ips, uris []string
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	for _, u := range c.URIs {
		uris = append(uris, u.String())
	}
	dns := slices.Clone(c.DNSNames)
	sort.Strings(dns)
	return fmt.Sprintf("subject %q, dns %v, ip %v, uri %v, issuer %q", c.Subject.String(), dns, ips, uris, c.Issuer.String())
}

func compare(t *testing.T, r *Result, e Expect) {
	t.Helper()
	for p, a := range r.VaultAgent {
		b, ok := r.Certkeeper[p]
		if !ok {
			if !slices.Contains(e.OnlyVaultAgent, p) {
				t.Errorf("%s: Vault Agent writes it, certkeeper does not", p)
			}
			continue
		}
		if slices.Contains(e.OnlyVaultAgent, p) {
			t.Errorf("%s: expected from Vault Agent only, but certkeeper writes it too", p)
		}
		if a.Layout != b.Layout {
			t.Errorf("%s: layout differs\n  vault agent: %s\n  certkeeper:  %s", p, a.Layout, b.Layout)
		}
		if (a.Leaf == nil) != (b.Leaf == nil) || a.Leaf != nil && names(a.Leaf) != names(b.Leaf) {
			t.Errorf("%s: certificates differ\n  vault agent: %s\n  certkeeper:  %s", p, describe(a.Leaf), describe(b.Leaf))
		}
		if !slices.Equal(a.CAs, b.CAs) {
			t.Errorf("%s: CA certificates differ: %q, %q", p, a.CAs, b.CAs)
		}
		want := a.Mode
		if m, ok := e.Modes[p]; ok {
			want = m
			if m == a.Mode {
				t.Errorf("%s: listed as a mode that differs, but Vault Agent wrote %04o too", p, m)
			}
		}
		if b.Mode != want {
			t.Errorf("%s: mode %04o from certkeeper, want %04o (Vault Agent: %04o)", p, b.Mode, want, a.Mode)
		}
	}
	for p := range r.Certkeeper {
		if _, ok := r.VaultAgent[p]; !ok && !slices.Contains(e.OnlyCertkeeper, p) {
			t.Errorf("%s: certkeeper writes it, Vault Agent does not", p)
		}
	}
	for _, p := range e.OnlyCertkeeper {
		if _, ok := r.Certkeeper[p]; !ok {
			t.Errorf("%s: expected from certkeeper, which does not write it", p)
		}
	}
}

func describe(c *x509.Certificate) string {
	if c == nil {
		return "none"
	}
	return names(c)
}

// Table is the two sides, file by file, for a test's log.
func (r *Result) Table() string {
	var paths []string
	for p := range r.VaultAgent {
		paths = append(paths, p)
	}
	for p := range r.Certkeeper {
		if _, ok := r.VaultAgent[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	var b strings.Builder
	for _, p := range paths {
		a, aok := r.VaultAgent[p]
		c, cok := r.Certkeeper[p]
		side := func(f File, ok bool) string {
			switch {
			case !ok:
				return "-"
			case slices.Contains(r.expect.OnlyVaultAgent, p):
				// A token sink: what it holds is not for a log.
				return fmt.Sprintf("%04o (not translated, not shown)", f.Mode)
			}
			return fmt.Sprintf("%04o %s", f.Mode, f.Layout)
		}
		fmt.Fprintf(&b, "%s\n  vault agent: %s\n  certkeeper:  %s\n", p, side(a, aok), side(c, cok))
	}
	return b.String()
}
