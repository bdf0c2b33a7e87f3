package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/backoff"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/internal/schedule"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
	"github.com/certkeeper/certkeeper/vault"
)

// revoke_superseded: the certificate a renewal or rotation replaced is
// revoked in Vault, but only once it is out of service, and a grace
// period later.
//
//  1. Before the new set is written, the old certificate and its key are
//     kept in state_dir/superseded (0600), with the serial that replaces
//     it. Nothing there is out of service yet.
//  2. The write's change goes to the services; when every service the
//     certificate notifies has been checked, reloaded with it on disk and,
//     with verify, seen serving it (services' Delivered), the old one is
//     out of service: the time is saved. A failed check (rolled back) or
//     verify delivers nothing, so nothing is revoked.
//  3. revoke_grace later (plus up to a tenth of it, so a fleet rotated at
//     once does not revoke in step) it is revoked with its own key
//     (<mount>/revoke-with-key), and the record, key included, is removed.
//
// A restart finds the records: one out of service keeps its time; one not
// yet is dropped if its certificate is on disk again (still in service),
// else its services are reloaded once to take it out of service. A
// revocation attempt is saved before it is sent, so after a crash in
// between Vault is asked (cert/<serial>) before revoking again: nothing
// is revoked twice. A Vault outage is retried with backoff; a revocation
// Vault refuses as such is given up, and the record dropped at the old
// certificate's expiry, when revoking it no longer matters.

// Revoker revokes certificates in Vault; *vault.Client is the real one.
type Revoker interface {
	RevokeWithKey(ctx context.Context, mount, certPEM, keyPEM string) (*vault.Revoked, error)
	RevocationTime(ctx context.Context, mount, serial string) (time.Time, error)
}

// supersededRecord is the file kept per replaced certificate.
type supersededRecord struct {
	Version      int       `json:"version"`
	Name         string    `json:"name"`
	Mount        string    `json:"mount"`
	Serial       string    `json:"serial"`
	NotAfter     time.Time `json:"not_after"`
	Certificate  string    `json:"certificate"`
	Key          string    `json:"private_key"`
	SupersededBy string    `json:"superseded_by"`
	// OutOfService is when every service that read the certificate had
	// loaded its successor; zero until then.
	OutOfService time.Time `json:"out_of_service,omitzero"`
	// Attempted says a revocation request may have reached Vault.
	Attempted bool `json:"attempted,omitempty"`
}

const supersededVersion = 1

type superseded struct {
	rec supersededRecord
	// token is the change whose delivery takes it out of service.
	token    *sinks.Change
	failures int
}

// supersededSet is what waits for revocation, by id (supersededID), and
// when each is due.
type supersededSet struct {
	mu     sync.Mutex
	byID   map[string]*superseded
	queue  *schedule.Queue
	loaded sync.Once
}

func supersededID(name, serial string) string { return name + "\x00" + serial }

func (s *supersededSet) init(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID == nil {
		s.byID, s.queue = map[string]*superseded{}, schedule.New(now)
	}
}

// supersede keeps the certificate held for c, about to be replaced by
// next, for its revocation.
func (a *Agent) supersede(c config.Certificate, next *held) {
	if !c.RevokeSuperseded {
		return
	}
	a.loadSuperseded()
	a.mu.Lock()
	prev := a.held[c.Name]
	a.mu.Unlock()
	if prev == nil || prev.record.Serial == next.record.Serial || !a.now().Before(prev.bundle.Leaf.NotAfter) {
		return
	}
	key, err := pki.MarshalKey(prev.bundle.Key)
	if err == nil {
		rec := supersededRecord{
			Version: supersededVersion, Name: c.Name, Mount: prev.record.Mount, Serial: prev.record.Serial,
			NotAfter: prev.bundle.Leaf.NotAfter, Certificate: string(pki.EncodeCerts(prev.bundle.Leaf)), Key: string(key),
			SupersededBy: next.record.Serial,
		}
		if err = a.saveSuperseded(rec); err == nil {
			a.sup.mu.Lock()
			a.sup.byID[supersededID(c.Name, rec.Serial)] = &superseded{rec: rec}
			a.sup.mu.Unlock()
			return
		}
	}
	a.log.Error("cannot keep the replaced certificate for its revocation; it will not be revoked", "cert", c.Name, "serial", prev.record.Serial, "error", err)
}

// awaitDelivery links the replaced certificates of c that wait to go out
// of service to change, which put next on disk; with no service to
// reload, they are out of service now.
func (a *Agent) awaitDelivery(c config.Certificate, next *held, change *sinks.Change) {
	a.sup.mu.Lock()
	linked := false
	for _, s := range a.sup.byID {
		if s.rec.Name == c.Name && s.rec.Serial != next.record.Serial && s.rec.OutOfService.IsZero() {
			s.token = change
			linked = true
		}
	}
	a.sup.mu.Unlock()
	if linked && (a.notifier == nil || len(c.Notify) == 0) {
		a.Delivered(change)
	}
}

// Delivered is told that every service reading change has loaded it
// (services.Options.Delivered): the certificates it replaced are out of
// service, and are revoked after their grace period.
func (a *Agent) Delivered(change *sinks.Change) {
	now := a.now()
	a.sup.mu.Lock()
	var out []*superseded
	for _, s := range a.sup.byID {
		if s.token == change && s.rec.OutOfService.IsZero() {
			s.rec.OutOfService, s.token = now, nil
			out = append(out, s)
		}
	}
	a.sup.mu.Unlock()
	for _, s := range out {
		rec := s.rec
		if err := a.saveSuperseded(rec); err != nil {
			// Still revoked by this process; a restart before then
			// reloads the services once more to learn it again.
			a.log.Warn("cannot save that the replaced certificate is out of service", "cert", rec.Name, "serial", rec.Serial, "error", err)
		}
		at := a.revokeAt(rec)
		a.sup.queue.Set(supersededID(rec.Name, rec.Serial), at)
		a.log.Info("the replaced certificate is out of service; revoking it after the grace period", "cert", rec.Name, "serial", rec.Serial,
			"superseded_by", rec.SupersededBy, "revoke_at", at.UTC().Format(time.RFC3339))
	}
}

// revokeAt is when a certificate out of service is revoked: its grace
// period later, plus up to a tenth of it (at most a minute).
func (a *Agent) revokeAt(rec supersededRecord) time.Time {
	grace := config.DefaultRevokeGrace
	if c, ok := a.config().Certificate(rec.Name); ok {
		grace = c.RevokeGrace
	}
	return rec.OutOfService.Add(grace + time.Duration(a.rand()*float64(min(grace/10, time.Minute))))
}

// revokeLoop revokes replaced certificates as they fall due, until ctx
// ends.
func (a *Agent) revokeLoop(ctx context.Context) {
	for {
		id, err := a.sup.queue.Next(ctx)
		if err != nil {
			return
		}
		a.revokeOne(ctx, id)
	}
}

// RevokeDue revokes, now, the replaced certificates whose grace period
// has passed: the one-shot commands' share of revoke_superseded.
func (a *Agent) RevokeDue(ctx context.Context) {
	a.loadSuperseded()
	now := a.now()
	var due []string
	a.sup.mu.Lock()
	for id, s := range a.sup.byID {
		if at, ok := a.sup.queue.When(id); ok && !at.After(now) && !s.rec.OutOfService.IsZero() {
			due = append(due, id)
		}
	}
	a.sup.mu.Unlock()
	for _, id := range due {
		a.sup.queue.Remove(id)
		a.revokeOne(ctx, id)
	}
}

func (a *Agent) revokeOne(ctx context.Context, id string) {
	a.sup.mu.Lock()
	s := a.sup.byID[id]
	a.sup.mu.Unlock()
	if s == nil {
		return
	}
	rec := s.rec
	log := a.log.With("cert", rec.Name, "serial", rec.Serial, "mount", rec.Mount)
	now := a.now()
	if !now.Before(rec.NotAfter) {
		log.Info("the replaced certificate expired before it was revoked; nothing left to revoke")
		a.dropSuperseded(rec)
		return
	}
	if h := a.heldNamed(rec.Name); h != nil && h.record.Serial == rec.Serial {
		log.Warn("the replaced certificate is the one on disk again; not revoking it")
		a.sup.mu.Lock()
		s.rec.OutOfService = time.Time{}
		rec = s.rec
		a.sup.mu.Unlock()
		a.saveSuperseded(rec)
		return
	}
	revoker := a.currentRevoker()
	if revoker == nil {
		return
	}
	if rec.Attempted {
		// A request may have reached Vault before a crash: ask first.
		if at, err := revoker.RevocationTime(ctx, rec.Mount, rec.Serial); err == nil && !at.IsZero() {
			log.Info("the replaced certificate was already revoked in vault", "revoked_at", at.UTC().Format(time.RFC3339))
			a.dropSuperseded(rec)
			return
		}
	}
	a.sup.mu.Lock()
	s.rec.Attempted = true
	rec = s.rec
	a.sup.mu.Unlock()
	if err := a.saveSuperseded(rec); err != nil {
		a.retryRevoke(s, id, fmt.Errorf("saving the attempt first: %w", err), log)
		return
	}
	r, err := revoker.RevokeWithKey(ctx, rec.Mount, rec.Certificate, rec.Key)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		var refused *vault.RevokeRefusedError
		if errors.As(err, &refused) {
			log.Error("vault refuses to revoke the replaced certificate; giving up on it (it stays valid until it expires)", "error", err,
				"not_after", rec.NotAfter.UTC().Format(time.RFC3339), "alert", "revoke_refused")
			// The record, key included, goes at expiry.
			a.sup.queue.Set(id, rec.NotAfter)
			return
		}
		a.retryRevoke(s, id, err, log)
		return
	}
	attrs := []any{"superseded_by", rec.SupersededBy}
	if !r.At.IsZero() {
		attrs = append(attrs, "revoked_at", r.At.UTC().Format(time.RFC3339))
	}
	if len(r.Warnings) > 0 {
		attrs = append(attrs, "vault_warnings", strings.Join(r.Warnings, "; "))
	}
	log.Info("revoked the replaced certificate in vault", attrs...)
	a.dropSuperseded(rec)
}

func (a *Agent) retryRevoke(s *superseded, id string, err error, log interface {
	Warn(string, ...any)
}) {
	a.sup.mu.Lock()
	s.failures++
	failures := s.failures
	a.sup.mu.Unlock()
	d := a.retryDelay(backoff.Default, failures, err)
	a.sup.queue.Set(id, a.now().Add(d))
	log.Warn("revoking the replaced certificate failed; retrying", "error", err, "failures", failures, "retry_in", d.Round(time.Second).String())
}

// currentRevoker is Options.Revoker, or else the Vault client in force
// (a live reload may replace it).
func (a *Agent) currentRevoker() Revoker {
	if a.revoker != nil {
		return a.revoker
	}
	r, _ := a.currentIssuer().(Revoker)
	return r
}

func (a *Agent) heldNamed(name string) *held {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held[name]
}

// saveSuperseded writes a record, 0600, replacing the previous one.
func (a *Agent) saveSuperseded(rec supersededRecord) error {
	dir := statedir.Dir(a.config().StateDir)
	if err := dir.Ensure(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding: %w", err)
	}
	_, err = sinks.WriteSet(dir.SupersededJournal(rec.Name, rec.Serial), []sinks.File{{
		Path: dir.SupersededCertificate(rec.Name, rec.Serial), Data: append(data, '\n'), Mode: 0o600, UID: -1, GID: -1,
	}})
	return err
}

// dropSuperseded forgets a record and removes its file, key and all.
func (a *Agent) dropSuperseded(rec supersededRecord) {
	id := supersededID(rec.Name, rec.Serial)
	a.sup.mu.Lock()
	delete(a.sup.byID, id)
	a.sup.mu.Unlock()
	a.sup.queue.Remove(id)
	dir := statedir.Dir(a.config().StateDir)
	path := dir.SupersededCertificate(rec.Name, rec.Serial)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.log.Warn("cannot remove the replaced certificate's record (it holds its key)", "path", path, "error", err)
		return
	}
	if d, err := os.Open(dir.Superseded()); err == nil {
		d.Sync()
		d.Close()
	}
}

// loadSuperseded reads the records a previous process left, once.
func (a *Agent) loadSuperseded() {
	a.sup.init(a.now)
	a.sup.loaded.Do(func() {
		dir := statedir.Dir(a.config().StateDir).Superseded()
		entries, err := os.ReadDir(dir)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				a.log.Warn("cannot read the replaced certificates waiting for revocation", "dir", dir, "error", err)
			}
			return
		}
		// A write a crash interrupted is finished (or undone) first.
		recovered := false
		for _, e := range entries {
			if base, ok := strings.CutSuffix(e.Name(), ".journal"); ok && !strings.HasPrefix(base, ".") {
				journal := filepath.Join(dir, e.Name())
				if err := sinks.Recover(journal, []string{filepath.Join(dir, base+".json")}); err != nil {
					a.log.Warn("cannot recover the record of a replaced certificate", "journal", journal, "error", err)
				}
				recovered = true
			}
		}
		if recovered {
			if entries, err = os.ReadDir(dir); err != nil {
				a.log.Warn("cannot read the replaced certificates waiting for revocation", "dir", dir, "error", err)
				return
			}
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			path := filepath.Join(dir, e.Name())
			rec, err := readSuperseded(path)
			if err != nil {
				a.log.Warn("ignoring a record of a replaced certificate", "path", path, "error", err)
				continue
			}
			s := &superseded{rec: rec}
			a.sup.mu.Lock()
			a.sup.byID[supersededID(rec.Name, rec.Serial)] = s
			a.sup.mu.Unlock()
			if !rec.OutOfService.IsZero() {
				a.sup.queue.Set(supersededID(rec.Name, rec.Serial), a.revokeAt(rec))
			}
		}
	})
}

// readSuperseded reads one record, which must be certkeeper's own
// (sinks.ReadState: the running user's, in a directory of its own that no
// one else may write) and, since it holds a key, readable by no one else.
func readSuperseded(path string) (supersededRecord, error) {
	var rec supersededRecord
	data, err := sinks.ReadState(path)
	if err != nil {
		return rec, err
	}
	// ReadState refused a symlink; what it read is this file.
	if info, err := os.Lstat(path); err != nil {
		return rec, err
	} else if info.Mode().Perm()&0o077 != 0 {
		return rec, fmt.Errorf("mode %04o lets others read it, and it holds a key", info.Mode().Perm())
	}
	if err := json.Unmarshal(data, &rec); err != nil || rec.Version != supersededVersion || rec.Name == "" || rec.Serial == "" || rec.Mount == "" {
		return rec, errors.New("unreadable or from another version")
	}
	return rec, nil
}

// resumeSuperseded takes up, after a restart, the replaced certificates
// that were not yet known to be out of service: one whose certificate is
// on disk again is in service and stays valid; for the others, the
// services are asked to reload once, and their delivery takes them out of
// service.
func (a *Agent) resumeSuperseded() {
	a.loadSuperseded()
	cfg := a.config()
	var waiting []*superseded
	a.sup.mu.Lock()
	for _, s := range a.sup.byID {
		if s.rec.OutOfService.IsZero() && s.token == nil {
			waiting = append(waiting, s)
		}
	}
	a.sup.mu.Unlock()
	for _, s := range waiting {
		c, configured := cfg.Certificate(s.rec.Name)
		var onDisk string
		if configured {
			if h, err := loadHeld(cfg, c); err == nil {
				onDisk = h.record.Serial
			}
		}
		if !configured || onDisk == "" || onDisk == s.rec.Serial {
			// Still (or again) what is served, or nothing to tell.
			a.log.Info("the replaced certificate is still in service; it will not be revoked", "cert", s.rec.Name, "serial", s.rec.Serial)
			a.dropSuperseded(s.rec)
			continue
		}
		token := &sinks.Change{}
		a.sup.mu.Lock()
		s.token = token
		a.sup.mu.Unlock()
		if a.notifier == nil || len(c.Notify) == 0 {
			a.Delivered(token)
			continue
		}
		a.log.Info("reloading the services once more to take a replaced certificate out of service", "cert", s.rec.Name, "serial", s.rec.Serial, "services", c.Notify)
		a.notifier.Reload(c, token)
	}
}
