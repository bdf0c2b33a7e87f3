package trust

import (
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/vault"
)

// issuersTTL is how long a mount's list of issuers is used before it is
// listed again. Issuers change when a CA is rotated, which takes days; a
// CRL can change any minute, so CRLs are fetched every crl_refresh and
// issuers at most this often: at a 1-minute crl_refresh that saves five
// of every seven requests a shipped web host makes.
const issuersTTL = 5 * time.Minute

// sinceMargin is taken off Vault's Date when asking for a CRL "modified
// since" the last answer. Vault compares with the time it stored at the
// start of a rebuild, and an answer can carry the CRL from before a rebuild
// that was under way while it was read; HA nodes' clocks also differ a
// little. A minute covers both, at the cost of fetching a CRL whole once or
// twice after it changed.
const sinceMargin = time.Minute

// memo is what the keeper remembers between rounds to spare Vault: each
// mount's issuers, and each issuer's last CRL with the time Vault served
// it.
type memo struct {
	mu          sync.Mutex
	issuerLists map[string]issuerList
	crls        map[string]servedCRL
}

type issuerList struct {
	list []vault.CAIssuer
	at   time.Time
}

type servedCRL struct {
	data []byte
	date time.Time
}

func newMemo() *memo {
	return &memo{issuerLists: map[string]issuerList{}, crls: map[string]servedCRL{}}
}

// issuers returns the issuers of mount listed less than issuersTTL before
// now, if any.
func (m *memo) issuers(mount string, now time.Time) ([]vault.CAIssuer, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.issuerLists[mount]
	if !ok || now.Sub(l.at) >= issuersTTL || now.Before(l.at) {
		return nil, false
	}
	return l.list, true
}

func (m *memo) setIssuers(mount string, list []vault.CAIssuer, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.issuerLists[mount] = issuerList{list: list, at: now}
}

func (m *memo) forgetIssuers(mount string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.issuerLists, mount)
}

// crl returns the last CRL Vault served for an issuer and the time to ask
// for changes since; nil when there is none, or Vault sent no Date.
func (m *memo) crl(mount, ref string) ([]byte, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.crls[mount+"\x00"+ref]
	if !ok || c.date.IsZero() {
		return nil, time.Time{}
	}
	return c.data, c.date.Add(-sinceMargin)
}

func (m *memo) setCRL(mount, ref string, data []byte, date time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crls[mount+"\x00"+ref] = servedCRL{data: data, date: date}
}
