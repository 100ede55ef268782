package enginetest

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
)

// Clock is the simulation's clock: time moves only by Add and Set. Unlike
// clock.Mock it never sleeps (the Mock sleeps a millisecond on every Add,
// Set and fired timer so goroutines can catch up, which was seconds of
// every simulated week), because the simulation's runtimes read only Now:
// they are driven by Tick.
//
// The harness's own timers (the Executor's run durations) live in a heap
// here and fire synchronously, in time order, during Add and Set, with Now
// at each timer's instant. The clock.Clock timers, tickers, sleeps and
// contexts (used only by goroutine-mode hosts: Run) are delegated to an
// internal clock.Mock, which is moved along (with its sleeps) only after
// one of them was requested.
//
// A Clock is safe for concurrent use; Add and Set should be called from
// one goroutine at a time.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers timerHeap
	seq    int64
	mock   *clock.Mock
	// mocked: a clock.Clock timer, ticker, sleep or context was requested,
	// so the Mock must follow Now.
	mocked bool
}

var _ clock.Clock = (*Clock)(nil)

// NewClock returns a Clock at t.
func NewClock(t time.Time) *Clock {
	m := clock.NewMock()
	m.Set(t)
	return &Clock{now: t, mock: m}
}

// Now returns the simulated time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Since returns the simulated time elapsed since t.
func (c *Clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// Until returns the simulated time until t.
func (c *Clock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

// Add moves the clock forward by d, firing the timers due by then.
func (c *Clock) Add(d time.Duration) {
	c.Set(c.Now().Add(d))
}

// Set moves the clock to t, firing the timers due by then in time order
// (Now is each timer's instant while its function runs). A t before Now
// sets the clock back and fires nothing.
func (c *Clock) Set(t time.Time) {
	for {
		c.mu.Lock()
		if len(c.timers) == 0 || c.timers[0].at.After(t) {
			c.now = t
			mocked := c.mocked
			c.mu.Unlock()
			if mocked {
				c.mock.Set(t)
			}
			return
		}
		tm := heap.Pop(&c.timers).(*simTimer)
		if tm.at.After(c.now) {
			c.now = tm.at
		}
		at, mocked := c.now, c.mocked
		c.mu.Unlock()
		if mocked {
			c.mock.Set(at)
		}
		tm.fn()
	}
}

// afterFunc calls f (synchronously, from Add or Set) once the clock has
// moved d past now.
func (c *Clock) afterFunc(d time.Duration, f func()) *simTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &simTimer{c: c, at: c.now.Add(d), seq: c.seq, fn: f}
	heap.Push(&c.timers, t)
	return t
}

// pending returns how many harness timers wait.
func (c *Clock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// simTimer is one harness timer.
type simTimer struct {
	c   *Clock
	at  time.Time
	seq int64 // creation order: timers at one instant fire in this order
	fn  func()
	idx int // in the heap; -1 once fired or stopped
}

// stop cancels the timer; it reports whether the timer was pending.
func (t *simTimer) stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.idx < 0 {
		return false
	}
	heap.Remove(&t.c.timers, t.idx)
	return true
}

type timerHeap []*simTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*simTimer)
	t.idx = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.idx = -1
	return t
}

// useMock brings the delegate Mock to Now and keeps it following.
func (c *Clock) useMock() *clock.Mock {
	c.mu.Lock()
	now, was := c.now, c.mocked
	c.mocked = true
	c.mu.Unlock()
	if !was || !c.mock.Now().Equal(now) {
		c.mock.Set(now)
	}
	return c.mock
}

// After is clock.Mock's After at Now.
func (c *Clock) After(d time.Duration) <-chan time.Time { return c.useMock().After(d) }

// AfterFunc is clock.Mock's AfterFunc at Now: f runs in its own goroutine
// once the clock has moved d on.
func (c *Clock) AfterFunc(d time.Duration, f func()) *clock.Timer {
	return c.useMock().AfterFunc(d, f)
}

// Sleep blocks until another goroutine has moved the clock d on.
func (c *Clock) Sleep(d time.Duration) { c.useMock().Sleep(d) }

// Tick is clock.Mock's Tick at Now.
func (c *Clock) Tick(d time.Duration) <-chan time.Time { return c.useMock().Tick(d) }

// Ticker is clock.Mock's Ticker at Now.
func (c *Clock) Ticker(d time.Duration) *clock.Ticker { return c.useMock().Ticker(d) }

// Timer is clock.Mock's Timer at Now.
func (c *Clock) Timer(d time.Duration) *clock.Timer { return c.useMock().Timer(d) }

// WithDeadline is clock.Mock's WithDeadline.
func (c *Clock) WithDeadline(parent context.Context, d time.Time) (context.Context, context.CancelFunc) {
	return c.useMock().WithDeadline(parent, d)
}

// WithTimeout is clock.Mock's WithTimeout at Now.
func (c *Clock) WithTimeout(parent context.Context, t time.Duration) (context.Context, context.CancelFunc) {
	return c.useMock().WithTimeout(parent, t)
}
