package telemetry

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// textfileDefs are what node_exporter's textfile collector gets: how each
// certificate, CA, trust bundle, watched file and service stands, the
// failures, and whatever an example alert reads (the auth block in use,
// the logins by method, the telemetry port's failed binds: a squatter on
// the port cannot speak for certkeeper through this file). Not the Go
// and process collectors (node_exporter has its own view of the host)
// and not the Vault request counts and latencies, which describe
// certkeeper's traffic rather than anything to alert on.
var textfileDefs = []def{
	certNotAfter, certNotBefore, certRenewal, certInfo, certRenewals, certLastSuccess, certFailures,
	caNotAfter, crlNextUpdate, serviceReloads, servedMatches,
	vaultTokenExpiry, vaultLogins, vaultAuthInUse, fileNotAfter, fileReadErrors,
	telemetryListenFailures,
}

// TextfileMetricNames lists the metrics the textfile holds.
func TextfileMetricNames() []string {
	out := make([]string, len(textfileDefs))
	for i, d := range textfileDefs {
		out[i] = d.name
	}
	return out
}

// textfileGap is the least time between two writes made for changes, so
// a first pass over a thousand certificates writes the file a few times,
// not a thousand.
const textfileGap = time.Second

// TextfileOptions build a Textfile.
type TextfileOptions struct {
	// Path is the .prom file, in the collector's directory.
	Path string
	// Interval is how often the file is written without a change.
	Interval time.Duration
	// Gatherer is certkeeper's registry; only textfileDefs are written.
	Gatherer prometheus.Gatherer
	Log      *slog.Logger
}

// Textfile keeps a file for node_exporter's textfile collector.
type Textfile struct {
	o       TextfileOptions
	changed chan struct{}
	lastErr string
}

// NewTextfile makes a Textfile; nothing is written until Run.
func NewTextfile(o TextfileOptions) *Textfile {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Textfile{o: o, changed: make(chan struct{}, 1)}
}

// Changed asks for the file to be written soon. It never blocks: it is
// called from the agent's passes and the services' reloads.
func (t *Textfile) Changed() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// Run writes the file now, after every change (at most once per
// textfileGap) and every Interval, until ctx ends. The file stays when
// certkeeper stops: node_exporter then goes on exporting its last values,
// and node_textfile_mtime_seconds, which stops moving, is what tells.
func (t *Textfile) Run(ctx context.Context) {
	tick := time.NewTicker(t.o.Interval)
	defer tick.Stop()
	for {
		t.write()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-t.changed:
			// Let the changes that come together land in one write.
			select {
			case <-ctx.Done():
				return
			case <-time.After(textfileGap):
			}
		}
	}
}

// write replaces the file, even when nothing changed: its modification
// time is how a stopped certkeeper is noticed.
func (t *Textfile) write() {
	err := t.replace()
	switch {
	case err != nil && err.Error() != t.lastErr:
		t.o.Log.Error("cannot write the textfile for node_exporter; retrying", "path", t.o.Path, "error", err, "retry_in", t.o.Interval.String())
	case err == nil && t.lastErr != "":
		t.o.Log.Info("textfile for node_exporter written again", "path", t.o.Path)
	}
	t.lastErr = ""
	if err != nil {
		t.lastErr = err.Error()
	}
}

// replace writes a temporary file beside the target and renames it over
// the target, so the collector, which may read at any moment, sees the
// old file or the new one, never a part. The temporary name does not end
// in .prom, which the collector would read. This is not sinks.WriteSet on
// purpose: that one skips a write whose bytes are on disk already and
// journals for crash recovery, while this file must be rewritten to show
// it is alive, and a lost one is simply written again.
func (t *Textfile) replace() error {
	mfs, err := t.o.Gatherer.Gather()
	if err != nil {
		// A collector that failed still leaves the others' metrics;
		// the endpoint serves them the same way (ContinueOnError).
		t.o.Log.Warn("gathering metrics for the textfile", "error", err)
	}
	var buf bytes.Buffer
	names := TextfileMetricNames()
	for _, mf := range mfs {
		if !slices.Contains(names, mf.GetName()) {
			continue
		}
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			return fmt.Errorf("encoding %s: %w", mf.GetName(), err)
		}
	}
	dir, base := filepath.Split(t.o.Path)
	f, err := os.CreateTemp(dir, "."+base+".tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing left to remove
	_, err = f.Write(buf.Bytes())
	if err == nil {
		// node_exporter runs as its own user and must read it.
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, t.o.Path)
}
