package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	// Named time zones work on hosts without /usr/share/zoneinfo (a
	// minimal container): the zone database is built in (about 400 KB).
	_ "time/tzdata"

	"github.com/hashicorp/cronexpr"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/zclconf/go-cty/cty"
)

// RenewWindow is one window in which routine renewals may happen, as the
// config gives it: a recurring opening (a cron expression) and how long
// it stays open. internal/renewal does the timing.
type RenewWindow struct {
	// Spec is the window as written, for messages and status.
	Spec string
	// Cron is the 5-field cron expression (minute hour day-of-month month
	// day-of-week) of its openings.
	Cron   string
	Length time.Duration
	// Zone is the IANA time zone Cron is read in; empty is the host's
	// local time.
	Zone string
}

// AnyTime is the renew_window value that lifts a default window for one
// certificate.
const AnyTime = "any"

// Defaults of CA rotation.
const (
	// DefaultCASoak is how long a new CA must have been in this host's
	// trust bundles before leaves move to it: a day, so every host of a
	// fleet has refreshed its bundles (crl_refresh, minutes) and reloaded
	// its servers many times over, and an operator has seen it in
	// Prometheus, before the first client presents a leaf from it.
	DefaultCASoak = 24 * time.Hour
	// DefaultIssuerCheck is how often the issuers of each certificate's
	// mount are listed to notice a new default issuer.
	DefaultIssuerCheck = 10 * time.Minute
)

// dayNames are the day-of-week names a window accepts, as cronexpr
// spells them.
var dayNames = map[string]string{
	"mon": "mon", "monday": "mon", "tue": "tue", "tuesday": "tue", "wed": "wed", "wednesday": "wed",
	"thu": "thu", "thursday": "thu", "fri": "fri", "friday": "fri", "sat": "sat", "saturday": "sat",
	"sun": "sun", "sunday": "sun",
}

// cronAliases are the @ forms of cronexpr that mean a whole schedule.
var cronAliases = []string{"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually"}

// ParseRenewWindow reads one window. Two forms:
//
//	"Mon-Fri 02:00-05:00"                    days, then hours (end may be 24:00)
//	"Sat,Sun 22:00-02:00 Europe/Berlin"      crossing midnight, in a zone
//	"02:00-05:00"                            every day
//	"0 2 * * 1-5 for 3h"                     a 5-field cron expression and a length
//	"@daily for 90m UTC"
//
// A trailing IANA zone name ("Europe/Berlin", "UTC") sets the zone; the
// default is the host's local time.
func ParseRenewWindow(spec string) (RenewWindow, error) {
	w := RenewWindow{Spec: spec}
	fields := strings.Fields(spec)
	if len(fields) == 0 {
		return w, errors.New(`is empty (examples: "Mon-Fri 02:00-05:00", "0 2 * * 1-5 for 3h")`)
	}
	if i := slices.Index(fields, "for"); i >= 0 {
		return w, w.fromCron(fields[:i], fields[i+1:])
	}
	return w, w.fromDaysHours(fields)
}

func (w *RenewWindow) fromCron(cron, rest []string) error {
	switch {
	case len(cron) == 1 && slices.Contains(cronAliases, strings.ToLower(cron[0])):
	case len(cron) == 5:
	default:
		return fmt.Errorf("cron part %q must have 5 fields (minute hour day-of-month month day-of-week) or be one of %s", strings.Join(cron, " "), strings.Join(cronAliases, ", "))
	}
	if len(rest) == 0 || len(rest) > 2 {
		return errors.New(`needs a length after "for", and at most a time zone after it (example: "0 2 * * 1-5 for 3h Europe/Berlin")`)
	}
	d, err := ParseDuration(rest[0])
	if err != nil {
		return fmt.Errorf("length: %w", err)
	}
	w.Cron, w.Length = strings.Join(cron, " "), d
	if len(rest) == 2 {
		w.Zone = rest[1]
	}
	return w.check()
}

func (w *RenewWindow) fromDaysHours(fields []string) error {
	// [days] hours [zone]: the hours are the field with a colon.
	at := slices.IndexFunc(fields, func(f string) bool { return strings.Contains(f, ":") })
	if at < 0 || at > 1 || len(fields)-at > 2 {
		return errors.New(`must be days and hours ("Mon-Fri 02:00-05:00"), or a cron expression and a length ("0 2 * * 1-5 for 3h"), each optionally followed by a time zone`)
	}
	days := "*"
	if at == 1 {
		var err error
		if days, err = cronDays(fields[0]); err != nil {
			return err
		}
	}
	if at+1 < len(fields) {
		w.Zone = fields[at+1]
	}
	fields = fields[at:]
	from, to, ok := strings.Cut(fields[0], "-")
	start, err1 := clock(from, false)
	end, err2 := clock(to, true)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("hours %q must be HH:MM-HH:MM, such as 02:00-05:00 (22:00-02:00 crosses midnight)", fields[0])
	}
	switch {
	case end == start:
		return fmt.Errorf("hours %q open and close at once; the whole day is 00:00-24:00", fields[0])
	case end < start:
		end += 24 * time.Hour // crosses midnight
	}
	w.Cron = fmt.Sprintf("%d %d * * %s", int(start.Minutes())%60, int(start.Hours()), days)
	w.Length = end - start
	return w.check()
}

// cronDays turns "Mon-Fri", "Sat,Sun" or "daily" into a day-of-week field.
func cronDays(s string) (string, error) {
	if l := strings.ToLower(s); l == "daily" || l == "*" {
		return "*", nil
	}
	var items []string
	for _, item := range strings.Split(strings.ToLower(s), ",") {
		var names []string
		for _, d := range strings.SplitN(item, "-", 2) {
			n, ok := dayNames[d]
			if !ok {
				return "", fmt.Errorf("days %q: %q is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun, ranges such as Mon-Fri, lists such as Sat,Sun, or daily)", s, d)
			}
			names = append(names, n)
		}
		items = append(items, strings.Join(names, "-"))
	}
	return strings.Join(items, ","), nil
}

// clock parses HH:MM as time after midnight; end allows 24:00.
func clock(s string, end bool) (time.Duration, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || len(m) != 2 || err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && (!end || mm != 0)) {
		return 0, fmt.Errorf("%q is not a time of day", s)
	}
	return time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute, nil
}

// windowReference is where the check that a window ever opens starts: a
// fixed date, so validation does not depend on the clock.
var windowReference = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// check parses what fromCron or fromDaysHours produced, as the agent will.
func (w *RenewWindow) check() error {
	loc, err := w.Location()
	if err != nil {
		return err
	}
	expr, err := cronexpr.Parse(w.Cron)
	if err != nil {
		return fmt.Errorf("cron expression %q: %w", w.Cron, err)
	}
	if expr.Next(windowReference.In(loc)).IsZero() {
		return fmt.Errorf("cron expression %q never matches (a day such as 31 February)", w.Cron)
	}
	if w.Length < time.Minute {
		return fmt.Errorf("length %s is shorter than a minute", w.Length)
	}
	return nil
}

// Location is the window's time zone.
func (w RenewWindow) Location() (*time.Location, error) {
	switch w.Zone {
	case "":
		return time.Local, nil
	case "Local":
		return nil, errors.New(`time zone "Local": leave the zone out for the host's local time`)
	}
	loc, err := time.LoadLocation(w.Zone)
	if err != nil {
		return nil, fmt.Errorf("time zone %q is not an IANA zone name such as Europe/Berlin or UTC", w.Zone)
	}
	return loc, nil
}

// renewWindows reads a renew_window attribute: a string or a list of
// strings, each a window (ParseRenewWindow), or "any". isSet is false when
// the attribute is absent; windows is nil for "any".
func (b *builder) renewWindows(expr hcl.Expression, body hcl.Body, fallback hcl.Range) (windows []RenewWindow, isSet bool) {
	if expr == nil {
		return nil, false
	}
	rng := valueRange(body, "renew_window", fallback)
	val, diags := expr.Value(nil)
	var specs []string
	switch {
	case diags.HasErrors():
		b.diags = append(b.diags, diags...)
		return nil, true
	case val.IsNull():
		return nil, false
	case val.Type() == cty.String:
		specs = []string{val.AsString()}
	default:
		if diags := gohcl.DecodeExpression(expr, nil, &specs); diags.HasErrors() || len(specs) == 0 {
			b.fail(rng, `renew_window must be a window, a list of windows, or "any"`)
			return nil, true
		}
	}
	if len(specs) == 1 && specs[0] == AnyTime {
		return nil, true
	}
	for _, s := range specs {
		if s == AnyTime {
			b.fail(rng, `renew_window: "any" cannot be one of several windows; use it alone`)
			continue
		}
		w, err := ParseRenewWindow(s)
		if err != nil {
			b.fail(rng, "renew_window %q %v", s, err)
			continue
		}
		windows = append(windows, w)
	}
	return windows, true
}

// caRotation reads the top-level ca_soak and issuer_check.
func (b *builder) caRotation(raw *rawFile, cfg *Config) {
	cfg.CASoak, cfg.IssuerCheck = DefaultCASoak, DefaultIssuerCheck
	if raw.CASoak != "" {
		cfg.CASoak = b.duration(raw.Body, "ca_soak", raw.CASoak, raw.Body.MissingItemRange())
	}
	if raw.IssuerCheck != "" {
		cfg.IssuerCheck = b.duration(raw.Body, "issuer_check", raw.IssuerCheck, raw.Body.MissingItemRange())
	}
}
