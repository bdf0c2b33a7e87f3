// Package notice says what changed in a set of files certkeeper wrote, and
// why: which certificate or trust bundle, the reason (a renewal, a forced
// rotation, a revocation, a CA change ...), whether the change is urgent,
// and the facts a hook needs (serial, names, NotAfter, CAs). The agent and
// the trust keeper make notices; services decides with them when to reload
// (the reload budget) and hands them to check and reload commands, in the
// JSON document this package defines.
//
// A notice never holds key material or anything secret: names, serials,
// dates and file paths only.
package notice

import (
	"time"
)

// Kind is what changed.
type Kind string

// Kinds.
const (
	Certificate Kind = "certificate"
	TrustBundle Kind = "trust_bundle"
)

// Reason is why files changed.
type Reason string

// Reasons. Each is urgent or routine by default (Urgent); a notice may be
// made urgent for other causes (a deadline that the reload budget would
// miss).
const (
	// Issued: there was no usable certificate on disk (first run, or its
	// files or record unreadable).
	Issued Reason = "issued"
	// Renewal: the certificate's renewal point (or window) came.
	Renewal Reason = "renewal"
	// Rotation: someone asked for it (certkeeper rotate).
	Rotation Reason = "rotation"
	// Revocation: the certificate held was revoked in Vault.
	Revocation Reason = "revocation"
	// Expired: the certificate held expired (or is otherwise no longer
	// valid on its own terms).
	Expired Reason = "expired"
	// Config: the config changed what the certificate or its files must
	// be (names, key, mount, role, outputs).
	Config Reason = "config"
	// CAMove: re-issued from its mount's new default issuer after the soak.
	CAMove Reason = "ca_rotation"
	// Restore: files differed from the certificate held and were written
	// again from it; the certificate itself did not change.
	Restore Reason = "restore"
	// CAAdded: a trust bundle gained a CA (or was written the first time).
	CAAdded Reason = "ca_added"
	// CARemoved: a trust bundle lost a CA (it expired, or Vault dropped it).
	CARemoved Reason = "ca_removed"
	// TrustRefresh: a trust bundle's CRLs changed, its CAs did not.
	TrustRefresh Reason = "trust_refresh"
)

// Urgent says whether changes for this reason must reach servers at once,
// whatever their reload budget. Routine ones (a scheduled renewal, a move
// to a new issuer, a CRL refresh, a CA leaving a bundle, restored files)
// may wait for it; without them the server still serves something valid
// and accepts every valid client. An unknown reason is urgent: a new
// reason must be classed on purpose to be held back.
func (r Reason) Urgent() bool {
	switch r {
	case Renewal, CAMove, Restore, CARemoved, TrustRefresh:
		return false
	}
	return true
}

// Notice is one change, as hooks see it (the JSON field names are a
// contract: see README "Hooks that know what changed").
type Notice struct {
	Kind   Kind   `json:"kind"`
	Name   string `json:"name"`
	Reason Reason `json:"reason"`
	// Urgent: the change went past the reload budget.
	Urgent bool `json:"urgent"`
	// Detail says why in words (the log line's reason), when there is more
	// to say than Reason.
	Detail string `json:"detail,omitempty"`
	// Deadline, when set, is when the files servers have loaded stop
	// being good (a certificate's safe margin, a CRL's NextUpdate): a
	// routine change is loaded by then whatever the budget says.
	Deadline time.Time `json:"deadline,omitzero"`

	// Certificates: the new certificate.
	Serial    string    `json:"serial,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// Names are its common name and subject alternative names (DNS, IP,
	// URI), the common name first, without duplicates.
	Names []string `json:"names,omitempty"`
	// Issuer is the subject common name of the CA that signed it.
	Issuer string `json:"issuer,omitempty"`
	// PreviousSerial is the certificate it replaced, if any.
	PreviousSerial string `json:"previous_serial,omitempty"`

	// Trust bundles: the CAs it holds now, and those added or removed.
	CAs     []CA `json:"cas,omitempty"`
	Added   []CA `json:"added,omitempty"`
	Removed []CA `json:"removed,omitempty"`

	// Files are the files written. Outputs name the configured ones by
	// their config key: cert_file, key_file, chain_file, fullchain_file,
	// ca_file, pkcs12_file for a certificate (all it has, written or
	// not), ca_file and crl_file for a trust bundle.
	Files   []string          `json:"files"`
	Outputs map[string]string `json:"outputs,omitempty"`
}

// CA is a CA certificate in a trust bundle.
type CA struct {
	Subject  string    `json:"subject"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
}

// Source names where a change came from, for logs: "certificate web",
// "trust_bundle clients".
func (n Notice) Source() string { return string(n.Kind) + " " + n.Name }

// Document is the JSON a check or reload command can read from the file
// named by $CERTKEEPER_CHANGES: every change its batch holds.
type Document struct {
	// Version changes only when a field changes meaning or goes away; new
	// fields may appear without it.
	Version int    `json:"version"`
	Service string `json:"service"`
	// Urgent: at least one change is.
	Urgent  bool     `json:"urgent"`
	Changes []Notice `json:"changes"`
}

// DocumentVersion is the version of Document written now.
const DocumentVersion = 1
