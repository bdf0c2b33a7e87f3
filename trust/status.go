package trust

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/backoff"
	"github.com/certkeeper/certkeeper/internal/pki"
	"github.com/certkeeper/certkeeper/internal/statedir"
	"github.com/certkeeper/certkeeper/sinks"
)

// States a bundle can be in, as status shows them.
const (
	StateOK         = "ok"
	StateFailing    = "failing"    // the last refresh failed; the files on disk are older
	StateMissing    = "missing"    // no CA file on disk
	StateIncomplete = "incomplete" // a CA in the CA file has no CRL in the CRL file
	StateStale      = "stale"      // a CRL on disk is past its NextUpdate
)

// Status is what is known about one trust bundle.
type Status struct {
	Name        string    `json:"name"`
	State       string    `json:"state"`
	CAs         []CAInfo  `json:"cas,omitempty"`
	LastRefresh time.Time `json:"last_refresh,omitzero"`
	NextRefresh time.Time `json:"next_refresh,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Failures    int       `json:"consecutive_failures"`
}

// record folds a refresh into the bundle's status, saves it, and returns
// a copy.
func (k *Keeper) record(tb config.TrustBundle, res *Result, err error) Status {
	now := k.now()
	k.mu.Lock()
	st := k.status[tb.Name]
	if st == nil {
		st = &Status{Name: tb.Name}
		k.status[tb.Name] = st
	}
	if err != nil {
		st.Failures++
		st.State = StateFailing
		st.LastError = strings.ReplaceAll(err.Error(), "\n", "; ")
		// Never wait longer than the refresh interval, however many
		// failures: a revocation must still reach the servers.
		d := min(backoff.Default.Delay(st.Failures-1, k.rand()), tb.CRLRefresh)
		st.NextRefresh = now.Add(d)
	} else {
		st.Failures, st.LastError, st.State = 0, "", StateOK
		st.CAs = res.CAs
		st.LastRefresh = now
		st.NextRefresh = nextRefresh(now, tb.CRLRefresh, res.CAs, k.rotateAt)
	}
	cp := *st
	all := k.statusesLocked()
	k.mu.Unlock()
	k.save(all)
	return cp
}

// Unplaced returns the status of every bundle whose files are not in
// place: not refreshed yet by this process, or whose refreshes have all
// failed while the files on disk lack a CA's CRL or hold a stale one.
// Files left by an earlier run that are complete and current are in
// place: servers can start with them while Vault is away. The daemon
// sends READY=1 once this is empty.
func (k *Keeper) Unplaced() []Status {
	now := k.now()
	var out []Status
	for i, st := range k.Statuses() {
		switch {
		case st.State == StateMissing && st.Failures == 0:
			// Not tried yet.
			out = append(out, st)
		case st.LastRefresh.IsZero():
			if state, _ := diskState(k.cfg.TrustBundles[i], now); state != StateOK {
				out = append(out, st)
			}
		}
	}
	return out
}

// Statuses returns every bundle's status, in config order, as the running
// keeper knows it.
func (k *Keeper) Statuses() []Status {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.statusesLocked()
}

func (k *Keeper) statusesLocked() []Status {
	var out []Status
	for _, tb := range k.cfg.TrustBundles {
		if st := k.status[tb.Name]; st != nil {
			out = append(out, *st)
		} else {
			out = append(out, Status{Name: tb.Name, State: StateMissing})
		}
	}
	return out
}

type stateFile struct {
	Version int      `json:"version"`
	Bundles []Status `json:"bundles"`
}

const stateVersion = 1

func (k *Keeper) save(all []Status) {
	dir := statedir.Dir(k.cfg.StateDir)
	data, err := json.MarshalIndent(stateFile{Version: stateVersion, Bundles: all}, "", "  ")
	if err == nil {
		err = os.MkdirAll(dir.Trust(), statedir.Mode)
	}
	if err == nil {
		_, err = sinks.WriteSet(dir.TrustStateJournal(), []sinks.File{{
			Path: dir.TrustState(), Data: append(data, '\n'), Mode: 0o600, UID: -1, GID: -1,
		}})
	}
	if err != nil {
		k.log.Warn("cannot save trust bundle states for `certkeeper status`", "error", err)
	}
}

// DiskStatus reads each bundle's files, without Vault and without a
// running agent, for `certkeeper status`: which CAs they hold, whether
// each has a current CRL. The last refresh error comes from what the
// agent saved.
func DiskStatus(cfg *config.Config, now time.Time) []Status {
	var saved stateFile
	// What the agent saved is shown only if certkeeper wrote it: a refusal
	// (another user's file) is shown as each bundle's last error instead.
	var refused string
	data, err := sinks.ReadState(statedir.Dir(cfg.StateDir).TrustState())
	switch {
	case err == nil:
		json.Unmarshal(data, &saved)
	case !errors.Is(err, fs.ErrNotExist):
		refused = err.Error()
	}
	var out []Status
	for _, tb := range cfg.TrustBundles {
		st := Status{Name: tb.Name}
		for _, s := range saved.Bundles {
			if s.Name == tb.Name {
				st.LastRefresh, st.NextRefresh, st.LastError, st.Failures = s.LastRefresh, s.NextRefresh, s.LastError, s.Failures
			}
		}
		if refused != "" {
			st.LastError = refused
		}
		st.State, st.CAs = diskState(tb, now)
		for _, s := range saved.Bundles {
			if s.Name == tb.Name {
				keepTrustedSince(st.CAs, s.CAs)
			}
		}
		if st.State == StateOK && st.Failures > 0 {
			st.State = StateFailing
		}
		out = append(out, st)
	}
	return out
}

func diskState(tb config.TrustBundle, now time.Time) (string, []CAInfo) {
	data, err := sinks.ReadFile(tb.CAFile)
	if errors.Is(err, fs.ErrNotExist) {
		return StateMissing, nil
	}
	if err != nil {
		return StateMissing, nil
	}
	certs, err := pki.ParseCertificates(data)
	if err != nil {
		return StateMissing, nil
	}
	var crls []*x509.RevocationList
	if tb.CRLFile != "" {
		crls = readCRLs(tb.CRLFile, len(certs))
	}
	state := StateOK
	var cas []CAInfo
	for _, c := range certs {
		crl := newestFrom(crls, c)
		cas = append(cas, caInfo(c, crl))
		switch {
		case tb.CRLFile == "":
		case crl == nil:
			state = StateIncomplete
		case !now.Before(crl.NextUpdate) && state == StateOK:
			state = StateStale
		}
	}
	return state, cas
}

// Failing reports whether a state is one an operator must look at.
func Failing(state string) bool { return state != StateOK }
