package main

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"
)

// What status prints comes partly from outside: Vault's error messages,
// the output of a service's check or reload command, a CA's subject, the
// files on disk. A terminal escape in any of them would act on the
// operator's terminal (move the cursor, rewrite earlier lines, change the
// title) and could make a table say something it does not. So every
// string status prints, as text or JSON, is cleaned first: tabs and line
// breaks become spaces, other control characters and the Unicode marks
// that reorder text are shown escaped (\x1b, \u202e), visible rather than
// obeyed.

// clean returns s safe to print on a terminal.
func clean(s string) string {
	if !needsCleaning(s) {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, s[i]) // a byte that is not UTF-8
		case r == '\t' || r == '\n' || r == '\r':
			b.WriteByte(' ')
		case r < 0x80 && unicode.IsControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unicode.IsControl(r) || reorders(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func needsCleaning(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if unicode.IsControl(r) || reorders(r) {
			return true
		}
	}
	return false
}

// reorders reports the Unicode bidirectional controls, which make a
// terminal show text in another order than it has.
func reorders(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

// cleanAll cleans, in place, every exported string reachable from v (a
// pointer), and every error, which it replaces by one with a clean text.
func cleanAll(v any) { cleanValue(reflect.ValueOf(v)) }

var errorType = reflect.TypeFor[error]()

func cleanValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			cleanValue(v.Elem())
		}
	case reflect.Interface:
		if !v.IsNil() && v.Type() == errorType && v.CanSet() {
			v.Set(reflect.ValueOf(errors.New(clean(v.Interface().(error).Error()))))
		}
	case reflect.String:
		if v.CanSet() {
			v.SetString(clean(v.String()))
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			cleanValue(v.Index(i))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				cleanValue(v.Field(i))
			}
		}
	}
}
