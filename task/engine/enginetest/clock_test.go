package enginetest

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

func TestClockTimersFireInOrderAtTheirInstant(t *testing.T) {
	t.Parallel()
	c := NewClock(t0)
	type fired struct {
		name string
		at   time.Time
	}
	var got []fired
	add := func(name string, d time.Duration) *simTimer {
		return c.afterFunc(d, func() { got = append(got, fired{name, c.Now()}) })
	}
	add("c", 3*time.Minute)
	add("a", time.Minute)
	stopped := add("x", 2*time.Minute)
	add("b", time.Minute) // same instant as a, created later
	add("late", time.Hour)
	if !stopped.stop() {
		t.Fatal("stop of a pending timer reported false")
	}
	if stopped.stop() {
		t.Fatal("second stop reported true")
	}
	c.Add(5 * time.Minute)
	want := []fired{{"a", t0.Add(time.Minute)}, {"b", t0.Add(time.Minute)}, {"c", t0.Add(3 * time.Minute)}}
	if !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	if now := c.Now(); !now.Equal(t0.Add(5 * time.Minute)) {
		t.Fatalf("Now %v after Add, want %v", now, t0.Add(5*time.Minute))
	}
	if n := c.pending(); n != 1 {
		t.Fatalf("%d timers pending, want 1 (late)", n)
	}
	c.Set(t0.Add(time.Hour))
	if len(got) != 4 || got[3].name != "late" || !got[3].at.Equal(t0.Add(time.Hour)) {
		t.Fatalf("late timer: fired %v", got)
	}
}

func TestClockTimerSetInsideTimerFiresInTheSameAdd(t *testing.T) {
	t.Parallel()
	c := NewClock(t0)
	var at []time.Time
	c.afterFunc(time.Minute, func() {
		c.afterFunc(time.Minute, func() { at = append(at, c.Now()) })
	})
	c.Add(10 * time.Minute)
	if len(at) != 1 || !at[0].Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("chained timer fired at %v, want once at %v", at, t0.Add(2*time.Minute))
	}
}

// The heap agrees with sorting: random timers, random stops.
func TestClockTimerHeapMatchesSort(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	c := NewClock(t0)
	type want struct {
		at  time.Time
		seq int
	}
	var wants []want
	var got []int
	var timers []*simTimer
	for i := range 500 {
		d := time.Duration(rng.IntN(100)) * time.Second
		timers = append(timers, c.afterFunc(d, func() { got = append(got, i) }))
		wants = append(wants, want{t0.Add(d), i})
	}
	stopped := map[int]bool{}
	for range 100 {
		i := rng.IntN(len(timers))
		timers[i].stop()
		stopped[i] = true
	}
	var order []int
	slices.SortStableFunc(wants, func(a, b want) int { return a.at.Compare(b.at) })
	for _, w := range wants {
		if !stopped[w.seq] {
			order = append(order, w.seq)
		}
	}
	c.Add(time.Hour)
	if !slices.Equal(got, order) {
		t.Fatalf("fired %v\nwant %v", got, order)
	}
}

// The clock.Clock timers are the delegate Mock's and follow Add.
func TestClockDelegatedTimers(t *testing.T) {
	t.Parallel()
	c := NewClock(t0)
	c.Add(time.Minute)
	tm := c.Timer(time.Minute)
	ctx, cancel := c.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c.Add(30 * time.Second)
	select {
	case <-tm.C:
		t.Fatal("timer fired early")
	default:
	}
	if ctx.Err() != nil {
		t.Fatal("context expired early")
	}
	c.Add(time.Minute)
	select {
	case at := <-tm.C:
		if want := t0.Add(2 * time.Minute); !at.Equal(want) {
			t.Fatalf("timer fired at %v, want %v", at, want)
		}
	default:
		t.Fatal("timer did not fire")
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("context did not expire")
	}
}

func TestWakeHeapPopsInOrder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	var h wakeHeap
	var all []wakeEntry
	for range 1000 {
		e := wakeEntry{at: rng.Int64N(50), rank: int32(rng.IntN(20))}
		h.push(e)
		all = append(all, e)
	}
	slices.SortFunc(all, func(a, b wakeEntry) int {
		if a.less(b) {
			return -1
		}
		if b.less(a) {
			return 1
		}
		return 0
	})
	for i, want := range all {
		if got := h.pop(); got != want {
			t.Fatalf("pop %d: %v, want %v", i, got, want)
		}
	}
	if len(h) != 0 {
		t.Fatalf("%d entries left", len(h))
	}
}
