package trust

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
)

// MigrateState finishes, in place, the crash journals of trust bundles an
// older certkeeper kept beside the trust state (statedir.Legacy), within
// each bundle's own files, and removes them: the journals now live in
// trust/bundles/. The trust state itself kept its path. It returns one
// error per bundle whose old journal could not be finished.
func MigrateState(cfg *config.Config) []error {
	dir := statedir.Dir(cfg.StateDir)
	f, err := os.Open(dir.Trust())
	if err != nil {
		return nil // no trust state yet
	}
	names, _ := f.Readdirnames(-1)
	f.Close()
	var errs []error
	for _, tb := range cfg.TrustBundles {
		journal := tb.Name + ".journal"
		if !slices.ContainsFunc(names, func(n string) bool { return n == journal || strings.HasPrefix(n, "."+journal+".") }) {
			continue
		}
		if err := sinks.Recover(dir.Legacy().TrustJournal(tb.Name), destinations(tb)); err != nil {
			errs = append(errs, fmt.Errorf("migrating the state of trust bundle %q: %w", tb.Name, err))
		}
	}
	return errs
}
