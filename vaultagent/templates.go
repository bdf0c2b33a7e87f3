package vaultagent

import (
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template/parse"
)

// What a template prints from a certificate, named for what it holds.
const (
	fCert       = "cert"       // the leaf
	fKey        = "key"        // its private key
	fIssuer     = "issuing_ca" // the CA that signed the leaf
	fCAChain    = "ca_chain"   // the CAs from the issuer up to the root
	fSerial     = "serial"
	fExpiration = "expiration"
	fKeyType    = "key_type"
)

// certkeeperField is each one in certkeeper's template data (the value
// of its certificate function).
var certkeeperField = map[string][]string{
	fCert:       {"Cert"},
	fKey:        {"Key"},
	fIssuer:     {"Chain"},
	fCAChain:    {"CA"},
	fSerial:     {"Serial"},
	fExpiration: {"NotAfter", "Unix"},
	fKeyType:    {"KeyType"},
}

// call is one request to Vault that a template makes.
type call struct {
	fn     string // pkiCert or secret
	path   string
	params []string
	line   int
	// dest is the template's destination for pkiCert, which keeps its
	// certificate there: two templates with one pkiCert call get two
	// certificates. Identical secret calls share one.
	dest string
}

var (
	issuePath   = regexp.MustCompile(`^/?(.+)/issue/([^/]+)$`)
	caChainPath = regexp.MustCompile(`^/?(.+?)/(cert/)?ca_chain$`)
)

func (c *call) issue() (mount, role string, ok bool) {
	m := issuePath.FindStringSubmatch(c.path)
	if m == nil {
		return "", "", false
	}
	return strings.Trim(m[1], "/"), m[2], true
}

func (c *call) caChainMount() (string, bool) {
	if c.fn != "secret" {
		return "", false
	}
	m := caChainPath.FindStringSubmatch(c.path)
	if m == nil {
		return "", false
	}
	return strings.Trim(m[1], "/"), true
}

// id is what makes two calls the same certificate.
func (c *call) id() string {
	p := slices.Clone(c.params)
	slices.Sort(p)
	id := c.fn + "\x00" + strings.Trim(c.path, "/") + "\x00" + strings.Join(p, "\x00")
	if c.fn == "pkiCert" {
		id += "\x00" + c.dest
	}
	return id
}

func (c *call) String() string {
	q := []string{strconv.Quote(c.path)}
	for _, p := range c.params {
		q = append(q, strconv.Quote(p))
	}
	return c.fn + " " + strings.Join(q, " ")
}

// sideWrite is a writeToFile in a template: one more file, written while
// the template renders.
type sideWrite struct {
	path, user, group string
	mode              fs.FileMode
	appendTo          bool
	field             string
	line              int
}

// rendered is what a template does with certificates.
type rendered struct {
	issue   *call
	caChain *call // a read of the issue mount's CA chain, if any
	// problems say why the template cannot be translated at all.
	problems []string
	// plain: the destination gets nothing but fields (and white space),
	// in this order.
	plain  bool
	fields []string
	// text is the template rewritten for certkeeper's certificate
	// function, without its writeToFile actions.
	text  string
	sides []sideWrite
}

// analyse reads a Vault Agent template. dest is its destination.
func analyse(text, left, right, dest string, firstLine int) *rendered {
	r := &rendered{plain: true}
	if left == "" {
		left = "{{"
	}
	if right == "" {
		right = "}}"
	}
	t := parse.New("template")
	t.Mode = parse.ParseComments | parse.SkipFuncCheck
	set := map[string]*parse.Tree{}
	if _, err := t.Parse(text, left, right, set); err != nil {
		r.problems = append(r.problems, fmt.Sprintf("it does not parse: %v", err))
		return r
	}
	if len(set) > 1 {
		r.problems = append(r.problems, "it defines named templates ({{ define }}), which certkeeper's template blocks do not take from Vault Agent's")
	}
	w := &walker{r: r, dest: dest, line: firstLine}
	w.list(t.Root, nil, false)
	if r.issue == nil && len(r.problems) == 0 {
		r.problems = append(r.problems, "it issues no certificate (no pkiCert or secret \"<mount>/issue/<role>\"): certkeeper writes certificates, not other secrets")
	}
	if r.caChain != nil && r.issue != nil {
		cm, _ := r.caChain.caChainMount()
		im, _, _ := r.issue.issue()
		if cm != im {
			r.problems = append(r.problems, fmt.Sprintf("it reads the CA chain of %s but issues from %s", cm, im))
		}
	}
	if (left != "{{" || right != "}}") && (strings.Contains(text, "{{") || strings.Contains(text, "}}")) {
		r.problems = append(r.problems, "it uses its own delimiters and also contains {{ or }} as text")
	}
	r.text = t.Root.String()
	return r
}

type walker struct {
	r    *rendered
	dest string
	line int // of the template's first line in the config, for calls
}

func (w *walker) problem(format string, args ...any) {
	w.r.problems = append(w.r.problems, fmt.Sprintf(format, args...))
}

// other marks output that is more than certificate fields.
func (w *walker) other() { w.r.plain = false }

// list walks nodes with dot being the certificate of ctx (nil: none).
// Inside conditionals nothing is plain.
func (w *walker) list(l *parse.ListNode, ctx *call, cond bool) {
	if l == nil {
		return
	}
	for i, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			if strings.TrimSpace(string(n.Text)) != "" {
				w.other()
			}
		case *parse.CommentNode:
		case *parse.ActionNode:
			if w.action(n, ctx, cond) {
				// A writeToFile prints nothing where it stands.
				l.Nodes[i] = &parse.TextNode{NodeType: parse.NodeText}
			}
		case *parse.WithNode:
			w.with(n, ctx, cond)
		case *parse.RangeNode:
			if f, ok := w.rangeChain(n, ctx); ok {
				if !cond {
					w.r.fields = append(w.r.fields, f)
				} else {
					w.other()
				}
				l.Nodes[i] = fieldAction(f)
				continue
			}
			w.other()
			w.pipe(n.Pipe, ctx)
			w.list(n.List, nil, true)
			w.list(n.ElseList, ctx, true)
		case *parse.IfNode:
			w.other()
			w.pipe(n.Pipe, ctx)
			w.list(n.List, ctx, true)
			w.list(n.ElseList, ctx, true)
		case *parse.TemplateNode:
			w.problem("it includes another template ({{ template %q }})", n.Name)
		default:
			w.other()
		}
	}
}

// with handles {{ with pkiCert ... }} and {{ with secret ... }}.
func (w *walker) with(n *parse.WithNode, ctx *call, cond bool) {
	c, certificate := w.callOf(n.Pipe)
	if c == nil {
		w.other()
		w.pipe(n.Pipe, ctx)
		w.list(n.List, nil, true)
		w.list(n.ElseList, ctx, true)
		return
	}
	if !certificate {
		// Said once, for the call: what it prints does not matter.
		return
	}
	// The call becomes certkeeper's certificate function.
	n.Pipe.Cmds = []*parse.CommandNode{{NodeType: parse.NodeCommand, Args: []parse.Node{&parse.IdentifierNode{NodeType: parse.NodeIdentifier, Ident: "certificate"}}}}
	w.list(n.List, c, cond)
	if n.ElseList != nil {
		// What prints when Vault returned nothing; certkeeper never renders
		// without a certificate.
		for _, e := range n.ElseList.Nodes {
			if t, ok := e.(*parse.TextNode); !ok || strings.TrimSpace(string(t.Text)) != "" {
				w.other()
			}
		}
		n.ElseList = nil
	}
}

// callOf returns the Vault call a with-pipeline makes, recording it, or
// nil when it makes none; certificate is false for a call certkeeper
// cannot make (a problem is recorded).
func (w *walker) callOf(p *parse.PipeNode) (c *call, certificate bool) {
	if len(p.Decl) > 0 || len(p.Cmds) != 1 {
		return nil, false
	}
	cmd := p.Cmds[0]
	id, ok := cmd.Args[0].(*parse.IdentifierNode)
	if !ok || (id.Ident != "pkiCert" && id.Ident != "secret") {
		return nil, false
	}
	c = &call{fn: id.Ident, line: w.line}
	for i, a := range cmd.Args[1:] {
		s, ok := a.(*parse.StringNode)
		if !ok {
			w.problem("its %s call computes an argument when it renders (%s); certkeeper's config is static: write the value into the certificate block", id.Ident, a)
			return c, false
		}
		if i == 0 {
			c.path = s.Text
		} else {
			c.params = append(c.params, s.Text)
		}
	}
	if c.fn == "pkiCert" {
		c.dest = w.dest
	}
	if c.path == "" {
		w.problem("its %s call names no path", c.fn)
		return c, false
	}
	if _, _, ok := c.issue(); ok {
		w.setIssue(c)
		return c, true
	}
	if _, ok := c.caChainMount(); ok {
		w.r.caChain = c
		return c, true
	}
	if c.fn == "pkiCert" {
		w.problem("its pkiCert call %s is not <mount>/issue/<role>", c)
	} else {
		w.problem("it reads %s, which is not a certificate: certkeeper's templates see only the certificate it holds", c)
	}
	return c, false
}

func (w *walker) setIssue(c *call) {
	if w.r.issue != nil && w.r.issue.id() != c.id() {
		w.problem("it renders two certificates (%s and %s): certkeeper renders one per template; split it", w.r.issue, c)
		return
	}
	w.r.issue = c
}

// action handles {{ ... }}; it reports whether the action is a writeToFile
// that was taken out.
func (w *walker) action(n *parse.ActionNode, ctx *call, cond bool) bool {
	p := n.Pipe
	if len(p.Decl) == 0 && len(p.Cmds) == 2 && ctx != nil && !cond {
		if id, ok := p.Cmds[1].Args[0].(*parse.IdentifierNode); ok && id.Ident == "writeToFile" {
			w.writeToFile(p, ctx)
			return true
		}
	}
	if len(p.Decl) == 0 && len(p.Cmds) == 1 && ctx != nil {
		if f, ok := p.Cmds[0].Args[0].(*parse.FieldNode); ok && len(p.Cmds[0].Args) == 1 {
			name := w.field(f, ctx)
			if name == fCAChain && w.isIssue(ctx) && ctx.fn == "secret" {
				w.problem("it prints .Data.ca_chain, a list, as Go formats it")
			}
			switch name {
			case fCert, fKey, fIssuer, fCAChain:
				if !cond {
					w.r.fields = append(w.r.fields, name)
					return false
				}
			}
			w.other()
			return false
		}
	}
	w.other()
	w.pipe(p, ctx)
	return false
}

func (w *walker) isIssue(c *call) bool {
	_, _, ok := c.issue()
	return ok
}

// writeToFile reads {{ .X | writeToFile "path" "user" "group" "mode"
// ["flags"] }}.
func (w *walker) writeToFile(p *parse.PipeNode, ctx *call) {
	f, ok := p.Cmds[0].Args[0].(*parse.FieldNode)
	if !ok || len(p.Cmds[0].Args) != 1 {
		w.problem("it writes something other than a certificate field with writeToFile (%s)", p)
		return
	}
	field := w.field(f, ctx)
	var args []string
	for _, a := range p.Cmds[1].Args[1:] {
		s, ok := a.(*parse.StringNode)
		if !ok {
			w.problem("a writeToFile argument is computed when it renders (%s)", a)
			return
		}
		args = append(args, s.Text)
	}
	if len(args) < 4 || len(args) > 5 {
		w.problem("writeToFile takes a path, a user, a group, a mode and optional flags, not %s", p)
		return
	}
	mode, err := strconv.ParseUint(args[3], 8, 32)
	if err != nil {
		w.problem("writeToFile mode %q is not octal", args[3])
		return
	}
	sw := sideWrite{path: args[0], user: args[1], group: args[2], mode: fs.FileMode(mode), field: field, line: w.line}
	if len(args) == 5 {
		sw.appendTo = strings.Contains(args[4], "append")
	}
	switch field {
	case fCert, fKey, fIssuer, fCAChain:
	default:
		w.problem("it writes %s to %s with writeToFile, which is not a PEM file certkeeper writes", field, sw.path)
		return
	}
	w.r.sides = append(w.r.sides, sw)
}

// rangeChain recognises {{ range .Data.ca_chain }}{{ . }}{{ end }} (and
// .CAChain for pkiCert): the chain, one certificate after the other.
func (w *walker) rangeChain(n *parse.RangeNode, ctx *call) (string, bool) {
	if ctx == nil || n.ElseList != nil || len(n.Pipe.Decl) > 0 || len(n.Pipe.Cmds) != 1 || len(n.Pipe.Cmds[0].Args) != 1 {
		return "", false
	}
	f, ok := n.Pipe.Cmds[0].Args[0].(*parse.FieldNode)
	if !ok {
		return "", false
	}
	ident := f.Ident
	if ctx.fn == "pkiCert" && len(ident) == 2 && ident[0] == "Data" {
		ident = ident[1:]
	}
	isChain := (ctx.fn == "pkiCert" && slices.Equal(ident, []string{"CAChain"})) ||
		(ctx.fn == "secret" && slices.Equal(ident, []string{"Data", "ca_chain"}))
	if !isChain {
		return "", false
	}
	dots := 0
	for _, b := range n.List.Nodes {
		switch b := b.(type) {
		case *parse.TextNode:
			if strings.TrimSpace(string(b.Text)) != "" {
				return "", false
			}
		case *parse.ActionNode:
			if len(b.Pipe.Cmds) != 1 || len(b.Pipe.Cmds[0].Args) != 1 || b.Pipe.Cmds[0].Args[0].Type() != parse.NodeDot {
				return "", false
			}
			dots++
		default:
			return "", false
		}
	}
	return fCAChain, dots == 1
}

func fieldAction(f string) *parse.ActionNode {
	return &parse.ActionNode{NodeType: parse.NodeAction, Pipe: &parse.PipeNode{NodeType: parse.NodePipe,
		Cmds: []*parse.CommandNode{{NodeType: parse.NodeCommand, Args: []parse.Node{&parse.FieldNode{NodeType: parse.NodeField, Ident: certkeeperField[f]}}}}}}
}

// field names what .X is under ctx and rewrites it to certkeeper's name.
func (w *walker) field(f *parse.FieldNode, ctx *call) string {
	if ctx == nil {
		w.problem("it uses %s outside of a certificate", f)
		return ""
	}
	ident := f.Ident
	var name string
	switch {
	case ctx.fn == "pkiCert":
		if len(ident) == 2 && ident[0] == "Data" {
			ident = ident[1:]
		}
		if len(ident) == 1 {
			name = map[string]string{"Cert": fCert, "Key": fKey, "CA": fIssuer}[ident[0]]
		}
	case w.isIssue(ctx):
		if len(ident) == 2 && ident[0] == "Data" {
			name = map[string]string{"certificate": fCert, "private_key": fKey, "issuing_ca": fIssuer, "ca_chain": fCAChain,
				"serial_number": fSerial, "expiration": fExpiration, "private_key_type": fKeyType}[ident[1]]
		}
	default: // the mount's CA chain: a string
		if len(ident) == 2 && ident[0] == "Data" && (ident[1] == "ca_chain" || ident[1] == "certificate") {
			name = fCAChain
		}
	}
	if name == "" {
		w.problem("it uses %s, which certkeeper's certificate has no equivalent of", f)
		return ""
	}
	f.Ident = slices.Clone(certkeeperField[name])
	return name
}

// pipe walks what a pipeline uses: fields of ctx are rewritten, and any
// function certkeeper refuses in templates is a problem.
func (w *walker) pipe(p *parse.PipeNode, ctx *call) {
	if p == nil {
		return
	}
	for _, cmd := range p.Cmds {
		for _, a := range cmd.Args {
			w.node(a, ctx)
		}
	}
}

func (w *walker) node(n parse.Node, ctx *call) {
	switch n := n.(type) {
	case *parse.FieldNode:
		w.field(n, ctx)
	case *parse.IdentifierNode:
		if why, denied := deniedFunction(n.Ident); denied {
			w.problem("it calls %s: %s", n.Ident, why)
		}
	case *parse.PipeNode:
		w.pipe(n, ctx)
	case *parse.ChainNode:
		w.node(n.Node, ctx)
	case *parse.VariableNode:
		if len(n.Ident) > 1 && n.Ident[0] == "$" {
			w.problem("it reaches the certificate through $ (%s)", n)
		}
	}
}
