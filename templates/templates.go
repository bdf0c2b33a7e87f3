// Package templates renders a certificate certkeeper holds into the formats
// other programs read (HAProxy's combined PEM, key+cert bundles, JSON, or
// anything a user writes), with consul-template's engine so the syntax and
// helper functions are the ones Vault Agent users already know.
//
// A template sees one thing: the certificate, through the `certificate`
// function. Functions that would reach Vault, Consul or Nomad, read or
// write files, or run programs are disabled, so a template can never fetch
// or write anything by itself: its output goes back to the agent, which
// writes it in the same atomic set as the key it contains.
//
// This package touches neither disk nor network.
package templates

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template/parse"
	"time"

	// This import links the Consul and Nomad API clients (about 2.1 MB of
	// the stripped binary), and nothing here can drop them: v0.41 has no
	// build tag for them, the package imports consul/api itself
	// (funcs.go) and through dependency (client_set.go), and funcMap
	// names every Consul and Nomad function whatever is denied, so the
	// linker must keep them. Only a fork would drop them; see issue 18.
	ctemplate "github.com/hashicorp/consul-template/template"
)

// Input is a template's text and how to read it.
type Input struct {
	// Name identifies the template in messages (its source path, or
	// "stock haproxy").
	Name string
	Text string
	// LeftDelim and RightDelim default to "{{" and "}}".
	LeftDelim, RightDelim string
}

// Error is a problem at a line of a template.
type Error struct {
	Line int // 0 when the engine did not say
	Msg  string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// Render executes the template with cert as the value of `certificate`.
// Errors carry the template's line and expression (as *Error) and never
// the data being rendered: see renderError.
func Render(in Input, cert Certificate) ([]byte, error) {
	out, err := execute(in, cert)
	if err != nil {
		return nil, renderError(in, cert, err)
	}
	return out, nil
}

// execute runs the engine; its errors are the engine's own, which may
// quote the data.
func execute(in Input, cert Certificate) ([]byte, error) {
	if strings.TrimSpace(in.Text) == "" {
		return nil, &Error{Msg: "template is empty"}
	}
	t, err := ctemplate.NewTemplate(&ctemplate.NewTemplateInput{
		Contents:   in.Text,
		LeftDelim:  in.LeftDelim,
		RightDelim: in.RightDelim,
		ExtFuncMap: funcs(cert),
	})
	if err != nil {
		// A parse error quotes the template, never data.
		return nil, fmt.Errorf("loading template: %w", err)
	}
	// A fresh, empty brain: no function that could fill it is enabled.
	res, err := t.Execute(&ctemplate.ExecuteInput{Brain: ctemplate.NewBrain()})
	if err != nil {
		return nil, errExecute{err}
	}
	return res.Output, nil
}

// errExecute marks an engine error raised while running the template,
// which may quote the data being rendered.
type errExecute struct{ err error }

func (e errExecute) Error() string { return e.err.Error() }

// renderError makes an error from a failed render safe to log and to show
// in status. The engine's message for a failure at run time can quote the
// data: a function that fails quotes its argument (parseInt, timestamp,
// sprig_fail, ...), and so do range and with ("range can't iterate over
// <value>"), in any encoding the template applied first. So the message of
// a run-time failure is never passed on. The template is run again
// against the sample certificate validate uses, whose PEM fields are
// placeholders: if it fails at the same line and expression, that message
// (which can only quote the sample) explains the failure; if not, the
// failure depends on the real data and only its place is told.
func renderError(in Input, cert Certificate, err error) error {
	var ee errExecute
	if !errors.As(err, &ee) {
		return err
	}
	got := engineError(ee.err).(*Error)
	line, expr, ok := engineWhere(ee.err)
	if !ok {
		return &Error{Line: got.Line, Msg: "rendering failed; the engine's message is withheld because it may quote the certificate or its key"}
	}
	sample := Certificate{Name: cert.Name, CommonName: cert.CommonName, DNSNames: cert.DNSNames, IPSANs: cert.IPSANs,
		URISANs: cert.URISANs, KeyType: cert.KeyType, KeyBits: cert.KeyBits,
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter}.withPlaceholders(cert.NotBefore)
	if _, serr := execute(in, sample); serr != nil && errors.As(serr, &ee) {
		if sline, sexpr, ok := engineWhere(ee.err); ok && sline == line && sexpr == expr {
			msg := engineError(ee.err).(*Error).Msg
			if msg != got.Msg {
				// It quotes the sample where the real one quoted data.
				msg += " (as rendered against validate's sample certificate)"
			}
			return &Error{Line: line, Msg: msg}
		}
	}
	msg := "failed on this certificate's data; the engine's message is withheld because it may quote the certificate or its key"
	if expr != "" {
		msg = "at " + expr + ": " + msg
	}
	return &Error{Line: line, Msg: msg}
}

// CheckResult is what Check learnt from the template.
type CheckResult struct {
	// IncludesKey is true when the output may hold the private key, in
	// any encoding, so the file must not be readable by every user. It
	// comes from the syntax tree (UsesKey), not from the dry run's output.
	IncludesKey bool
}

// Check finds what would make the template fail: a syntax error, a
// disabled function (anywhere, even in a branch the dry run does not
// take), an unknown function, or a field the certificate does not have. It
// renders the template once against sample, a certificate shaped like the
// one the config asks for, whose PEM fields are placeholders.
func Check(in Input, sample Certificate) (CheckResult, error) {
	return check(in, sample, time.Now())
}

// check is Check with the clock that dates the placeholders.
func check(in Input, sample Certificate, now time.Time) (CheckResult, error) {
	if strings.TrimSpace(in.Text) == "" {
		return CheckResult{}, &Error{Msg: "template is empty"}
	}
	trees, err := parseTrees(in)
	if err != nil {
		return CheckResult{}, err
	}
	var errs []error
	for _, t := range trees {
		walk(t.Root, func(n parse.Node) {
			id, ok := n.(*parse.IdentifierNode)
			if !ok {
				return
			}
			if why, denied := deniedReason(id.Ident); denied {
				errs = append(errs, &Error{Line: lineOf(t, n), Msg: fmt.Sprintf("function %q is disabled: %s", id.Ident, why)})
			}
		})
	}
	if len(errs) > 0 {
		return CheckResult{}, errors.Join(errs...)
	}
	if _, err := Render(in, sample.withPlaceholders(now)); err != nil {
		return CheckResult{}, err
	}
	return CheckResult{IncludesKey: usesKey(trees)}, nil
}

// parseTrees parses without checking function names: the engine knows the
// names, and the dry run reports unknown ones. This parse exists to see
// every function a template names, taken branch or not.
func parseTrees(in Input) (map[string]*parse.Tree, error) {
	t := parse.New("")
	t.Mode = parse.SkipFuncCheck | parse.ParseComments
	trees := map[string]*parse.Tree{}
	if _, err := t.Parse(in.Text, in.LeftDelim, in.RightDelim, trees); err != nil {
		return nil, engineError(err)
	}
	return trees, nil
}

func walk(n parse.Node, fn func(parse.Node)) {
	if n == nil {
		return
	}
	fn(n)
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walk(c, fn)
		}
	case *parse.ActionNode:
		walk(n.Pipe, fn)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walk(c, fn)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walk(a, fn)
		}
	case *parse.ChainNode:
		walk(n.Node, fn)
	case *parse.IfNode:
		walkBranch(&n.BranchNode, fn)
	case *parse.RangeNode:
		walkBranch(&n.BranchNode, fn)
	case *parse.WithNode:
		walkBranch(&n.BranchNode, fn)
	case *parse.TemplateNode:
		walk(n.Pipe, fn)
	}
}

func walkBranch(b *parse.BranchNode, fn func(parse.Node)) {
	walk(b.Pipe, fn)
	if b.List != nil {
		walk(b.List, fn)
	}
	if b.ElseList != nil {
		walk(b.ElseList, fn)
	}
}

func lineOf(t *parse.Tree, n parse.Node) int {
	loc, _ := t.ErrorContext(n)
	// loc is "name:line:col"; the name is empty here.
	parts := strings.Split(loc, ":")
	if len(parts) >= 3 {
		line, _ := strconv.Atoi(parts[len(parts)-2])
		return line
	}
	return 0
}

// engineRx takes apart text/template's messages, which consul-template
// wraps in "parse: " or "execute: ": "template: NAME:LINE[:COL]: [executing
// "NAME" at <EXPR>: ]MESSAGE".
var engineRx = regexp.MustCompile(`(?s)^(?:parse: |execute: )?template: [^:]*:(\d+)(?::\d+)?: (?:executing "[^"]*" at (<.*?>): )?(.*)$`)

// engineWhere is the line and expression (as the template spells it, so
// without data) an engine error names.
func engineWhere(err error) (line int, expr string, ok bool) {
	m := engineRx.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, "", false
	}
	line, _ = strconv.Atoi(m[1])
	return line, m[2], true
}

// engineError rewords an engine error as an *Error with the template's
// own line, without the template's internal name.
func engineError(err error) error {
	m := engineRx.FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{Msg: err.Error()}
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[3]
	if m[2] != "" {
		msg = "at " + m[2] + ": " + msg
	}
	return &Error{Line: line, Msg: msg}
}
