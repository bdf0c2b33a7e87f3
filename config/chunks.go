package config

import (
	"reflect"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// chunkSize is how much of a config is lexed at a time (see decodeHCL).
var chunkSize = 64 << 10 // a variable so tests can cut at every line

// decodeHCL parses src and decodes it into a rawFile as gohcl.DecodeBody
// of the whole file does, but a run of top-level items (about chunk bytes)
// at a time. hclsyntax lexes a whole file into tokens before it builds the
// syntax tree, and both are large: for a config with 10,000 certificates
// (4.5 MB) the whole-file way held 82 MB at once (gctrace), more than the
// daemon then needs to keep every certificate. A piece is parsed, decoded
// and its syntax tree dropped before the next: of each block's body only
// where its attributes' values are is kept (positions), which is all the
// builder's messages need.
//
// A piece ends where a line starts with an identifier, which is where every
// top-level item starts. Such a line can also sit inside a heredoc, a
// comment or an unindented nested block; the piece before it then does not
// parse on its own. So whenever a piece fails to parse or decode, or two
// pieces set the same attribute or singular block, the whole file is
// parsed at once instead, and every diagnostic reads exactly as it always
// did.
func decodeHCL(src []byte, filename string, chunk int) (*rawFile, hcl.Diagnostics) {
	if pieces := splitTopLevel(src, chunk); len(pieces) >= 2 {
		if raw, ok := decodePieces(src, filename, pieces); ok {
			return raw, nil
		}
	}
	file, diags := hclparse.NewParser().ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, diags
	}
	var raw rawFile
	if diags := gohcl.DecodeBody(file.Body, nil, &raw); diags.HasErrors() {
		return nil, diags
	}
	return &raw, nil
}

// decodePieces decodes each piece on its own and merges them: blocks are
// appended in file order, an attribute or singular block comes from the
// piece that sets it, and raw.Body holds the top-level attributes. It
// reports false where the whole file must be decoded instead.
func decodePieces(src []byte, filename string, pieces []piece) (*rawFile, bool) {
	var raw *rawFile
	top := &hclsyntax.Body{Attributes: hclsyntax.Attributes{}}
	for _, p := range pieces {
		f, diags := hclsyntax.ParseConfig(src[p.from:p.to], filename, p.pos)
		if diags.HasErrors() {
			return nil, false
		}
		body := f.Body.(*hclsyntax.Body)
		part := &rawFile{}
		if diags := gohcl.DecodeBody(body, nil, part); diags.HasErrors() {
			return nil, false
		}
		keepPositions(reflect.ValueOf(part).Elem())
		if raw == nil {
			// The first piece also gives what gohcl sets for an attribute
			// no piece has (a null expression for an hcl.Expression).
			raw = part
			top.SrcRange = body.SrcRange
		} else if !mergePiece(raw, part, body, top) {
			return nil, false
		}
		for name, attr := range body.Attributes {
			top.Attributes[name] = attr
		}
		top.SrcRange = hcl.RangeBetween(top.SrcRange, body.SrcRange)
		top.EndRange = body.EndRange
	}
	raw.Body = top
	return raw, true
}

// mergePiece adds part, decoded from body, to raw.
func mergePiece(raw, part *rawFile, body, top *hclsyntax.Body) bool {
	rv, pv := reflect.ValueOf(raw).Elem(), reflect.ValueOf(part).Elem()
	for i := range pv.NumField() {
		name, kind, _ := strings.Cut(pv.Type().Field(i).Tag.Get("hcl"), ",")
		to, from := rv.Field(i), pv.Field(i)
		switch {
		case kind == "body":
		case kind == "block" && from.Kind() == reflect.Slice:
			to.Set(reflect.AppendSlice(to, from))
		case kind == "block":
			if from.IsNil() {
				continue
			}
			if !to.IsNil() {
				return false // the whole file's decode reports the duplicate
			}
			to.Set(from)
		default:
			if _, set := body.Attributes[name]; !set {
				continue
			}
			if _, dup := top.Attributes[name]; dup {
				return false
			}
			to.Set(from)
		}
	}
	return true
}

// keepPositions replaces every hcl.Body in v (a decoded raw value, walked
// through its structs, pointers and slices) with its positions.
func keepPositions(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			keepPositions(v.Elem())
		}
	case reflect.Slice:
		for i := range v.Len() {
			keepPositions(v.Index(i))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Field(i)
			if f.Type() == bodyType {
				if b, ok := f.Interface().(*hclsyntax.Body); ok {
					f.Set(reflect.ValueOf(positionsOf(b)))
				}
				continue
			}
			keepPositions(f)
		}
	}
}

var bodyType = reflect.TypeFor[hcl.Body]()

// positions stands in for a decoded block's body: where each attribute's
// value is, and where a missing one would go. Only valueRange and
// MissingItemRange read a body after decoding.
type positions struct {
	values  []namedRange
	missing hcl.Range
}

type namedRange struct {
	name string
	rng  hcl.Range
}

func positionsOf(b *hclsyntax.Body) *positions {
	p := &positions{values: make([]namedRange, 0, len(b.Attributes)), missing: b.MissingItemRange()}
	for name, attr := range b.Attributes {
		p.values = append(p.values, namedRange{name, attr.Expr.Range()})
	}
	return p
}

func (p *positions) valueRange(name string) (hcl.Range, bool) {
	for _, v := range p.values {
		if v.name == name {
			return v.rng, true
		}
	}
	return hcl.Range{}, false
}

var errDecoded = hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "internal error: this block's body was already decoded"}}

func (p *positions) Content(*hcl.BodySchema) (*hcl.BodyContent, hcl.Diagnostics) {
	return nil, errDecoded
}

func (p *positions) PartialContent(*hcl.BodySchema) (*hcl.BodyContent, hcl.Body, hcl.Diagnostics) {
	return nil, nil, errDecoded
}

func (p *positions) JustAttributes() (hcl.Attributes, hcl.Diagnostics) { return nil, errDecoded }

func (p *positions) MissingItemRange() hcl.Range { return p.missing }

type piece struct {
	from, to int
	pos      hcl.Pos // where the piece starts in the file
}

// splitTopLevel cuts src into pieces of at least chunk bytes, each ending
// just before a line that starts with an identifier.
func splitTopLevel(src []byte, chunk int) []piece {
	var out []piece
	cur := piece{pos: hcl.InitialPos}
	line := 1
	for i := 0; i < len(src); i++ {
		if src[i] != '\n' {
			continue
		}
		line++
		next := i + 1
		if next-cur.from < chunk || next >= len(src) || !identStart(src[next]) {
			continue
		}
		cur.to = next
		out = append(out, cur)
		cur = piece{from: next, pos: hcl.Pos{Line: line, Column: 1, Byte: next}}
	}
	cur.to = len(src)
	return append(out, cur)
}

func identStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}
