// Package statedir is the one place that knows the layout of state_dir:
// every path certkeeper keeps there is made here, and nowhere else.
//
//	<state_dir>/
//	  <certificate>.json       where a certificate came from, and its CA chain
//	  <certificate>.journal    crash journal of the certificate's file set
//	  services.json            service states, for `certkeeper status`
//	  services.journal         its crash journal
//	  control.sock             the running daemon's control socket
//	  trust/
//	    status.json            trust bundle states
//	    status.journal         its crash journal
//	    <bundle>.journal       crash journal of a bundle's files
//	  ca/
//	    issuers.json           when each issuer of the certificates' mounts was first seen
//	    issuers.journal        its crash journal
//
// Certificate records share the top level with the services files, so a
// certificate named "services" would share services.journal with them; a
// per-kind layout is the way out, and this package is where it goes.
//
// The package only builds paths and creates the directory; it reads and
// writes no file.
package statedir

import (
	"fmt"
	"os"
	"path/filepath"
)

// Dir is a state directory, as the config's state_dir names it.
type Dir string

// Mode is the state directory's mode: records, journals and the control
// socket are for the user that owns certkeeper's keys only.
const Mode = 0o700

// Ensure creates the directory (and its parents) if it is missing.
func (d Dir) Ensure() error {
	if err := os.MkdirAll(string(d), Mode); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	return nil
}

// CertificateRecord is where a certificate's record (mount, role, serial,
// CA chain) is kept.
func (d Dir) CertificateRecord(name string) string { return d.join(name + ".json") }

// CertificateJournal is the crash journal of a certificate's file set.
func (d Dir) CertificateJournal(name string) string { return d.join(name + ".journal") }

// ServicesState holds the services' states for `certkeeper status`.
func (d Dir) ServicesState() string { return d.join("services.json") }

// ServicesJournal is the crash journal of ServicesState.
func (d Dir) ServicesJournal() string { return d.join("services.journal") }

// Trust is the directory of the trust bundles' state: a directory of its
// own, since a bundle may share a certificate's name.
func (d Dir) Trust() string { return d.join("trust") }

// TrustState holds the trust bundles' states for `certkeeper status`.
func (d Dir) TrustState() string { return d.join("trust", "status.json") }

// TrustStateJournal is the crash journal of TrustState.
func (d Dir) TrustStateJournal() string { return d.join("trust", "status.journal") }

// TrustJournal is the crash journal of a trust bundle's files.
func (d Dir) TrustJournal(bundle string) string { return d.join("trust", bundle+".journal") }

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
