package main

import (
	"os"
	"runtime/debug"
	"strconv"
)

// gcPercent is the collector's target (GOGC) unless the environment sets
// GOGC: the heap may grow this many percent over what was live after the
// last collection before the next one starts. Go's default, 100, lets a
// daemon holding 60 MB for 10,000 certificates grow to 120 MB during a
// pass over all of them. A string so a build can try others with
// -ldflags -X.
var gcPercent = "50"

// setGC applies gcPercent when the environment leaves GOGC unset.
func setGC() {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	if p, err := strconv.Atoi(gcPercent); err == nil {
		debug.SetGCPercent(p)
	}
}
