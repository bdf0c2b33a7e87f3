package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// pathRef is a path the config names, where, and what it is for messages.
type pathRef struct {
	path string
	rng  hcl.Range
	what string // `certificate "web" pkcs12_file`, `auth secret_id_file`
	// owner is the certificate block an output belongs to; for an input
	// that is a certificate's own output (cert auth's client pair), the
	// certificate allowed to write it.
	owner string
	// line is where an input is named, for the message; 0 for inputs that
	// are not named in the file (the file itself, VAULT_CACERT).
	line int
}

// overlaps refuses any output that is also something certkeeper reads: a
// credential (role_id_file, secret_id_file, token_file), the Vault CA, the
// client pair of cert auth (except for the certificate that owns it),
// PKCS#12 password files, template sources, pid files, the config file
// itself, or anything under state_dir. Each pairing is one error at the
// output's line. Without this, a pkcs12_file or a trust bundle's ca_file
// pointed at secret_id_file passed validate and overwrote the credential
// at the first write.
func (b *builder) overlaps(cfg *Config, raw *rawFile) {
	outputs := b.outputRefs(raw)
	inputs := b.inputRefs(cfg, raw)
	// Outputs number three or more per certificate and sit in a few
	// directories: each directory's symlinks are resolved once and each
	// input stated once, not once per pair (at 10,000 certificates the
	// pairwise way took 240,000 EvalSymlinks and 300 MB of garbage).
	paths := &pathCache{dirs: map[string]string{}}
	stateDir := ""
	if cfg.StateDir != "" {
		stateDir = paths.resolveDir(cfg.StateDir)
	}
	ins := make([]pathFacts, len(inputs))
	for i, in := range inputs {
		ins[i] = paths.facts(in.path)
	}
	for _, out := range outputs {
		of := paths.facts(out.path)
		if cfg.StateDir != "" && paths.within(of, cfg.StateDir, stateDir) {
			b.fail(out.rng, "%s %s is inside state_dir %s, whose files certkeeper reads back as its own state; write outputs elsewhere", out.what, out.path, cfg.StateDir)
			continue
		}
		for i, in := range inputs {
			if in.owner != "" && in.owner == out.owner {
				continue
			}
			if !of.same(ins[i]) {
				continue
			}
			where := ""
			if in.line > 0 {
				where = fmt.Sprintf(" (line %d)", in.line)
			}
			b.fail(out.rng, "%s %s is %s%s, which certkeeper reads: an output must never overwrite an input", out.what, out.path, in.what, where)
		}
	}
}

func (b *builder) outputRefs(raw *rawFile) []pathRef {
	var out []pathRef
	add := func(owner, what, p string, body hcl.Body, attr string, def hcl.Range) {
		if p == "" {
			return
		}
		out = append(out, pathRef{path: b.path(p), rng: valueRange(body, attr, def), what: what, owner: owner})
	}
	seen := map[string]bool{}
	for i := range raw.Certificates {
		rc := &raw.Certificates[i]
		if seen[rc.Name] {
			continue // a duplicate block is reported on its own
		}
		seen[rc.Name] = true
		who := fmt.Sprintf("certificate %q", rc.Name)
		for _, f := range []struct{ attr, p string }{
			{"cert_file", rc.CertFile}, {"key_file", rc.KeyFile}, {"chain_file", rc.ChainFile},
			{"fullchain_file", rc.FullchainFile}, {"ca_file", rc.CAFile}, {"pkcs12_file", rc.PKCS12File},
		} {
			add(rc.Name, who+" "+f.attr, f.p, rc.Body, f.attr, rc.DefRange)
		}
		for j := range rc.Templates {
			rt := &rc.Templates[j]
			add(rc.Name, who+" template destination", rt.Destination, rt.Body, "destination", rt.DefRange)
		}
	}
	for i := range raw.TrustBundles {
		rt := &raw.TrustBundles[i]
		who := fmt.Sprintf("trust_bundle %q", rt.Name)
		add("", who+" ca_file", rt.CAFile, rt.Body, "ca_file", rt.DefRange)
		add("", who+" crl_file", rt.CRLFile, rt.Body, "crl_file", rt.DefRange)
	}
	return out
}

func (b *builder) inputRefs(cfg *Config, raw *rawFile) []pathRef {
	var in []pathRef
	add := func(what, p, owner string, body hcl.Body, attr string) {
		if p == "" {
			return
		}
		ref := pathRef{path: p, what: what, owner: owner}
		if body != nil {
			ref.line = valueRange(body, attr, hcl.Range{}).Start.Line
		}
		in = append(in, ref)
	}
	if b.file != "" {
		add("this config file", b.file, "", nil, "")
	}
	if rv := raw.Vault; rv != nil {
		if rv.CACert != "" {
			add("the vault ca_cert", cfg.Vault.CACert, "", rv.Body, "ca_cert")
		} else {
			add("the vault ca_cert (from VAULT_CACERT)", cfg.Vault.CACert, "", nil, "")
		}
		for i, a := range cfg.Vault.Auth {
			var ab hcl.Body
			if len(rv.Auth) == len(cfg.Vault.Auth) {
				ab = rv.Auth[i].Body
			}
			add("the auth token_file", a.TokenFile, "", ab, "token_file")
			add("the auth role_id_file", a.RoleIDFile, "", ab, "role_id_file")
			add("the auth secret_id_file", a.SecretIDFile, "", ab, "secret_id_file")
			// cert auth logs in with a pair its own certificate block writes.
			add("the client certificate of cert auth", a.ClientCert, a.Certificate, ab, "certificate")
			add("the client key of cert auth", a.ClientKey, a.Certificate, ab, "certificate")
			add("the client chain of cert auth", a.ClientChain, a.Certificate, ab, "certificate")
		}
	}
	seen := map[string]bool{}
	for i := range raw.Certificates {
		rc := &raw.Certificates[i]
		if seen[rc.Name] {
			continue
		}
		seen[rc.Name] = true
		who := fmt.Sprintf("certificate %q", rc.Name)
		add("the pkcs12_password_file of "+who, b.path(rc.PKCS12PasswordFile), "", rc.Body, "pkcs12_password_file")
		for j := range rc.Templates {
			rt := &rc.Templates[j]
			add("a template source of "+who, b.path(rt.Source), "", rt.Body, "source")
		}
	}
	for i := range raw.Services {
		rs := &raw.Services[i]
		add(fmt.Sprintf("the pid_file of service %q", rs.Name), b.path(rs.PIDFile), "", rs.Body, "pid_file")
	}
	return in
}

// pathCache resolves each directory's symlinks once.
type pathCache struct {
	dirs map[string]string // directory -> its symlinks resolved (itself when that fails)
}

// pathFacts is what samePath compares of one path: the path, the path with
// the symlinks in its directory resolved (the file itself may not exist
// yet, and an output is replaced, not followed, when it is a symlink), and,
// for an existing file, its identity, which finds hard links.
type pathFacts struct {
	path, resolved string
	info           os.FileInfo // nil when the file cannot be stated
}

func (c *pathCache) facts(p string) pathFacts {
	f := pathFacts{path: p, resolved: filepath.Join(c.resolveDir(filepath.Dir(p)), filepath.Base(p))}
	if info, err := os.Stat(p); err == nil {
		f.info = info
	}
	return f
}

// same says whether two absolute, clean paths name the same file: equal,
// equal once symlinks in their directories are resolved, or, for files
// that exist, the same inode (a hard link).
func (f pathFacts) same(o pathFacts) bool {
	return f.path == o.path || f.resolved == o.resolved ||
		(f.info != nil && o.info != nil && os.SameFile(f.info, o.info))
}

func (c *pathCache) resolveDir(dir string) string {
	if r, ok := c.dirs[dir]; ok {
		return r
	}
	r := dir
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		r = d
	}
	c.dirs[dir] = r
	return r
}

// within says whether the path of f is dir or below it, symlinks in both
// resolved (resolvedDir is dir resolved).
func (c *pathCache) within(f pathFacts, dir, resolvedDir string) bool {
	for _, pair := range [][2]string{{f.path, dir}, {f.resolved, resolvedDir}} {
		rel, err := filepath.Rel(pair[1], pair[0])
		if err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return true
		}
	}
	return false
}
