package agent

import (
	"strings"
	"sync"
	"time"

	"github.com/certkeeper/certkeeper/config"
	"github.com/certkeeper/certkeeper/internal/renewal"
)

// plan is when h, held for c, is renewed as of now: the renewal point of
// the policy, moved into c's renewal windows while the certificate keeps
// its safe margin (renewal.Schedule).
func plan(c config.Certificate, h *held, now time.Time) renewal.Plan {
	p := renewal.Policy{Fraction: c.RenewFraction, Jitter: c.RenewJitter, Before: c.RenewBefore}
	t := renewal.Times{NotBefore: h.bundle.Leaf.NotBefore, NotAfter: h.bundle.Leaf.NotAfter, Issued: h.record.IssuedAt}
	return renewal.Schedule(t, p, windowsOf(c), renewal.UnitsFromSerial(c.Name, h.record.Serial), now)
}

// windowCache keeps the parsed windows of each distinct set of
// renew_window values, so a fleet of certificates sharing the default
// parses it once. Like sharedCAs it is keyed by content and what it holds
// is safe to share (renewal.Window serializes its own use).
var windowCache sync.Map // key (windowKey) -> renewal.Windows

func windowKey(ws []config.RenewWindow) string {
	var b strings.Builder
	for _, w := range ws {
		b.WriteString(w.Cron + "\x00" + w.Length.String() + "\x00" + w.Zone + "\x01")
	}
	return b.String()
}

// windowsOf returns c's renewal windows, nil when it may renew at any
// time. The config checked them when it loaded.
func windowsOf(c config.Certificate) renewal.Windows {
	if len(c.RenewWindows) == 0 {
		return nil
	}
	key := windowKey(c.RenewWindows)
	if ws, ok := windowCache.Load(key); ok {
		return ws.(renewal.Windows)
	}
	var ws renewal.Windows
	for _, cw := range c.RenewWindows {
		loc, err := cw.Location()
		if err != nil {
			continue
		}
		w, err := renewal.NewWindow(cw.Cron, cw.Length, loc)
		if err != nil {
			continue
		}
		ws = append(ws, w)
	}
	windowCache.Store(key, ws)
	return ws
}

// WindowStatus is what status shows about a certificate's renewal
// windows.
type WindowStatus struct {
	// Windows are the renew_window values, as written.
	Windows []string `json:"windows"`
	// NextStart and NextEnd are the window open now, or the next one.
	NextStart time.Time `json:"next_start,omitzero"`
	NextEnd   time.Time `json:"next_end,omitzero"`
	// Due is the policy's renewal point before any window, Latest the
	// safe margin a window may not delay the renewal past.
	Due    time.Time `json:"due,omitzero"`
	Latest time.Time `json:"latest,omitzero"`
	// Outside is true when no window opens between Due and Latest, so the
	// renewal (RenewAt) happens outside any window; Note says so in words.
	Outside bool   `json:"outside,omitempty"`
	Note    string `json:"note,omitempty"`
}

// windowStatus describes c's windows as of now, for h's plan pl; nil
// when c has none.
func windowStatus(c config.Certificate, pl renewal.Plan, now time.Time) *WindowStatus {
	ws := windowsOf(c)
	if len(c.RenewWindows) == 0 {
		return nil
	}
	st := &WindowStatus{Due: pl.Due, Latest: pl.Latest, Outside: pl.Outside}
	for _, w := range c.RenewWindows {
		st.Windows = append(st.Windows, w.Spec)
	}
	if start, end, ok := ws.Open(now); ok {
		st.NextStart, st.NextEnd = start, end
	}
	if pl.Outside {
		st.Note = outsideNote(pl)
	}
	return st
}

// outsideNote says why a renewal happens outside its windows.
func outsideNote(pl renewal.Plan) string {
	return "no renewal window opens between the renewal point " + pl.Due.UTC().Format(time.RFC3339) +
		" and the safe margin " + pl.Latest.UTC().Format(time.RFC3339) + ", so the renewal happens at its point, outside any window"
}
