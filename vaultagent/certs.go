package vaultagent

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// certOut is one certificate block.
type certOut struct {
	name             string
	call             *call
	mount, role      string
	cn               string
	alt, ips, uris   []string
	ttl              string
	froms            []string // where its templates are
	outputs          []*output
	notify           []string
	notes            []string
	files            map[string]*output // slot (cert, key, chain, fullchain, ca) -> output
	keyMode          fs.FileMode
	certMode         fs.FileMode
	group            string
	templates        []*output
	synthesizedFiles []string
}

// output is one file Vault Agent wrote for a certificate: a template's
// destination or a writeToFile.
type output struct {
	path   string
	plain  bool
	fields []string
	text   string // certkeeper template text, when not plain
	mode   fs.FileMode
	user   string
	group  string
	line   int
	// stock names a stock template that writes it, when one does.
	stock string
}

func (o *output) holdsKey() bool {
	if o.plain {
		return slices.Contains(o.fields, fKey)
	}
	return strings.Contains(o.text, ".Key")
}

// readTemplate translates one template block.
func (c *converter) readTemplate(tb *block) {
	dest, _, _ := tb.str("destination")
	if dest == "" {
		c.skip(tb.line, "template without destination (an environment template, or a broken one): certkeeper writes files")
		return
	}
	dest = c.path(dest, tb.line)
	text, ok := c.templateText(tb, dest)
	if !ok {
		return
	}
	left, _, _ := tb.str("left_delimiter")
	right, _, _ := tb.str("right_delimiter")
	r := analyse(text, left, right, dest, tb.line)
	if len(r.problems) > 0 {
		c.skip(tb.line, "template writing %s: %s. Vault Agent (or consul-template) must keep writing this file", dest, strings.Join(r.problems, "; "))
		return
	}
	if r.plain && len(r.fields) == 0 && len(r.sides) == 0 {
		c.skip(tb.line, "template writing %s: it prints no part of its certificate, so there is nothing for certkeeper to write", dest)
		return
	}
	cert, err := c.certFor(r.issue)
	if err != "" {
		c.skip(tb.line, "template writing %s: %s", dest, err)
		return
	}
	cert.froms = append(cert.froms, from(tb.line, dest))
	perms := vaultAgentPerms
	if m, set, err := tb.mode("perms"); err != nil {
		c.skip(tb.line, "template writing %s: %v; the mode is certkeeper's default", dest, err)
	} else if set {
		perms = m
	}
	owner, group := "", ""
	if v, _, ok := tb.str("user"); ok {
		owner = v
	}
	if v, _, ok := tb.str("uid"); ok {
		owner = v
	}
	if v, _, ok := tb.str("group"); ok {
		group = v
	}
	if v, _, ok := tb.str("gid"); ok {
		group = groupOfOS(v)
	}
	main := &output{path: dest, plain: r.plain, fields: r.fields, text: r.text, mode: perms, user: owner, group: group, line: tb.line}
	if main.plain && len(main.fields) == 0 {
		c.skip(tb.line, "template writing %s: Vault Agent wrote it with nothing but white space (the template prints only through writeToFile); certkeeper does not write it", dest)
	} else {
		cert.outputs = append(cert.outputs, main)
	}
	c.sideFiles(cert, r.sides)
	c.readCommand(tb, cert)
	c.templateRest(tb, dest)
}

// templateText is the template's text, from contents or its source file.
func (c *converter) templateText(tb *block, dest string) (string, bool) {
	if s, _, ok := tb.str("contents"); ok {
		return s, true
	}
	src, line, ok := tb.str("source")
	if !ok {
		c.skip(tb.line, "template writing %s has neither contents nor source", dest)
		return "", false
	}
	p := src
	if !filepath.IsAbs(p) {
		p = filepath.Join(c.dir, p)
	}
	data, err := c.o.ReadFile(p)
	if err != nil {
		c.skip(line, "template writing %s: its source cannot be read here (%v), so what it renders is unknown; convert where the file is", dest, err)
		return "", false
	}
	return string(data), true
}

// sideFiles turns a template's writeToFile calls into outputs, one per
// path: a write without "append" starts the file again.
func (c *converter) sideFiles(cert *certOut, sides []sideWrite) {
	byPath := map[string]*output{}
	var order []string
	for _, s := range sides {
		o := byPath[s.path]
		if o == nil || !s.appendTo {
			if o == nil {
				order = append(order, s.path)
			}
			o = &output{path: s.path, plain: true, mode: s.mode, user: s.user, group: s.group, line: s.line}
			byPath[s.path] = o
		}
		o.fields = append(o.fields, s.field)
	}
	for _, p := range order {
		o := byPath[p]
		o.path = c.path(o.path, o.line)
		if o.group != "" {
			o.group = groupOfOS(o.group)
		}
		cert.outputs = append(cert.outputs, o)
	}
}

// readCommand turns command or exec into a service the certificate
// notifies.
func (c *converter) readCommand(tb *block, cert *certOut) {
	var argv []string
	timeout := ""
	if cmd, line, ok := tb.strs("command"); ok && len(cmd) > 0 {
		argv = commandArgv(cmd)
		if t, _, ok := tb.str("command_timeout"); ok {
			timeout = vaultDuration(t)
		}
		_ = line
	}
	for _, e := range tb.blocks("exec") {
		if cmd, _, ok := e.strs("command"); ok && len(cmd) > 0 {
			argv = commandArgv(cmd)
		}
		if t, _, ok := e.str("timeout"); ok {
			timeout = vaultDuration(t)
		}
		for _, k := range e.unused() {
			c.skip(k.line, "template exec %s: no equivalent in certkeeper's services", k.key)
		}
	}
	if len(argv) == 0 {
		return
	}
	s := c.service(argv, timeout, from(tb.line, tb.str0("destination")))
	if !slices.Contains(cert.notify, s.name) {
		cert.notify = append(cert.notify, s.name)
	}
}

// templateRest reports the template's settings nothing read.
func (c *converter) templateRest(tb *block, dest string) {
	reasons := map[string]string{
		"backup":               "certkeeper keeps no .bak copy; it puts the previous files back itself when a service's check fails",
		"wait":                 "certkeeper waits for a service's changes to settle (service settle) before one reload",
		"error_on_missing_key": "certkeeper's templates see only the certificate, and validate renders each one once",
		"error_fatal":          "a template certkeeper cannot render fails that certificate's pass, which is retried; the files on disk stay",
		"function_denylist":    "certkeeper's templates cannot call Vault, Consul, read or write files, or run programs at all",
		"function_blacklist":   "certkeeper's templates cannot call Vault, Consul, read or write files, or run programs at all",
		"sandbox_path":         "certkeeper's templates cannot read files at all",
	}
	for _, k := range tb.unused() {
		key := strings.Fields(k.key)[0]
		if key == "create_dest_dirs" {
			if b, _ := tb.boolean(key); b {
				continue // certkeeper creates missing directories too
			}
			c.skip(k.line, "template writing %s: create_dest_dirs = false; certkeeper creates missing output directories (0755)", dest)
			continue
		}
		why, ok := reasons[key]
		if !ok {
			why = "no equivalent in certkeeper"
		}
		c.skip(k.line, "template writing %s: %s: %s", dest, k.key, why)
	}
}

// from is where a template is: its line, or its destination in a JSON
// file, which has no lines.
func from(line int, dest string) string {
	if line > 0 {
		return fmt.Sprintf("line %d", line)
	}
	return dest
}

// vaultDuration is a Vault duration ("30s", or seconds as a number) as
// certkeeper writes it.
func vaultDuration(s string) string {
	if n, err := strconv.Atoi(s); err == nil {
		return (time.Duration(n) * time.Second).String()
	}
	return s
}

// certFor returns the certificate a call issues, made at its first use.
// Identical secret calls are one certificate in Vault Agent (it shares
// the request); pkiCert keeps one per destination.
func (c *converter) certFor(ca *call) (*certOut, string) {
	if cert := c.byCall[ca.id()]; cert != nil {
		return cert, ""
	}
	mount, role, _ := ca.issue()
	cert := &certOut{call: ca, mount: mount, role: role, files: map[string]*output{}}
	for _, p := range ca.params {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Sprintf("%s: parameter %q is not key=value", ca, p)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "common_name":
			cert.cn = v
		case "alt_names":
			cert.alt = splitList(v)
		case "ip_sans":
			cert.ips = splitList(v)
		case "uri_sans":
			cert.uris = splitList(v)
		case "ttl":
			cert.ttl = vaultDuration(v)
		case "format":
			if v != "pem" {
				cert.notes = append(cert.notes, fmt.Sprintf("format=%s: certkeeper writes PEM, one certificate or key per block", v))
			}
		case "private_key_format":
			if v != "pkcs8" && v != "der" {
				cert.notes = append(cert.notes, fmt.Sprintf("private_key_format=%s: certkeeper writes the key as PKCS#8 PEM", v))
			}
		case "exclude_cn_from_sans":
			cert.notes = append(cert.notes, "exclude_cn_from_sans: certkeeper's request names the common name among the DNS names; the role decides what the certificate carries")
		default:
			cert.notes = append(cert.notes, fmt.Sprintf("%s=%s is not translated: certkeeper asks Vault for the common name, alt_names, ip_sans, uri_sans and ttl only", k, v))
		}
	}
	if cert.cn == "" {
		return nil, fmt.Sprintf("%s has no common_name, which certkeeper needs", ca)
	}
	if ca.fn == "secret" {
		c.issuedWithSecret = true
	}
	cert.name = cert.cn
	for i := 2; slices.ContainsFunc(c.certs, func(o *certOut) bool { return o.name == cert.name }); i++ {
		cert.name = fmt.Sprintf("%s-%d", cert.cn, i)
	}
	c.byCall[ca.id()] = cert
	c.certs = append(c.certs, cert)
	return cert, ""
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// slotOf is the certkeeper file setting that writes exactly these fields,
// or the stock template that does, or nothing (a template of its own).
func slotOf(fields []string) (slot, stock string) {
	switch strings.Join(fields, "+") {
	case fCert:
		return "cert", ""
	case fKey:
		return "key", ""
	case fIssuer:
		return "chain", ""
	case fCAChain:
		return "ca", ""
	case fCert + "+" + fIssuer:
		return "fullchain", ""
	case fCert + "+" + fIssuer + "+" + fKey:
		return "", "haproxy"
	case fKey + "+" + fCert + "+" + fIssuer:
		return "", "bundle"
	}
	return "", ""
}

// place decides how certkeeper writes each of a certificate's files, and
// what that changes.
func (c *converter) place(cert *certOut) {
	for _, o := range cert.outputs {
		slot, stock := "", ""
		if o.plain {
			slot, stock = slotOf(o.fields)
		}
		if slot != "" && cert.files[slot] == nil {
			cert.files[slot] = o
			continue
		}
		o.stock = stock
		if o.plain && stock == "" {
			var b strings.Builder
			b.WriteString("{{ with certificate }}")
			for _, f := range o.fields {
				b.WriteString("{{ ." + strings.Join(certkeeperField[f], ".") + " }}")
			}
			b.WriteString("{{ end }}")
			o.text = b.String()
		}
		cert.templates = append(cert.templates, o)
	}
	c.modes(cert)
	c.groups(cert)
	// cert_file and key_file are required: write them beside the first
	// output when Vault Agent had no file of its own for them.
	dir := filepath.Dir(cert.outputs[0].path)
	for _, slot := range []string{"cert", "key"} {
		if cert.files[slot] != nil {
			continue
		}
		ext := map[string]string{"cert": ".crt", "key": ".key"}[slot]
		p := filepath.Join(dir, cert.name+ext)
		for i := 2; c.taken(p); i++ {
			p = filepath.Join(dir, fmt.Sprintf("%s-%d%s", cert.name, i, ext))
		}
		cert.files[slot] = &output{path: p, plain: true}
		cert.synthesizedFiles = append(cert.synthesizedFiles, p)
	}
	if len(cert.synthesizedFiles) > 0 {
		cert.notes = append(cert.notes, fmt.Sprintf("certkeeper always writes cert_file and key_file: %s %s new (Vault Agent had no such file)",
			strings.Join(cert.synthesizedFiles, " and "), map[bool]string{true: "is", false: "are"}[len(cert.synthesizedFiles) == 1]))
	}
}

// taken says whether any output of any certificate is p.
func (c *converter) taken(p string) bool {
	for _, cert := range c.certs {
		for _, o := range cert.outputs {
			if o.path == p {
				return true
			}
		}
		for _, o := range cert.files {
			if o.path == p {
				return true
			}
		}
	}
	return false
}

// modes carries Vault Agent's modes over, except that no file holding the
// key stays readable by every user, which certkeeper refuses.
func (c *converter) modes(cert *certOut) {
	cert.keyMode, cert.certMode = 0o600, 0o644
	safeKey := func(o *output) fs.FileMode {
		if o.mode&0o007 == 0 {
			return o.mode
		}
		cert.notes = append(cert.notes, fmt.Sprintf("%s holds the private key and Vault Agent wrote it %04o, readable by every user on the host; certkeeper writes it 0600 (0640 with a group) and refuses modes readable by all", o.path, o.mode))
		return 0o600
	}
	if k := cert.files["key"]; k != nil {
		cert.keyMode = safeKey(k)
	}
	first := ""
	for _, slot := range []string{"cert", "fullchain", "chain", "ca"} {
		o := cert.files[slot]
		if o == nil {
			continue
		}
		if first == "" {
			first, cert.certMode = o.path, o.mode
		} else if o.mode != cert.certMode {
			cert.notes = append(cert.notes, fmt.Sprintf("Vault Agent wrote %s %04o; certkeeper writes it with cert_mode, %04o like %s", o.path, o.mode, cert.certMode, first))
		}
	}
	for _, t := range cert.templates {
		if t.holdsKey() {
			t.mode = safeKey(t)
		}
	}
}

// groups carries group ownership over where this host knows the group,
// and says what happens to owners.
func (c *converter) groups(cert *certOut) {
	var seen []string
	for _, o := range cert.outputs {
		if o.user != "" && o.user != "root" && o.user != "0" {
			cert.notes = append(cert.notes, fmt.Sprintf("Vault Agent made %s owned by %s; certkeeper's files belong to the user it runs as (owner = %q needs CAP_CHOWN, which the packaged unit does not have)", o.path, o.user, o.user))
		}
		g := o.group
		if g == "" || g == "root" {
			continue
		}
		if !c.o.GroupExists(g) {
			cert.notes = append(cert.notes, fmt.Sprintf("Vault Agent gave %s the group %s, which does not exist on the host this ran on: set group = %q where it does", o.path, g, g))
			o.group = ""
			continue
		}
		if !slices.Contains(seen, g) {
			seen = append(seen, g)
		}
	}
	slotGroup := ""
	for _, slot := range []string{"key", "cert", "fullchain", "chain", "ca"} {
		if o := cert.files[slot]; o != nil && o.group != "" {
			if slotGroup == "" {
				slotGroup = o.group
			} else if o.group != slotGroup {
				cert.notes = append(cert.notes, fmt.Sprintf("%s had the group %s; certkeeper gives every file of a certificate one group, %s", o.path, o.group, slotGroup))
			}
		}
	}
	cert.group = slotGroup
	if cert.group != "" && cert.keyMode == 0o600 {
		if k := cert.files["key"]; k != nil && k.mode&0o070 != 0 {
			cert.keyMode = k.mode &^ 0o007
		}
	}
}
