package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Template is one output file rendered from the certificate with a
// consul-template template.
type Template struct {
	// Source is the file the template was read from at load, for watching;
	// empty for inline contents and stock templates.
	Source string
	// Stock names the built-in template used, if any.
	Stock string
	// Text is the template itself, whatever its origin. It is read once,
	// at load, so a template that changes on disk takes effect only
	// through a reload, and only once it has been validated.
	Text                  string
	LeftDelim, RightDelim string
	Destination           string
	Mode                  fs.FileMode
	// UID and GID default to the certificate's owner and group.
	UID, GID int
}

// TemplateChecker checks template blocks while a config loads; the
// templates package has the real one (templates.Checker). config does not
// import it, so reading a config never links the template engine.
type TemplateChecker interface {
	// Stock returns the text of the built-in template name.
	Stock(name string) (text string, ok bool)
	// StockNames lists the built-in templates, for the message naming them.
	StockNames() []string
	// Check renders t once for c, the certificate block it belongs to,
	// with placeholders for what only issuance tells. It reports whether
	// the output holds the private key. Its error joins one error per
	// problem, each naming the template's own line.
	Check(t Template, c Certificate) (includesKey bool, err error)
}

// Options are what Load and Parse take from their caller.
type Options struct {
	// Templates checks template blocks; with none, a config that has one
	// is refused.
	Templates TemplateChecker
	// Credentials refuses a missing credential or CA file of the vault
	// block (validate; see credentials).
	Credentials bool
	// WebConfig checks telemetry's web_config_file; with none, a config
	// that names one is refused.
	WebConfig WebConfigChecker
}

// DefaultTemplateMode is private: template outputs usually hold the key.
const DefaultTemplateMode = fs.FileMode(0o600)

// maxTemplateSize keeps a wrong source path from being slurped whole.
const maxTemplateSize = 1 << 20

// OutputPaths are every file the certificate's set writes, besides the
// record in the state directory.
func (c Certificate) OutputPaths() []string {
	var out []string
	for _, p := range []string{c.Files.Cert, c.Files.Key, c.Files.Chain, c.Files.Fullchain, c.Files.CA, c.Files.PKCS12} {
		if p != "" {
			out = append(out, p)
		}
	}
	for _, t := range c.Templates {
		if t.Destination != "" {
			out = append(out, t.Destination)
		}
	}
	return out
}

// InputPaths are the files the config reads besides itself: template
// sources and PKCS#12 password files, which a running agent watches.
func (c *Config) InputPaths() []string {
	var out []string
	for _, cert := range c.Certificates {
		for _, t := range cert.Templates {
			if t.Source != "" {
				out = append(out, t.Source)
			}
		}
		if cert.PKCS12PasswordFile != "" {
			out = append(out, cert.PKCS12PasswordFile)
		}
	}
	return out
}

// formats builds c's template and PKCS#12 outputs. Templates are read and
// checked here, with a dry run against a certificate shaped like the one
// c asks for, so that a template that cannot render is a validate error,
// not a failed renewal.
func (b *builder) formats(rc *rawCertificate, c *Certificate) {
	at := func(name string) hcl.Range { return valueRange(rc.Body, name, rc.DefRange) }
	c.Files.PKCS12 = b.path(rc.PKCS12File)
	c.PKCS12PasswordFile = b.path(rc.PKCS12PasswordFile)
	if c.PKCS12PasswordFile != "" {
		if c.Files.PKCS12 == "" {
			b.fail(at("pkcs12_password_file"), "pkcs12_password_file is set but pkcs12_file is not")
		} else if info, err := os.Stat(c.PKCS12PasswordFile); err != nil || !info.Mode().IsRegular() {
			b.fail(at("pkcs12_password_file"), "pkcs12_password_file %s is not a readable file", rc.PKCS12PasswordFile)
		}
	}

	own := c.OutputPaths()
	for i := range rc.Templates {
		t, ok := b.template(&rc.Templates[i], c)
		if !ok {
			continue
		}
		if slices.Contains(own, t.Destination) {
			b.fail(valueRange(rc.Templates[i].Body, "destination", rc.Templates[i].DefRange), "template destination %s is already an output of this certificate", rc.Templates[i].Destination)
			continue
		}
		own = append(own, t.Destination)
		c.Templates = append(c.Templates, t)
	}
}

func (b *builder) template(rt *rawTemplate, c *Certificate) (Template, bool) {
	at := func(name string) hcl.Range { return valueRange(rt.Body, name, rt.DefRange) }
	t := Template{
		Destination: b.path(rt.Destination),
		Mode:        DefaultTemplateMode,
		UID:         c.UID,
		GID:         c.GID,
		LeftDelim:   rt.LeftDelimiter,
		RightDelim:  rt.RightDelimiter,
		Stock:       rt.Stock,
	}
	ok := true
	if t.Destination == "" {
		b.fail(at("destination"), "destination must not be empty")
		ok = false
	}
	if rt.Mode != "" {
		t.Mode = b.mode(at("mode"), "mode", rt.Mode)
	}
	if rt.Owner != "" {
		t.UID = b.lookupUser(at("owner"), rt.Owner)
	}
	if rt.Group != "" {
		t.GID = b.lookupGroup(at("group"), rt.Group)
	}

	given := 0
	for _, v := range []string{rt.Source, rt.Contents, rt.Stock} {
		if v != "" {
			given++
		}
	}
	if given != 1 {
		b.fail(rt.DefRange, "a template needs exactly one of source, contents or stock")
		return t, false
	}
	check := b.opts.Templates
	if check == nil {
		b.fail(rt.DefRange, "templates cannot be checked here (no template checker given to the config loader)")
		return t, false
	}
	// where is how messages name the template: as the user wrote it.
	var where string
	var whereRange hcl.Range
	switch {
	case rt.Source != "":
		where, whereRange = fmt.Sprintf("template source %q", rt.Source), at("source")
		t.Source = b.path(rt.Source)
		text, err := readTemplate(t.Source)
		if err != nil {
			b.fail(whereRange, "%s: %v", where, err)
			return t, false
		}
		t.Text = text
	case rt.Contents != "":
		where, whereRange = "template contents", at("contents")
		t.Text = rt.Contents
	default:
		where, whereRange = fmt.Sprintf("stock template %q", rt.Stock), at("stock")
		text, found := check.Stock(rt.Stock)
		if !found {
			b.fail(whereRange, "stock template %q does not exist (stock templates: %s)", rt.Stock, strings.Join(check.StockNames(), ", "))
			return t, false
		}
		if t.LeftDelim != "" || t.RightDelim != "" {
			b.fail(rt.DefRange, "left_delimiter and right_delimiter do not apply to stock templates")
			return t, false
		}
		t.Text = text
	}

	includesKey, err := check.Check(t, *c)
	if err != nil {
		// Each problem is its own line, at the config, with the
		// template's own line in the message.
		var joined interface{ Unwrap() []error }
		errs := []error{err}
		if errors.As(err, &joined) {
			errs = joined.Unwrap()
		}
		for _, e := range errs {
			b.fail(whereRange, "%s: %v", where, e)
		}
		return t, false
	}
	if includesKey && t.Mode&0o007 != 0 && rt.Mode != "" {
		b.fail(at("mode"), "mode %s would let every user on the host read this template's output, which includes the private key; use 0600 or 0640", rt.Mode)
		ok = false
	}
	return t, ok
}

func readTemplate(path string) (string, error) {
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", errors.New("file does not exist")
	}
	if err != nil {
		return "", err
	}
	if !info.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	if info.Size() > maxTemplateSize {
		return "", fmt.Errorf("%d bytes is more than a template can be (limit %d)", info.Size(), maxTemplateSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return string(data), nil
}
