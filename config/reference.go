package config

import (
	_ "embed"
	"strings"
)

// referenceText is the one description of every config key: `certkeeper
// man` renders it into the man page, and a test fails when a key of the
// schema below is missing from it, or it names a key that does not exist.
//
//go:embed reference.txt
var referenceText string

// Reference is the config reference, parsed.
type Reference struct {
	// Intro holds the paragraphs before the first block.
	Intro    []string
	Sections []RefSection
}

// RefSection is one block of the config.
type RefSection struct {
	// Title is the block as written in the reference, such as
	// `certificate "NAME" > template`; "top level" for the file itself.
	Title string
	// Path names the block by its nesting, labels left out, such as
	// "certificate.template"; "" for the top level.
	Path string
	// Text says what the block is for (may be empty).
	Text string
	Keys []RefKey
}

// RefKey is one key of a block.
type RefKey struct {
	Name string // key_type
	Form string // key_type = "ec" | "rsa" | "ed25519"
	Text string
}

// LoadReference parses the embedded reference. Its format: "== TITLE"
// starts a block; a line at column 0 is a key and the form of its value;
// indented lines describe the key (or, before any key, the block); other
// lines before the first block are the introduction, in paragraphs.
func LoadReference() Reference {
	var ref Reference
	var para []string
	var sec *RefSection
	var key *RefKey
	flushIntro := func() {
		if len(para) > 0 {
			ref.Intro = append(ref.Intro, strings.Join(para, " "))
			para = nil
		}
	}
	add := func(dst *string, line string) {
		if *dst != "" {
			*dst += " "
		}
		*dst += strings.TrimSpace(line)
	}
	for _, line := range strings.Split(referenceText, "\n") {
		switch {
		case strings.HasPrefix(line, "== "):
			flushIntro()
			title := strings.TrimSpace(strings.TrimPrefix(line, "== "))
			ref.Sections = append(ref.Sections, RefSection{Title: title, Path: blockPath(title)})
			sec, key = &ref.Sections[len(ref.Sections)-1], nil
		case sec == nil:
			if strings.TrimSpace(line) == "" {
				flushIntro()
			} else {
				para = append(para, strings.TrimSpace(line))
			}
		case strings.TrimSpace(line) == "":
		case line[0] != ' ':
			name, _, _ := strings.Cut(line, " ")
			sec.Keys = append(sec.Keys, RefKey{Name: name, Form: strings.TrimSpace(line)})
			key = &sec.Keys[len(sec.Keys)-1]
		case key != nil:
			add(&key.Text, line)
		default:
			add(&sec.Text, line)
		}
	}
	flushIntro()
	return ref
}

// blockPath turns `certificate "NAME" > template` into
// "certificate.template".
func blockPath(title string) string {
	if title == "top level" {
		return ""
	}
	var parts []string
	for _, p := range strings.Split(title, ">") {
		if f := strings.Fields(p); len(f) > 0 {
			parts = append(parts, f[0])
		}
	}
	return strings.Join(parts, ".")
}
