package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/certkeeper/certkeeper/agent"
	"github.com/certkeeper/certkeeper/services"
)

// changeNotes are what status says about when a certificate changes:
// its renewal window, a CA rotation it waits for, an issuer that expires
// first.
func changeNotes(st agent.Status, now time.Time) []string {
	var out []string
	if w := st.Window; w != nil {
		n := "window " + strings.Join(w.Windows, ", ")
		switch {
		case w.Outside:
			n += ": none opens before the safe margin, so it renews at its point, outside any window"
		case !w.NextStart.IsZero() && !w.NextStart.After(now):
			n += ": open now, until " + w.NextEnd.Local().Format("Mon 15:04")
		case !w.NextStart.IsZero():
			n += ": next opens in " + until(now, w.NextStart) + " (" + w.NextStart.Local().Format("Mon 15:04") + ")"
		}
		out = append(out, n)
	}
	if ca := st.CARotation; ca != nil {
		n := "new issuer " + ca.NewIssuer
		switch {
		case !ca.MoveAt.IsZero():
			n += ", moves to it in " + until(now, ca.MoveAt)
		case ca.Pinned && ca.SoakEnd.IsZero():
			n += ": not in this host's trust bundles yet; renewals stay with the old issuer"
		case ca.Pinned:
			n += ": renewals stay with the old issuer until the soak ends in " + until(now, ca.SoakEnd)
		case ca.Note != "":
			n += ": " + ca.Note
		}
		out = append(out, n)
	}
	if st.OutlivesIssuer {
		out = append(out, "outlives its issuer, which expires in "+until(now, st.IssuerNotAfter))
	}
	return out
}

// heldNote says that the reload budget holds changes back, and until when.
func heldNote(st services.Status, now time.Time) string {
	if st.Backlog == 0 || st.HeldUntil.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d change(s) held by min_reload_interval, reload in %s", st.Backlog, until(now, st.HeldUntil))
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
