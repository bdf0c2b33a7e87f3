// Package statedir is the one place that knows the layout of state_dir:
// every path certkeeper keeps there is made here, and nowhere else.
//
//	<state_dir>/
//	  control.sock                     the running daemon's control socket
//	  certs/<certificate>.json         where a certificate came from, and its CA chain
//	  certs/<certificate>.journal      crash journal of the certificate's file set
//	  services/status.json             service states, for `certkeeper status`
//	  services/status.journal          its crash journal
//	  trust/status.json                trust bundle states
//	  trust/status.journal             its crash journal
//	  trust/bundles/<bundle>.journal   crash journal of a bundle's files
//	  rotations/pending.json           forced rotations the daemon accepted and
//	                                   has not done yet, so a restart does them
//	  rotations/pending.journal        its crash journal
//	  superseded/<certificate>.<serial>.json
//	                                   a replaced certificate and its key (0600),
//	                                   kept until Vault has revoked it
//	                                   (revoke_superseded)
//	  superseded/<certificate>.<serial>.journal
//	                                   its crash journal
//	  ca/issuers.json                  when each issuer of the certificates' mounts
//	                                   was first seen (CA rotation)
//	  ca/issuers.journal               its crash journal
//
// Each kind of state has a directory of its own, and the names users give
// (certificates, bundles) appear only inside their kind's directory, so no
// name can reach another kind's file: a certificate named "services" is
// certs/services.json. The one rule left on names (no leading dot, which
// certkeeper's temp files use) is the config's.
//
// Up to 170922d the layout was flat (see Legacy); the commands that touch
// state migrate it at start (daemon.MigrateState).
//
// The package only builds paths and creates the directories; it reads and
// writes no file. Every file here is read back through sinks.ReadState,
// which refuses one the running user does not own or others may write.
package statedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Dir is a state directory, as the config's state_dir names it.
type Dir string

// Mode is the mode of the state directory and of every directory in it:
// records, journals and the control socket are for the user that owns
// certkeeper's keys only.
const Mode = 0o700

// Ensure creates the state directory and every directory of the layout
// that is missing, each durably (its parent is fsynced after the mkdir),
// so a record written into a new directory cannot vanish with it in a
// crash.
func (d Dir) Ensure() error {
	if err := os.MkdirAll(filepath.Dir(string(d)), Mode); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	for _, dir := range d.dirs() {
		if _, err := os.Lstat(dir); err == nil {
			continue
		}
		if err := os.Mkdir(dir, Mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("state directory: %w", err)
		}
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
	}
	return nil
}

// dirs are the directories of the layout, parents first.
func (d Dir) dirs() []string {
	return []string{string(d), d.Certs(), d.Services(), d.Trust(), d.TrustBundles(), d.Rotations(), d.Superseded(), d.CA()}
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Certs is the directory of certificate records and journals.
func (d Dir) Certs() string { return d.join("certs") }

// CertificateRecord is where a certificate's record (mount, role, serial,
// CA chain) is kept.
func (d Dir) CertificateRecord(name string) string { return d.join("certs", name+".json") }

// CertificateJournal is the crash journal of a certificate's file set.
func (d Dir) CertificateJournal(name string) string { return d.join("certs", name+".journal") }

// Services is the directory of the services' state.
func (d Dir) Services() string { return d.join("services") }

// ServicesState holds the services' states for `certkeeper status`.
func (d Dir) ServicesState() string { return d.join("services", "status.json") }

// ServicesJournal is the crash journal of ServicesState.
func (d Dir) ServicesJournal() string { return d.join("services", "status.journal") }

// Trust is the directory of the trust bundles' state.
func (d Dir) Trust() string { return d.join("trust") }

// TrustState holds the trust bundles' states for `certkeeper status`.
func (d Dir) TrustState() string { return d.join("trust", "status.json") }

// TrustStateJournal is the crash journal of TrustState.
func (d Dir) TrustStateJournal() string { return d.join("trust", "status.journal") }

// TrustBundles is the directory of the trust bundles' journals: one of
// their own, since a bundle may be named "status".
func (d Dir) TrustBundles() string { return d.join("trust", "bundles") }

// TrustJournal is the crash journal of a trust bundle's files.
func (d Dir) TrustJournal(bundle string) string { return d.join("trust", "bundles", bundle+".journal") }

// Rotations is the directory of the pending rotations: a directory of its
// own, so no certificate name can share its files.
func (d Dir) Rotations() string { return d.join("rotations") }

// PendingRotations holds the forced rotations a daemon accepted and has
// not done yet.
func (d Dir) PendingRotations() string { return d.join("rotations", "pending.json") }

// PendingRotationsJournal is the crash journal of PendingRotations.
func (d Dir) PendingRotationsJournal() string { return d.join("rotations", "pending.journal") }

// Superseded is the directory of replaced certificates waiting to be
// revoked (revoke_superseded): a directory of its own, so a certificate's
// name never meets another kind of file.
func (d Dir) Superseded() string { return d.join("superseded") }

// SupersededCertificate is where the replaced certificate of name with
// serial (colon-separated hex, as pki.Serial writes it) waits, with its
// key, until Vault has revoked it. Colons are dropped from the file name;
// a serial holds no dot, so name and serial cannot be confused.
func (d Dir) SupersededCertificate(name, serial string) string {
	return d.join("superseded", name+"."+strings.ReplaceAll(serial, ":", "")+".json")
}

// SupersededJournal is the crash journal of SupersededCertificate.
func (d Dir) SupersededJournal(name, serial string) string {
	return d.join("superseded", name+"."+strings.ReplaceAll(serial, ":", "")+".journal")
}

// CA is the directory of what the agent keeps about its mounts' issuers,
// for CA rotation.
func (d Dir) CA() string { return d.join("ca") }

// IssuersSeen holds when this host first saw each issuer of its
// certificates' mounts: a new issuer's soak counts from then where no
// trust bundle takes the mount.
func (d Dir) IssuersSeen() string { return d.join("ca", "issuers.json") }

// IssuersSeenJournal is the crash journal of IssuersSeen.
func (d Dir) IssuersSeenJournal() string { return d.join("ca", "issuers.journal") }

// ControlSocket is where the running daemon listens (package control).
func (d Dir) ControlSocket() string { return d.join("control.sock") }

func (d Dir) join(elem ...string) string {
	return filepath.Join(append([]string{string(d)}, elem...)...)
}

// Legacy is the flat layout of certkeeper up to 170922d, where records,
// journals and the services' state shared the top level (a certificate
// named "services" shared its files with the services' state). Only the
// migration reads these paths. The trust state kept its path.
type Legacy Dir

// Legacy is d's layout as an older certkeeper left it.
func (d Dir) Legacy() Legacy { return Legacy(d) }

// CertificateRecord was <state_dir>/<certificate>.json.
func (l Legacy) CertificateRecord(name string) string { return Dir(l).join(name + ".json") }

// CertificateJournal was <state_dir>/<certificate>.journal.
func (l Legacy) CertificateJournal(name string) string { return Dir(l).join(name + ".journal") }

// ServicesState was <state_dir>/services.json (its journal was never
// written: one file needs none).
func (l Legacy) ServicesState() string { return Dir(l).join("services.json") }

// TrustJournal was <state_dir>/trust/<bundle>.journal, beside the trust
// state.
func (l Legacy) TrustJournal(bundle string) string { return Dir(l).join("trust", bundle+".journal") }
