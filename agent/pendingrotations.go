package agent

import (
	"encoding/json"
	"errors"
	"io/fs"
	"time"

	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
)

// A forced rotation the running daemon accepted (Rotate) is kept in
// state_dir until the new certificate is written, so a daemon stopped
// before it got there (a restart, a package upgrade) does it after its
// next start instead of dropping it silently. At that start the first
// pass of the certificate is an ordinary one (its files are checked, and
// READY=1 does not wait for a spread), and the rotation comes at the
// time it was given, or at once if that has passed.

type pendingFile struct {
	Version   int               `json:"version"`
	Rotations []pendingRotation `json:"rotations"`
}

type pendingRotation struct {
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}

const pendingVersion = 1

// maxPendingFile bounds what is read back: a few bytes per certificate.
const maxPendingFile = 16 << 20

// saveRotations writes the rotations not yet done. A failure is logged:
// the rotation itself still happens in this process.
func (a *Agent) saveRotations() {
	a.rot.saveMu.Lock()
	defer a.rot.saveMu.Unlock()
	cfg := a.config()
	r := &a.rot
	r.mu.Lock()
	f := pendingFile{Version: pendingVersion, Rotations: []pendingRotation{}}
	for _, c := range cfg.Certificates {
		if _, ok := r.forced[c.Name]; ok {
			f.Rotations = append(f.Rotations, pendingRotation{Name: c.Name, At: r.at[c.Name].UTC()})
		}
	}
	r.mu.Unlock()
	dir := statedir.Dir(cfg.StateDir)
	data, err := json.MarshalIndent(f, "", "  ")
	if err == nil {
		err = dir.Ensure()
	}
	if err == nil {
		_, err = sinks.WriteSet(dir.PendingRotationsJournal(), []sinks.File{{
			Path: dir.PendingRotations(), Data: append(data, '\n'), Mode: 0o600, UID: -1, GID: -1,
		}})
	}
	if err != nil {
		a.log.Error("cannot save the pending rotations; a restart before they are done would drop them", "error", err)
	}
}

// loadRotations takes up the rotations a previous daemon accepted and did
// not do, for the certificates still configured, and says so.
func (a *Agent) loadRotations() {
	cfg := a.config()
	dir := statedir.Dir(cfg.StateDir)
	path := dir.PendingRotations()
	if err := sinks.Recover(dir.PendingRotationsJournal(), []string{path}); err != nil {
		a.log.Warn("cannot recover the pending rotations file", "error", err)
	}
	data, err := sinks.ReadState(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var f pendingFile
	if err == nil && len(data) > maxPendingFile {
		err = errors.New("file too large")
	}
	if err == nil {
		err = json.Unmarshal(data, &f)
	}
	if err == nil && f.Version != pendingVersion {
		err = errors.New("written by another version")
	}
	if err != nil {
		a.log.Error("cannot read the pending rotations; rotations a previous daemon accepted may be lost: run certkeeper rotate again", "file", path, "error", err)
		return
	}
	now := a.now()
	r := &a.rot
	r.mu.Lock()
	r.init()
	for _, p := range f.Rotations {
		if _, ok := cfg.Certificate(p.Name); !ok {
			continue
		}
		r.seq++
		r.forced[p.Name] = r.seq
		r.at[p.Name] = p.At
		if now.Before(p.At) {
			r.resume[p.Name] = p.At
		}
		a.log.Info("taking up a rotation accepted before the last stop", "cert", p.Name, "at", p.At.Format(time.RFC3339))
	}
	r.mu.Unlock()
}
