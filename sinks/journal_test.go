package sinks

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// plantJournal writes a journal naming renames, as whoever can write the
// state directory could.
func plantJournal(t *testing.T, path string, renames ...rename) {
	t.Helper()
	data, _ := json.Marshal(renames)
	os.MkdirAll(filepath.Dir(path), 0o700)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestJournalRenamesOnlyWithinItsSet: a crash journal is replayed only if
// every rename in it is one a write of that set makes: certkeeper's temp
// file for a destination, beside it, onto it; or a destination onto its
// own aside name. A journal with any other rename (onto a file outside
// the set, from a file that is not such a temp, across directories) is
// refused whole, the error names the files and their owners, and nothing
// at all is renamed, not even the renames that were allowed.
func TestJournalRenamesOnlyWithinItsSet(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(t.TempDir(), "state")
	elsewhere := t.TempDir()
	key, crt, chain := filepath.Join(dir, "web.key"), filepath.Join(dir, "web.crt"), filepath.Join(dir, "chain.pem")
	dests := []string{key, crt, chain}
	victim := filepath.Join(dir, "victim")
	temp := func(dest string) string { return filepath.Join(filepath.Dir(dest), tempPrefix(dest)+"77") }
	cases := []struct {
		name   string
		bad    rename
		naming string // a path the error must name, with its owner
	}{
		{"onto a file outside the set", rename{From: temp(victim), To: victim}, victim},
		{"from a file that is not a temp", rename{From: filepath.Join(dir, "evil"), To: key}, filepath.Join(dir, "evil")},
		{"another destination's temp", rename{From: temp(crt), To: key}, temp(crt)},
		{"a temp from another directory", rename{From: temp(filepath.Join(elsewhere, "web.key")), To: key}, temp(filepath.Join(elsewhere, "web.key"))},
		{"the bare temp prefix", rename{From: filepath.Join(dir, tempPrefix(key)), To: key}, filepath.Join(dir, tempPrefix(key))},
		{"a destination aside to another name", rename{From: chain, To: filepath.Join(dir, "victim")}, victim},
		{"a file outside the set aside", rename{From: victim, To: filepath.Join(dir, tempPrefix(victim)+"removed")}, victim},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, p := range []string{key, crt, chain, victim, temp(key), temp(crt), temp(victim), c.bad.From} {
				os.MkdirAll(filepath.Dir(p), 0o755)
				os.WriteFile(p, []byte("was "+filepath.Base(p)), 0o600)
			}
			journal := filepath.Join(state, "web.journal")
			// One allowed rename first: it must not happen either.
			plantJournal(t, journal, rename{From: temp(key), To: key}, c.bad)
			err := Recover(journal, dests)
			var foreign *ForeignRenameError
			if !errors.As(err, &foreign) {
				t.Fatalf("err = %v, want a ForeignRenameError", err)
			}
			want := c.naming + " (owned by " + DescribeUID(os.Geteuid()) + ")"
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "nothing was renamed") || !strings.Contains(err.Error(), journal) {
				t.Errorf("error %q does not name %q, the journal, and that nothing was renamed", err, want)
			}
			for _, p := range []string{key, crt, chain, victim, temp(key), temp(crt), temp(victim), c.bad.From} {
				if got, err := os.ReadFile(p); err != nil || string(got) != "was "+filepath.Base(p) {
					t.Errorf("%s now holds %q (%v): something was renamed", p, got, err)
				}
			}
			if _, err := os.Stat(journal); err != nil {
				t.Error("the refused journal was removed: the operator must see it")
			}
		})
	}
}

// TestJournalNamingShadowIsRefused: a journal planted to rename a file
// over /etc/shadow is refused, naming /etc/shadow and its owner. (The
// source does not exist, so even a certkeeper that trusted the journal
// would rename nothing here: the test is safe to run as root.)
func TestJournalNamingShadowIsRefused(t *testing.T) {
	if _, err := os.Lstat("/etc/shadow"); err != nil {
		t.Skip("no /etc/shadow on this machine")
	}
	journal := filepath.Join(t.TempDir(), "web.journal")
	plantJournal(t, journal, rename{From: "/etc/.shadow" + tempMarker + "planted-and-absent", To: "/etc/shadow"})
	err := Recover(journal, []string{filepath.Join(t.TempDir(), "web.key")})
	if err == nil || !strings.Contains(err.Error(), "over /etc/shadow (owned by uid 0 (root))") {
		t.Fatalf("err = %v, want a refusal naming /etc/shadow and its owner", err)
	}
}

// TestJournalWithinItsSetIsReplayed: the renames a set write makes, a
// temp onto its destination and a removed destination onto its aside
// name, are replayed, and the aside is swept.
func TestJournalWithinItsSetIsReplayed(t *testing.T) {
	dir := t.TempDir()
	key, chain := filepath.Join(dir, "web.key"), filepath.Join(dir, "chain.pem")
	tmp := filepath.Join(dir, tempPrefix(key)+"12")
	os.WriteFile(key, []byte("KEY1"), 0o600)
	os.WriteFile(tmp, []byte("KEY2"), 0o600)
	os.WriteFile(chain, []byte("CHAIN1"), 0o644)
	journal := filepath.Join(t.TempDir(), "web.journal")
	plantJournal(t, journal, rename{From: tmp, To: key}, rename{From: chain, To: filepath.Join(dir, tempPrefix(chain)+"removed")})
	if err := Recover(journal, []string{key, chain}); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, key); got != "KEY2" {
		t.Errorf("key = %q, want KEY2", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left in the directory: %v, want only the key", entries)
	}
}

// TestJournalMustBeItsOwn: a journal is read only if the running user
// owns it, nobody else may write it, and the same is true of its
// directory; otherwise nothing is replayed and the error says whose it
// is. Here each would rename a destination's temp onto it, which a
// trusted journal may do.
func TestJournalMustBeItsOwn(t *testing.T) {
	cases := map[string]func(journal string) string{
		"group-writable": func(j string) string { os.Chmod(j, 0o660); return "it is writable by group or others (mode 0660)" },
		"in a directory others may write": func(j string) string {
			os.Chmod(filepath.Dir(j), 0o777|os.ModeSticky)
			return "its directory " + filepath.Dir(j) + " is writable by group or others"
		},
	}
	if os.Geteuid() == 0 {
		cases["another user's"] = func(j string) string {
			os.Chown(j, 65534, 65534)
			return "it is owned by " + DescribeUID(65534) + ", not by uid 0 (root)"
		}
		cases["in another user's directory"] = func(j string) string {
			os.Chown(filepath.Dir(j), 65534, 65534)
			return "is owned by " + DescribeUID(65534)
		}
	}
	for name, spoil := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			key := filepath.Join(dir, "web.key")
			tmp := filepath.Join(dir, tempPrefix(key)+"5")
			os.WriteFile(key, []byte("KEY1"), 0o600)
			os.WriteFile(tmp, []byte("KEY2"), 0o600)
			journal := filepath.Join(t.TempDir(), "state", "web.journal")
			plantJournal(t, journal, rename{From: tmp, To: key})
			want := spoil(journal)
			err := Recover(journal, []string{key})
			if err == nil || !strings.Contains(err.Error(), "not replaying the crash journal: refusing to read "+journal) || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want a refusal saying %q", err, want)
			}
			if got := mustRead(t, key); got != "KEY1" {
				t.Errorf("the key was replaced (%q) by a journal certkeeper did not write", got)
			}
			if _, err := os.Stat(tmp); err != nil {
				t.Error("the temp file the refused journal names was swept")
			}
		})
	}
}
