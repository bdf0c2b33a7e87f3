// Package vaultagent reads a Vault Agent configuration (HCL or JSON, with
// HCL 1 as Vault reads it) and writes the certkeeper configuration that
// keeps the same certificates in the same files: the `convert vault-agent`
// command. Everything it cannot translate is written into the output as a
// comment with the reason; nothing is dropped silently. It reads the
// templates' source files, never Vault, and writes nothing itself.
package vaultagent

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"

	"github.com/certkeeper/certkeeper/templates"
)

var deniedFunction = templates.DeniedFunction

// Options are what Convert takes besides the file's bytes.
type Options struct {
	// Path is the Vault Agent config's path: named in the output, and
	// where relative template sources are looked for.
	Path string
	// ReadFile reads template sources; default os.ReadFile.
	ReadFile func(string) ([]byte, error)
	// GroupExists says whether a group exists on this host, so the output
	// names only groups validate accepts here; default os/user.
	GroupExists func(string) bool
}

// Result is a converted configuration.
type Result struct {
	// Config is the certkeeper configuration, comments included.
	Config []byte
	// Certificates is how many certificate blocks it has.
	Certificates int
	// Skipped is how many settings or templates were not translated;
	// each is a comment in Config.
	Skipped int
}

// note is one thing said in the output about a line of the source.
type note struct {
	line int
	text string
}

func (n note) String() string {
	if n.line > 0 {
		return fmt.Sprintf("line %d: %s", n.line, n.text)
	}
	return n.text
}

// vaultAgentPerms is the mode Vault Agent gives a template's destination
// without perms: readable by everyone, keys included.
const vaultAgentPerms = fs.FileMode(0o644)

type converter struct {
	o       Options
	dir     string
	skipped []note
	vault   vaultOut
	certs   []*certOut
	byCall  map[string]*certOut
	svcs    []*serviceOut
	// renewal is what Vault Agent's renewal threshold was, for the note.
	threshold string
	// issuedWithSecret: some certificate came from secret (which Vault
	// Agent issues again at every start), not pkiCert.
	issuedWithSecret bool
}

func (c *converter) skip(line int, format string, args ...any) {
	c.skipped = append(c.skipped, note{line, fmt.Sprintf(format, args...)})
}

// Convert translates the Vault Agent configuration src.
func Convert(src []byte, o Options) (*Result, error) {
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	if o.GroupExists == nil {
		o.GroupExists = func(name string) bool { _, err := user.LookupGroup(name); return err == nil }
	}
	top, err := parseFile(src)
	if err != nil {
		return nil, fmt.Errorf("reading %s as a Vault Agent configuration: %w", o.Path, err)
	}
	c := &converter{o: o, dir: filepath.Dir(o.Path), byCall: map[string]*certOut{}, threshold: "0.9"}
	c.readVault(top)
	c.readAutoAuth(top)
	c.readTemplateConfig(top)
	// exit_after_auth = false is what certkeeper run does anyway.
	if v, line, ok := top.str("exit_after_auth"); ok && v == "true" {
		c.skip(line, "exit_after_auth: `certkeeper once` is the one-shot run: it makes every certificate valid and written, then exits")
	}
	for _, tb := range top.blocks("template") {
		c.readTemplate(tb)
	}
	c.readRest(top)
	if len(c.certs) == 0 {
		c.skip(0, "no template issues a certificate, so there is nothing for certkeeper to keep")
	}
	for _, cert := range c.certs {
		c.place(cert)
	}
	c.resolveCertAuth()
	out := c.write()
	return &Result{Config: out, Certificates: len(c.certs), Skipped: len(c.skipped)}, nil
}

// path makes a relative path from the source absolute against the Vault
// Agent config's directory, and says so: Vault Agent resolved it against
// its working directory, certkeeper resolves it against its config file.
func (c *converter) path(p string, line int) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	abs := filepath.Join(c.dir, p)
	if !filepath.IsAbs(abs) {
		if a, err := filepath.Abs(abs); err == nil {
			abs = a
		}
	}
	c.skip(line, "the relative path %q is written as %s: Vault Agent resolved it against its working directory, which this file does not say; check it", p, abs)
	return abs
}

// readRest reports every top-level setting no part of the converter read.
func (c *converter) readRest(top *block) {
	reasons := map[string]string{
		"listener":                 "Vault Agent's listener serves applications that talk to Vault through it; certkeeper is no proxy: keep Vault Agent for them",
		"cache":                    "Vault Agent's cache is for applications that talk to Vault through it; certkeeper is no proxy",
		"api_proxy":                "Vault Agent's API proxy is for applications that talk to Vault through it; certkeeper is no proxy",
		"exec":                     "process supervisor mode starts a program with secrets in its environment; certkeeper supervises no program",
		"env_template":             "secrets in a child process's environment; certkeeper writes certificate files only",
		"telemetry":                "Vault Agent's own metrics; certkeeper serves its own in its telemetry block (127.0.0.1:9847 by default)",
		"pid_file":                 "certkeeper needs no pid file (systemd tracks it; `certkeeper status` and `rotate` reach it over the control socket in state_dir)",
		"log_level":                "certkeeper logs to stderr: set -log-level on its command line",
		"log_format":               "certkeeper logs to stderr: set -log-format on its command line",
		"log_file":                 "certkeeper logs to stderr (the journal under systemd)",
		"disable_mlock":            "certkeeper holds no mlock'ed memory to disable",
		"disable_idle_connections": "not needed: certkeeper keeps one connection pool to Vault",
		"disable_keep_alives":      "not needed: certkeeper keeps one connection pool to Vault",
	}
	for _, k := range top.unused() {
		why, ok := reasons[strings.Fields(k.key)[0]]
		if !ok {
			why = "certkeeper has no such setting"
		}
		c.skip(k.line, "%s: %s", k.key, why)
	}
}

func (c *converter) readTemplateConfig(top *block) {
	for _, tc := range top.blocks("template_config") {
		if v, line, ok := tc.str("exit_on_retry_failure"); ok && v == "true" {
			c.skip(line, "template_config exit_on_retry_failure: certkeeper never exits because a renewal failed; it keeps the files on disk, retries with backoff, and /readyz, the metrics and the alerts say so")
		}
		if v, _, ok := tc.str("lease_renewal_threshold"); ok {
			c.threshold = v
		}
		for _, k := range tc.unused() {
			c.skip(k.line, "template_config %s: no equivalent in certkeeper", k.key)
		}
	}
}

// serviceOut is a command Vault Agent ran after rendering, now a service
// that certificates notify.
type serviceOut struct {
	name    string
	argv    []string
	timeout string
	froms   []string
	notes   []string
}

// service returns the service running argv, made once per command.
func (c *converter) service(argv []string, timeout string, where string) *serviceOut {
	for _, s := range c.svcs {
		if slices.Equal(s.argv, argv) {
			s.froms = append(s.froms, where)
			return s
		}
	}
	s := &serviceOut{name: c.serviceName(argv), argv: argv, timeout: timeout, froms: []string{where}}
	first := filepath.Base(argv[0])
	if first == "systemctl" || first == "service" {
		s.notes = append(s.notes, "certkeeper runs this as the user it runs as (certkeeper, in the package), which may not reload services with "+first+": for nginx or Apache use pid_file and signal instead (see README, Services), which the packaged unit allows")
	}
	s.notes = append(s.notes, "Vault Agent ran the command when its templates rendered; certkeeper runs it once all the files of a change are written (settle, 2s), and only after check succeeds when you set one (such as [\"nginx\", \"-t\"]): a failed check puts the previous files back.")
	c.svcs = append(c.svcs, s)
	return s
}

func (c *converter) serviceName(argv []string) string {
	name := ""
	skip := map[string]bool{"systemctl": true, "service": true, "sudo": true, "sh": true, "bash": true, "-c": true, "-n": true,
		"reload": true, "restart": true, "try-reload-or-restart": true, "reload-or-restart": true, "kill": true, "-s": true}
	for _, a := range argv {
		b := filepath.Base(a)
		if skip[b] || strings.HasPrefix(b, "-") || strings.ContainsAny(b, " ;|&$") {
			continue
		}
		name = strings.TrimSuffix(b, filepath.Ext(b))
		break
	}
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return -1
	}, name)
	if name == "" {
		name = "command"
	}
	unique := name
	for i := 2; slices.ContainsFunc(c.svcs, func(s *serviceOut) bool { return s.name == unique }); i++ {
		unique = fmt.Sprintf("%s-%d", name, i)
	}
	return unique
}

// commandArgv is how Vault Agent (consul-template) runs a command: a list
// as it is; one string with spaces through sh -c, unless it holds no shell
// syntax, when its words are the same thing.
func commandArgv(cmd []string) []string {
	if len(cmd) != 1 {
		return cmd
	}
	s := strings.TrimSpace(cmd[0])
	if !strings.ContainsAny(s, " \t") {
		return []string{s}
	}
	if strings.ContainsAny(s, "|&;<>()$`\\\"'*?[#~=%{}") {
		return []string{"sh", "-c", s}
	}
	return strings.Fields(s)
}

func groupOfOS(name string) string {
	if g, err := user.LookupGroupId(name); err == nil {
		return g.Name
	}
	return name
}
