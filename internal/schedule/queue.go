// Package schedule is a timer queue: one heap and one timer for any number
// of certificates, so an idle agent with ten thousand certificates sleeps
// on a single timer instead of ten thousand goroutines.
package schedule

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// MaxSleep bounds how long the queue trusts a single timer. Go timers run
// on the monotonic clock, which stops while a VM is suspended; waking at
// least this often and comparing wall-clock times means a renewal that fell
// due during a suspend runs within MaxSleep of resume.
const MaxSleep = time.Minute

// Queue holds keys with the wall-clock time each is due. The zero value is
// not usable; call New.
type Queue struct {
	now func() time.Time
	// newTimer makes the timer Next sleeps on; tests replace it to stand in
	// for a monotonic clock that stood still through a suspend.
	newTimer func(time.Duration) (<-chan time.Time, func() bool)

	mu    sync.Mutex
	items itemHeap
	index map[string]*item
	wake  chan struct{}
}

// New returns an empty queue reading time from now (time.Now if nil).
func New(now func() time.Time) *Queue {
	if now == nil {
		now = time.Now
	}
	return &Queue{now: now, newTimer: realTimer, index: map[string]*item{}, wake: make(chan struct{}, 1)}
}

func realTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// Set schedules key at t, replacing any earlier schedule for it.
func (q *Queue) Set(key string, t time.Time) {
	// A time made from time.Now() carries a monotonic reading, and Sub
	// between two such times ignores the wall clock, which would make a
	// retry set before a suspend wait out its full delay in awake time.
	// Dropping the reading keeps every comparison on the wall clock.
	t = t.Round(0)
	q.mu.Lock()
	if it, ok := q.index[key]; ok {
		it.at = t
		heap.Fix(&q.items, it.pos)
	} else {
		it := &item{key: key, at: t}
		heap.Push(&q.items, it)
		q.index[key] = it
	}
	q.mu.Unlock()
	q.poke()
}

// Remove unschedules key.
func (q *Queue) Remove(key string) {
	q.mu.Lock()
	if it, ok := q.index[key]; ok {
		heap.Remove(&q.items, it.pos)
		delete(q.index, key)
	}
	q.mu.Unlock()
	q.poke()
}

// When returns when key is due, if it is scheduled.
func (q *Queue) When(key string) (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if it, ok := q.index[key]; ok {
		return it.at, true
	}
	return time.Time{}, false
}

// Len is the number of scheduled keys.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Next blocks until the earliest key is due, removes it from the queue and
// returns it. It returns ctx's error when ctx ends first.
func (q *Queue) Next(ctx context.Context) (string, error) {
	for {
		q.mu.Lock()
		wait := MaxSleep
		if len(q.items) > 0 {
			first := q.items[0]
			d := first.at.Sub(q.now())
			if d <= 0 {
				heap.Pop(&q.items)
				delete(q.index, first.key)
				q.mu.Unlock()
				return first.key, nil
			}
			wait = min(d, MaxSleep)
		}
		q.mu.Unlock()

		fired, stop := q.newTimer(wait)
		select {
		case <-ctx.Done():
			stop()
			return "", ctx.Err()
		case <-q.wake:
			stop()
		case <-fired:
		}
	}
}

type item struct {
	key string
	at  time.Time
	pos int
}

type itemHeap []*item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].key < h[j].key
	}
	return h[i].at.Before(h[j].at)
}
func (h itemHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *itemHeap) Push(x any) {
	it := x.(*item)
	it.pos = len(*h)
	*h = append(*h, it)
}
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}
