package sinks

import (
	"fmt"
	"path/filepath"
)

// Move moves a file of certkeeper's own state from one directory to
// another as one set: the copy at to appears exactly when from goes
// (from is renamed aside, in the same journal), so a crash at any point
// leaves the file at one place or the other, never at neither.
// Recover(journal, {to, from}) finishes a Move a crash interrupted; after
// it, a from still there means the Move never committed, and calling
// Move again completes it (an older certkeeper that wrote from after a
// Move finished wins, being the newer). from is read with ReadState, so
// another user's file is never moved into certkeeper's state. The file is
// written 0600, as all state is.
func Move(journal, from, to string) error {
	data, err := ReadState(from)
	if err != nil {
		return fmt.Errorf("moving %s to %s: %w", from, filepath.Dir(to), err)
	}
	defer lockSet(journal)()
	if _, err := writeSet(journal, []File{{Path: to, Data: data, Mode: 0o600, UID: -1, GID: -1}}, []string{from}); err != nil {
		return fmt.Errorf("moving %s to %s: %w", from, filepath.Dir(to), err)
	}
	return nil
}
