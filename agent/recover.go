package agent

import (
	"sync"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
)

// recoverFiles makes c's files safe to read: it finishes a set write a crash
// interrupted and removes temp files a crash left beside c's destinations.
//
// Stale temp files come only from a process that died mid-write, so each
// destination is swept once per process, and the first call sweeps every
// configured certificate at once (sinks.RecoverSets reads each directory
// once). Sweeping per pass instead read the whole output directory for
// every destination of every certificate: with 1,000 certificates in one
// directory that was 40% of the CPU of the initial pass and half of its
// allocations. The journal is still checked on every pass, since a failed
// write in this process leaves one, except at the first pass of a set the
// sweep has just recovered: nothing of this process has written it since,
// so there is no journal to find (reading it again was 0.44 s of CPU at
// the start of 10,000 certificates).
func (a *Agent) recoverFiles(c config.Certificate) error {
	cfg := a.config()
	a.sweepAll.Do(func() {
		sets := make([]sinks.Set, len(cfg.Certificates))
		for i, c := range cfg.Certificates {
			sets[i] = sinks.Set{Journal: statedir.Dir(cfg.StateDir).CertificateJournal(c.Name), Destinations: destinations(cfg, c)}
		}
		// A set that failed here is retried, and its error reported, by
		// its own pass below.
		for i, err := range sinks.RecoverSets(sets) {
			if err == nil {
				a.swept.add(sets[i].Destinations)
				a.swept.recovered(cfg.Certificates[i].Name)
			}
		}
	})
	if a.swept.takeRecovered(c.Name) {
		// Passes of one certificate do not overlap (begin), and this is
		// its first since the sweep: nothing has written its set since.
		return nil
	}
	// The journal is replayed only within the set's destinations, so it
	// is given all of them; only those not yet swept send it looking for
	// stray temp files.
	dests := destinations(cfg, c)
	journal := statedir.Dir(cfg.StateDir).CertificateJournal(c.Name)
	if len(a.swept.missing(dests)) == 0 {
		return sinks.Finish(journal, dests)
	}
	if err := sinks.Recover(journal, dests); err != nil {
		return err
	}
	a.swept.add(dests)
	return nil
}

// sweptSet is the destinations already swept in this process. A plain map:
// sync.Map cost about 120 bytes per destination more (heap profile, N=1000),
// for a set written once per destination and read once per pass.
type sweptSet struct {
	mu    sync.Mutex
	paths map[string]struct{}
	// fresh are the certificates whose set the sweep recovered and whose
	// first pass has not looked at it yet.
	fresh map[string]struct{}
}

func (s *sweptSet) recovered(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fresh == nil {
		s.fresh = map[string]struct{}{}
	}
	s.fresh[name] = struct{}{}
}

// takeRecovered reports, once, whether the sweep recovered name's set.
func (s *sweptSet) takeRecovered(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.fresh[name]
	delete(s.fresh, name)
	return ok
}

func (s *sweptSet) missing(paths []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range paths {
		if _, ok := s.paths[p]; !ok {
			out = append(out, p)
		}
	}
	return out
}

func (s *sweptSet) add(paths []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paths == nil {
		s.paths = map[string]struct{}{}
	}
	for _, p := range paths {
		s.paths[p] = struct{}{}
	}
}
