package sinks

import (
	"fmt"
	"slices"
	"sync"
)

// setLocks serialises writes to one set (named by its journal), so a
// rollback or a re-apply from one goroutine never interleaves its renames
// with a fresh write from another and leaves a key from one set beside a
// certificate from the other.
var setLocks sync.Map // journal path -> *sync.Mutex

func lockSet(journal string) (unlock func()) {
	m, _ := setLocks.LoadOrStore(journal, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// Reapply writes again what the change wrote, as one set, after a
// Rollback undid it. The change keeps what was there before it, so it can
// still be rolled back afterwards.
func (Sets) Reapply(c *Change) error {
	if !c.Changed() {
		return nil
	}
	defer lockSet(c.journal)()
	if _, err := writeSet(c.journal, c.next, nil); err != nil {
		return fmt.Errorf("writing again: %w", err)
	}
	rolledBack.Delete(c.journal)
	return nil
}

// Merge folds changes made one after the other into one change per set:
// each path keeps what it held before the first change that touched it,
// and the content of the last. Rolling the result back therefore returns
// to the state before all of them, and re-applying it to the state after
// all of them. Changes that changed nothing are dropped.
func Merge(changes ...*Change) []*Change {
	var out []*Change
	byJournal := map[string]*Change{}
	for _, c := range changes {
		if !c.Changed() {
			continue
		}
		m := byJournal[c.journal]
		if m == nil {
			m = &Change{journal: c.journal}
			byJournal[c.journal] = m
			out = append(out, m)
		}
		for i, path := range c.Written {
			j := slices.Index(m.Written, path)
			if j < 0 {
				m.Written = append(m.Written, path)
				m.prev = append(m.prev, c.prev[i])
				m.next = append(m.next, c.next[i])
				continue
			}
			m.next[j] = c.next[i]
		}
	}
	return out
}
