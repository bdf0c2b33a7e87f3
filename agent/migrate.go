package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
)

// MigrateState moves what an older certkeeper kept for the configured
// certificates in the flat layout of state_dir (statedir.Legacy: a record
// and a journal per certificate at the top level) to certs/, so the
// certificates on disk are kept without asking Vault. Per certificate, in
// this order, each step safe to crash in and to repeat:
//
//  1. an old crash journal is finished in place, within the old set (the
//     outputs and the record at its old place), and removed;
//  2. a Move that a crash interrupted is finished (its journal is the
//     certificate's new one);
//  3. a record still at the old place is moved (sinks.Move): the new
//     record appears exactly when the old one goes.
//
// It returns what it moved and one error per certificate it could not
// migrate; that certificate's pass then says what is wrong with its files
// (or gets a new certificate). It looks at the top of state_dir once, so a
// migrated state_dir costs one directory read.
func MigrateState(cfg *config.Config) (moved []string, errs []error) {
	dir := statedir.Dir(cfg.StateDir)
	top, err := topNames(cfg.StateDir)
	if err != nil || len(top) == 0 {
		return nil, nil // no state_dir yet, or an empty one: nothing to migrate
	}
	if err := dir.Ensure(); err != nil {
		return nil, []error{err}
	}
	legacy := dir.Legacy()
	for _, c := range cfg.Certificates {
		if !hasLegacy(top, c.Name+".json", c.Name+".journal") {
			continue
		}
		record, oldRecord := dir.CertificateRecord(c.Name), legacy.CertificateRecord(c.Name)
		dests := destinations(cfg, c)
		oldDests := append(slices.DeleteFunc(slices.Clone(dests), func(p string) bool { return p == record }), oldRecord)
		recovered := sinks.RecoverSets([]sinks.Set{
			{Journal: legacy.CertificateJournal(c.Name), Destinations: oldDests},
			{Journal: dir.CertificateJournal(c.Name), Destinations: append(slices.Clip(dests), oldRecord)},
		})
		if err := errors.Join(recovered...); err != nil {
			errs = append(errs, fmt.Errorf("migrating the state of certificate %q: %w", c.Name, err))
			continue
		}
		data, err := sinks.ReadState(oldRecord)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("migrating the state of certificate %q: %w", c.Name, err))
			continue
		}
		if !isRecord(data) {
			// With a certificate named "services", the old services.json
			// may be the services' state (services migrates it).
			continue
		}
		if err := sinks.Move(dir.CertificateJournal(c.Name), oldRecord, record); err != nil {
			errs = append(errs, fmt.Errorf("migrating the state of certificate %q: %w", c.Name, err))
			continue
		}
		moved = append(moved, oldRecord)
	}
	return moved, errs
}

// isRecord says whether data is a certificate record, of any version.
func isRecord(data []byte) bool {
	var r struct {
		Version int    `json:"version"`
		Mount   string `json:"mount"`
		Serial  string `json:"serial"`
	}
	return json.Unmarshal(data, &r) == nil && r.Version > 0 && r.Mount != "" && r.Serial != ""
}

// topNames lists the top of state_dir.
func topNames(stateDir string) ([]string, error) {
	f, err := os.Open(stateDir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// hasLegacy says whether names hold one of files, or a temp file a crash
// left beside one.
func hasLegacy(names []string, files ...string) bool {
	for _, n := range names {
		for _, f := range files {
			if n == f || strings.HasPrefix(n, "."+f+".") {
				return true
			}
		}
	}
	return false
}
