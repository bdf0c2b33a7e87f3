package config

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Telemetry is the HTTP endpoint serving /metrics, /healthz, /readyz and
// /v1/status while `certkeeper run` runs.
type Telemetry struct {
	// Listen is host:port; empty turns the endpoint off. Without a
	// telemetry block it is DefaultTelemetryListen: loopback, so nothing
	// is exposed to the network unless the operator says so.
	Listen string
}

// Watch lists certificate files that something else manages (a package, a
// colleague, another tool) whose expiry certkeeper exports as metrics.
type Watch struct {
	// Paths are files, directories (every file directly inside) or glob
	// patterns, absolute after loading.
	Paths []string
	// Rescan is how often every path is read again even without a file
	// system event, for file systems that send none (NFS, some FUSE).
	Rescan time.Duration
}

// Telemetry and watch defaults.
const (
	DefaultTelemetryListen = "127.0.0.1:9847"
	DefaultWatchRescan     = 5 * time.Minute
)

type rawTelemetry struct {
	// A pointer, because listen = "" (off) differs from no listen at all.
	Listen   *string   `hcl:"listen,optional"`
	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

type rawWatch struct {
	Paths    []string  `hcl:"paths"`
	Rescan   string    `hcl:"rescan,optional"`
	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

func (b *builder) telemetry(raws []rawTelemetry) Telemetry {
	t := Telemetry{Listen: DefaultTelemetryListen}
	if len(raws) == 0 {
		return t
	}
	for _, extra := range raws[1:] {
		b.fail(extra.DefRange, `only one "telemetry" block is allowed (the first is at line %d)`, raws[0].DefRange.Start.Line)
	}
	rt := raws[0]
	if rt.Listen == nil {
		return t
	}
	t.Listen = *rt.Listen
	if t.Listen == "" {
		return t
	}
	host, port, err := net.SplitHostPort(t.Listen)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 0 || n > 65535 || strings.ContainsAny(host, " /") {
		b.fail(valueRange(rt.Body, "listen", rt.DefRange), `listen must be host:port such as "127.0.0.1:9847" (or "" to turn the endpoint off), not %q`, t.Listen)
	}
	return t
}

func (b *builder) watch(raws []rawWatch, tel Telemetry) Watch {
	w := Watch{Rescan: DefaultWatchRescan}
	if len(raws) == 0 {
		return w
	}
	for _, extra := range raws[1:] {
		b.fail(extra.DefRange, `only one "watch" block is allowed (the first is at line %d)`, raws[0].DefRange.Start.Line)
	}
	rw := raws[0]
	at := valueRange(rw.Body, "paths", rw.DefRange)
	if len(rw.Paths) == 0 {
		b.fail(at, "paths must list at least one file, directory or glob pattern")
	}
	for _, p := range rw.Paths {
		if strings.TrimSpace(p) == "" {
			b.fail(at, "paths: an empty path watches nothing")
			continue
		}
		if _, err := filepath.Match(p, ""); err != nil {
			b.fail(at, "paths: %q is not a valid glob pattern", p)
			continue
		}
		w.Paths = append(w.Paths, b.path(p))
	}
	if rw.Rescan != "" {
		w.Rescan = b.duration(rw.Body, "rescan", rw.Rescan, rw.DefRange)
	}
	if tel.Listen == "" {
		// Watched files are only ever reported as metrics: with the
		// endpoint off the block would silently do nothing.
		b.fail(rw.DefRange, `watch needs the telemetry endpoint, which listen = "" turns off`)
	}
	return w
}
