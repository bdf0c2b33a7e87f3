package agent

import (
	"net"
	"slices"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/notice"
)

// changeNotice is why c is being replaced, as the services reading its
// files hear it: the reason, whether it is urgent, and, for a routine
// change, the deadline the reload budget must not pass: the safe margin
// of the certificate the servers have loaded now, so a renewal that came
// late (no window in time, failures) still reaches them before that
// certificate runs out.
func (a *Agent) changeNotice(c config.Certificate, cause notice.Reason, reason string, now time.Time) notice.Notice {
	n := notice.Notice{Reason: cause, Urgent: cause.Urgent(), Detail: reason}
	a.mu.Lock()
	prev := a.held[c.Name]
	a.mu.Unlock()
	if prev != nil {
		n.PreviousSerial = prev.record.Serial
		if !n.Urgent {
			n.Deadline = plan(c, prev, now).Latest
		}
	}
	return n
}

// describe fills in the facts about the certificate h that a hook needs.
func describe(c config.Certificate, h *held, n notice.Notice, written []string) notice.Notice {
	leaf := h.bundle.Leaf
	n.Kind, n.Name = notice.Certificate, c.Name
	n.Serial, n.NotBefore, n.NotAfter = h.record.Serial, leaf.NotBefore, leaf.NotAfter
	n.Issuer = leaf.Issuer.CommonName
	n.Names = nil
	add := func(s string) {
		if s != "" && !slices.Contains(n.Names, s) {
			n.Names = append(n.Names, s)
		}
	}
	add(leaf.Subject.CommonName)
	for _, d := range leaf.DNSNames {
		add(d)
	}
	for _, ip := range leaf.IPAddresses {
		add(net.IP(ip).String())
	}
	for _, u := range leaf.URIs {
		add(u.String())
	}
	n.Files = slices.Clone(written)
	n.Outputs = map[string]string{}
	for key, path := range map[string]string{"cert_file": c.Files.Cert, "key_file": c.Files.Key, "chain_file": c.Files.Chain,
		"fullchain_file": c.Files.Fullchain, "ca_file": c.Files.CA, "pkcs12_file": c.Files.PKCS12} {
		if path != "" {
			n.Outputs[key] = path
		}
	}
	return n
}
