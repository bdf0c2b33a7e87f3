package config

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// chunkSize is how much of a config is lexed at a time (see parseHCL).
var chunkSize = 64 << 10 // a variable so tests can cut at every line

// parseHCL parses src as hclparse.ParseHCL does, but a run of top-level
// items (about chunk bytes) at a time, and joins the bodies. hclsyntax
// lexes a whole file into tokens before it builds the syntax tree, and the
// tokens take more memory than the tree: for a config with 1,000
// certificates (440 KB) 6.7 MB of tokens on top of 5.5 MB of tree, so a
// config with 10,000 certificates needed over 120 MB at once just to be
// read. In pieces, only one piece's tokens are alive at a time.
//
// A piece ends where a line starts with an identifier, which is where every
// top-level item starts. Such a line can also sit inside a heredoc, a
// comment or an unindented nested block; the piece before it then does not
// parse on its own. So whenever a piece fails to parse, or two pieces set
// the same attribute, the whole file is parsed at once instead, and every
// diagnostic reads exactly as it always did.
func parseHCL(src []byte, filename string, chunk int) (*hcl.File, hcl.Diagnostics) {
	pieces := splitTopLevel(src, chunk)
	if len(pieces) < 2 {
		return hclparse.NewParser().ParseHCL(src, filename)
	}
	joined := &hclsyntax.Body{Attributes: hclsyntax.Attributes{}}
	var first, last *hclsyntax.Body
	for _, p := range pieces {
		f, diags := hclsyntax.ParseConfig(src[p.from:p.to], filename, p.pos)
		if diags.HasErrors() {
			return hclparse.NewParser().ParseHCL(src, filename)
		}
		body := f.Body.(*hclsyntax.Body)
		for name, attr := range body.Attributes {
			if _, dup := joined.Attributes[name]; dup {
				return hclparse.NewParser().ParseHCL(src, filename)
			}
			joined.Attributes[name] = attr
		}
		joined.Blocks = append(joined.Blocks, body.Blocks...)
		if first == nil {
			first = body
		}
		last = body
	}
	joined.SrcRange = hcl.RangeBetween(first.SrcRange, last.SrcRange)
	joined.EndRange = last.EndRange
	return &hcl.File{Body: joined, Bytes: src}, nil
}

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
