package vaultagent

import (
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/token"
)

// block is one object of a Vault Agent config (the file, a block's body,
// or an object value such as a method's config) read with HCL 1, the
// syntax Vault parses it with, in its HCL or JSON form. It remembers which
// keys were read, so everything else can be reported, never dropped.
type block struct {
	name   string // for messages: "template", "auto_auth > method"
	line   int
	labels []string
	items  []*ast.ObjectItem
	used   map[*ast.ObjectItem]bool
}

func parseFile(src []byte) (*block, error) {
	f, err := hcl.ParseBytes(src)
	if err != nil {
		return nil, err
	}
	list, ok := f.Node.(*ast.ObjectList)
	if !ok {
		return nil, fmt.Errorf("the file holds no object")
	}
	return &block{name: "top level", line: 1, items: list.Items, used: map[*ast.ObjectItem]bool{}}, nil
}

func keyText(k *ast.ObjectKey) string {
	if k.Token.Type == token.STRING {
		if s, ok := k.Token.Value().(string); ok {
			return s
		}
	}
	return k.Token.Text
}

func (b *block) child(name string, it *ast.ObjectItem, labels []string, items []*ast.ObjectItem) *block {
	full := name
	if b.name != "top level" {
		full = b.name + " > " + name
	}
	return &block{name: full, line: it.Pos().Line, labels: labels, items: items, used: map[*ast.ObjectItem]bool{}}
}

// blocks returns every block (or object value) named key, in order, with
// their labels; a JSON list of objects counts as that many blocks.
func (b *block) blocks(key string) []*block {
	var out []*block
	for _, it := range b.items {
		if len(it.Keys) == 0 || keyText(it.Keys[0]) != key {
			continue
		}
		b.used[it] = true
		var labels []string
		for _, k := range it.Keys[1:] {
			labels = append(labels, keyText(k))
		}
		switch v := it.Val.(type) {
		case *ast.ObjectType:
			out = append(out, b.child(key, it, labels, v.List.Items))
		case *ast.ListType:
			for _, e := range v.List {
				if o, ok := e.(*ast.ObjectType); ok {
					out = append(out, b.child(key, it, labels, o.List.Items))
				}
			}
		}
	}
	return out
}

// item returns the attribute key (one key, a value), marking it read.
func (b *block) item(key string) *ast.ObjectItem {
	for _, it := range b.items {
		if len(it.Keys) == 1 && keyText(it.Keys[0]) == key {
			if _, isObj := it.Val.(*ast.ObjectType); isObj {
				continue
			}
			b.used[it] = true
			return it
		}
	}
	return nil
}

// str is the string value of key; numbers and booleans are given as
// written.
func (b *block) str(key string) (string, int, bool) {
	it := b.item(key)
	if it == nil {
		return "", 0, false
	}
	lit, ok := it.Val.(*ast.LiteralType)
	if !ok {
		return "", it.Pos().Line, false
	}
	switch v := lit.Token.Value().(type) {
	case string:
		return v, it.Pos().Line, true
	default:
		return lit.Token.Text, it.Pos().Line, true
	}
}

// strs is a list of strings, or a single string as a list of one.
func (b *block) strs(key string) ([]string, int, bool) {
	it := b.item(key)
	if it == nil {
		return nil, 0, false
	}
	switch v := it.Val.(type) {
	case *ast.LiteralType:
		s, _, _ := b.str(key)
		return []string{s}, it.Pos().Line, true
	case *ast.ListType:
		var out []string
		for _, e := range v.List {
			if lit, ok := e.(*ast.LiteralType); ok {
				if s, ok := lit.Token.Value().(string); ok {
					out = append(out, s)
					continue
				}
				out = append(out, lit.Token.Text)
			}
		}
		return out, it.Pos().Line, true
	}
	return nil, it.Pos().Line, false
}

// str0 is str's value alone.
func (b *block) str0(key string) string {
	s, _, _ := b.str(key)
	return s
}

func (b *block) boolean(key string) (value, set bool) {
	s, _, ok := b.str(key)
	if !ok {
		return false, false
	}
	v, err := strconv.ParseBool(s)
	return v && err == nil, true
}

// mode reads a permission the way Vault Agent does: a string is octal
// ("0640"), a number is as HCL reads it (0640 is octal, 416 decimal).
func (b *block) mode(key string) (fs.FileMode, bool, error) {
	it := b.item(key)
	if it == nil {
		return 0, false, nil
	}
	lit, ok := it.Val.(*ast.LiteralType)
	if !ok {
		return 0, true, fmt.Errorf("%s is not a permission", key)
	}
	var n uint64
	var err error
	if lit.Token.Type == token.NUMBER {
		var i int64
		i, err = strconv.ParseInt(lit.Token.Text, 0, 64)
		n = uint64(i)
	} else {
		s, _ := lit.Token.Value().(string)
		n, err = strconv.ParseUint(s, 8, 32)
	}
	if err != nil || n > 0o7777 {
		return 0, true, fmt.Errorf("%s = %s is not a permission", key, lit.Token.Text)
	}
	return fs.FileMode(n), true, nil
}

// object is a nested object value (a method's config) as strings; nested
// objects and lists are left out and named in others.
func (b *block) object(key string) (values map[string]string, others []string, line int, ok bool) {
	bs := b.blocks(key)
	if len(bs) == 0 {
		return nil, nil, 0, false
	}
	c := bs[len(bs)-1]
	values = map[string]string{}
	for _, it := range c.items {
		k := keyText(it.Keys[0])
		if lit, isLit := it.Val.(*ast.LiteralType); isLit && len(it.Keys) == 1 {
			if s, isStr := lit.Token.Value().(string); isStr {
				values[k] = s
			} else {
				values[k] = lit.Token.Text
			}
			continue
		}
		others = append(others, k)
	}
	return values, others, c.line, true
}

// unused names every key nobody read, with its line, sorted by line.
func (b *block) unused() []keyAt {
	var out []keyAt
	for _, it := range b.items {
		if b.used[it] || len(it.Keys) == 0 {
			continue
		}
		var names []string
		for _, k := range it.Keys {
			names = append(names, keyText(k))
		}
		out = append(out, keyAt{key: strings.Join(names, " "), line: it.Pos().Line})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].line < out[j].line })
	return out
}

type keyAt struct {
	key  string
	line int
}
