package daemon

import (
	"context"
	"sync"
)

// group runs the daemon's parts. Each part starts in order; stop ends
// them in the reverse order, each stop waiting for its part to finish, so
// a part never outlives one it depends on.
type group struct {
	stops []func()
}

// start starts one part. run is called with a context the part's stop
// cancels, on its own goroutine; stop then waits for it to return, and
// runs after (when not nil) once it has.
func (g *group) start(ctx context.Context, run func(ctx context.Context), after func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { run(ctx) })
	g.add(func() {
		cancel()
		wg.Wait()
		if after != nil {
			after()
		}
	})
}

// add records the stop of a part started some other way.
func (g *group) add(stop func()) { g.stops = append(g.stops, stop) }

// stop ends every part, last started first. It is safe to call twice.
func (g *group) stop() {
	for i := len(g.stops) - 1; i >= 0; i-- {
		g.stops[i]()
	}
	g.stops = nil
}
