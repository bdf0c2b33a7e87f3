package runas

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name  string
		facts Facts
		want  Action
	}{
		{"no state_dir yet, root", Facts{EUID: 0}, Stay},
		{"no state_dir yet, a user", Facts{EUID: 998}, Stay},
		{"root's own state_dir", Facts{EUID: 0, DirExists: true, DirUID: 0}, Stay},
		{"the owner itself", Facts{EUID: 998, DirExists: true, DirUID: 998}, Stay},
		{"root, state_dir of certkeeper", Facts{EUID: 0, DirExists: true, DirUID: 998}, Switch},
		{"another user, state_dir of certkeeper", Facts{EUID: 1000, DirExists: true, DirUID: 998}, Refuse},
		{"a user, state_dir of root", Facts{EUID: 998, DirExists: true, DirUID: 0}, Refuse},
	} {
		if got := Decide(tc.facts); got != tc.want {
			t.Errorf("%s: Decide(%+v) = %v, want %v", tc.name, tc.facts, got, tc.want)
		}
	}
}

func TestRefusalNamesTheOwner(t *testing.T) {
	for _, tc := range []struct {
		err  NotOwnerError
		want string
	}{
		{NotOwnerError{StateDir: "/var/lib/certkeeper", UID: 998, Name: "certkeeper"},
			"state_dir /var/lib/certkeeper belongs to certkeeper (uid 998): run this command as certkeeper or as root"},
		{NotOwnerError{StateDir: "/var/lib/certkeeper", UID: 0, Name: "root"},
			"state_dir /var/lib/certkeeper belongs to root (uid 0): run this command as root"},
		{NotOwnerError{StateDir: "/srv/ck", UID: 4321},
			"state_dir /srv/ck belongs to uid 4321: run this command as uid 4321 or as root"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}

// TestStateOwnerStays covers the cases that need no other user: a missing
// state_dir and one the test's own user owns. The switch and the refusal
// with real uids are in test/integration (TestStateOwner*).
func TestStateOwnerStays(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	for _, p := range []string{filepath.Join(dir, "missing"), dir} {
		if err := StateOwner(p, log); err != nil {
			t.Errorf("StateOwner(%s): %v", p, err)
		}
	}
	if os.Geteuid() != 0 {
		// A state_dir of root's, seen by an ordinary user: refused.
		err := StateOwner("/", log)
		var no *NotOwnerError
		if !errors.As(err, &no) || no.UID != 0 {
			t.Errorf("StateOwner(/) as uid %d: %v, want a refusal naming root", os.Geteuid(), err)
		}
	}
}
