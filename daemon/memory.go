package daemon

import (
	"context"
	"time"
)

// After the daemon is ready, a burst of passes (a mass rotate, a CA
// rotation, every certificate coming due together after a long stop)
// grows the heap as much as the first pass did, and the runtime keeps
// what it grew mapped: its scavenger only gives back what lies above
// about twice the live heap, and the daemon then idles for hours.
const (
	// burstPasses is how many passes make a burst worth a forced
	// collection; fewer than that leave little behind.
	burstPasses = 100
	// burstSettle is how long passes must stop before the burst counts
	// as over: a release in the middle of one would be undone at once.
	burstSettle = 5 * time.Second
)

// releaseAfterBursts counts the passes wake reports and, once at least
// min of them came and then none for settle, calls release once (the
// daemon passes debug.FreeOSMemory: one full collection, some
// milliseconds, per burst rather than per certificate). It returns when
// ctx ends.
//
// It is called once the daemon is ready, and the first pass over every
// certificate counts as a burst: the release at ready comes before the
// output watch takes in every output path and the services' first check,
// and at 10,000 certificates the heap grew from 55 to 80 MB again within
// half a second of it (gctrace), to stay there while the daemon idled.
func releaseAfterBursts(ctx context.Context, wake <-chan struct{}, settle time.Duration, min int, release func()) {
	n := min
	quiet := time.NewTimer(settle)
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
			n++
			quiet.Reset(settle)
		case <-quiet.C:
			if n >= min {
				release()
			}
			n = 0
		}
	}
}
