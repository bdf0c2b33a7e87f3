package templates

import (
	"slices"
	"text/template/parse"
)

// UsesKey reports whether the template's output may hold the private key:
// whether its syntax tree reads the certificate's Key field, or hands the
// whole certificate value (which carries Key) to anything at all, be it
// output, a function (toJSON, base64Encode, printf, index, sprig_*), a
// pipeline or another template. What the functions do with it does not
// matter, so no wrapping hides the key. It is decided from the parsed
// template, not from a rendered sample: an encoded key does not look like
// a key in the output.
//
// The answer errs towards true: a Key field of anything (not only the
// certificate) counts, and a variable that ever holds the certificate is
// held to do so everywhere. It relies on the key being reachable only
// through Key and the whole value: every other field of Certificate is a
// string, a list of strings, a time or a number (TestOnlyKeyHoldsTheKey
// keeps it so).
func UsesKey(in Input) (bool, error) {
	trees, err := parseTrees(in)
	if err != nil {
		return false, err
	}
	return usesKey(trees), nil
}

func usesKey(trees map[string]*parse.Tree) bool {
	s := &keyScan{trees: trees, vars: map[string]bool{}}
	// A variable assigned later in a loop may be read earlier on the next
	// round, so scan until what is known about variables stops growing.
	for !s.found {
		before := len(s.vars)
		s.entered = map[string]bool{}
		// Every tree with a plain dot: the main one, and defined ones that
		// executeTemplate may run. Trees a template action passes the
		// certificate to are scanned again from that action.
		for _, name := range sortedNames(trees) {
			s.tree(name, false)
		}
		if len(s.vars) == before {
			break
		}
	}
	return s.found
}

func sortedNames(trees map[string]*parse.Tree) []string {
	names := make([]string, 0, len(trees))
	for n := range trees {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// keyScan walks a template and notes any use of the key. A value is
// "whole" when it may be the certificate value itself; dot and variables
// carry that along through with, range and assignments.
type keyScan struct {
	trees map[string]*parse.Tree
	// vars are the variables that may hold the whole certificate ("$"
	// included, once a template is entered with it as its data).
	vars map[string]bool
	// entered stops recursion through templates that call each other.
	entered map[string]bool
	found   bool
}

func (s *keyScan) tree(name string, dot bool) {
	key := name
	if dot {
		key += "\x00whole"
		s.vars["$"] = true
	}
	t := s.trees[name]
	if t == nil || s.entered[key] {
		return
	}
	s.entered[key] = true
	s.node(t.Root, dot)
}

func (s *keyScan) node(n parse.Node, dot bool) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			s.node(c, dot)
		}
	case *parse.ActionNode:
		// Without a declaration, an action prints its value.
		if s.pipe(n.Pipe, dot) && len(n.Pipe.Decl) == 0 {
			s.found = true
		}
	case *parse.IfNode:
		s.pipe(n.Pipe, dot)
		s.node(n.List, dot)
		s.node(n.ElseList, dot)
	case *parse.WithNode:
		s.node(n.List, s.pipe(n.Pipe, dot))
		s.node(n.ElseList, dot)
	case *parse.RangeNode:
		// The certificate is a struct, which range cannot iterate; one in
		// a range pipeline is refused outright rather than reasoned about.
		if s.pipeValue(n.Pipe, dot) {
			s.found = true
		}
		s.node(n.List, false)
		s.node(n.ElseList, dot)
	case *parse.TemplateNode:
		s.tree(n.Name, s.pipe(n.Pipe, dot))
	}
}

// pipe returns whether the pipeline's value may be the whole certificate,
// notes uses inside it, and marks the variables it declares or assigns.
func (s *keyScan) pipe(p *parse.PipeNode, dot bool) bool {
	whole := s.pipeValue(p, dot)
	if whole && p != nil {
		for _, v := range p.Decl {
			s.vars[v.Ident[0]] = true
		}
	}
	return whole
}

// pipeValue is pipe without declarations (range declares elements, not
// the value ranged over).
func (s *keyScan) pipeValue(p *parse.PipeNode, dot bool) bool {
	if p == nil {
		return false
	}
	whole := false
	for i, c := range p.Cmds {
		// The previous command's value is the last argument of this one.
		if i > 0 && whole {
			s.found = true
		}
		whole = s.command(c, dot)
	}
	return whole
}

// command returns whether the command's value may be the whole
// certificate. A command with arguments is a call: anything whole passed
// to it is a use, and what it returns is taken as not whole (if the
// certificate went in, the use is already noted).
func (s *keyScan) command(c *parse.CommandNode, dot bool) bool {
	if len(c.Args) == 0 {
		return false
	}
	if len(c.Args) == 1 {
		return s.arg(c.Args[0], dot)
	}
	for _, a := range c.Args {
		if s.arg(a, dot) {
			s.found = true
		}
	}
	return false
}

// arg returns whether an operand may be the whole certificate, and notes
// any Key field it reads.
func (s *keyScan) arg(n parse.Node, dot bool) bool {
	switch n := n.(type) {
	case *parse.IdentifierNode:
		// A function called without arguments; only one returns the
		// certificate.
		return n.Ident == "certificate"
	case *parse.DotNode:
		return dot
	case *parse.VariableNode:
		s.fields(n.Ident[1:])
		return len(n.Ident) == 1 && s.vars[n.Ident[0]]
	case *parse.FieldNode:
		s.fields(n.Ident)
		return false
	case *parse.ChainNode:
		// (certificate).Cert reads a field: only Key holds key material.
		s.arg(n.Node, dot)
		s.fields(n.Field)
		return false
	case *parse.PipeNode:
		return s.pipe(n, dot)
	}
	return false
}

func (s *keyScan) fields(names []string) {
	if slices.Contains(names, "Key") {
		s.found = true
	}
}
