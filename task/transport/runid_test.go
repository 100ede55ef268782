package transport_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task/transport"
)

func TestRunIDOrdersByTimeAndIsDeterministic(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		a, b int64
		less bool
	}{
		{transport.RunID(at, transport.Scheduled), transport.RunID(at.Add(time.Millisecond), transport.Scheduled), true},
		{transport.RunID(at, transport.Scheduled), transport.RunID(at, transport.Manual), true},
		{transport.RunID(at, transport.Triggered), transport.RunID(at.Add(time.Millisecond), transport.Scheduled), true},
		{transport.RunID(at, transport.Manual), transport.RunID(at.In(time.FixedZone("x", 3600)), transport.Manual), false},
	}
	for i, c := range cases {
		if got := c.a < c.b; got != c.less {
			t.Errorf("case %d: %d < %d = %v", i, c.a, c.b, got)
		}
	}
	if transport.RunID(at, transport.Manual) != transport.RunID(at.In(time.FixedZone("x", 3600)), transport.Manual) {
		t.Error("run id depends on the zone")
	}
}

// The stratified automatic delay: every offset inside the window, each
// device in its own part, at most the budget (plus one at a part border)
// per second; the interval mode keeps schedule.RandomOffset.
func TestOffsetStratifiesTheAutomaticDelay(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	auto := schedule.Default(schedule.EveryHours, at, time.UTC)
	auto.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayAutomatic, IntervalMinutes: 1}
	for _, n := range []int{2, 10, 600, 10000, 50000} {
		window := auto.DelayWindow(n)
		perSec := map[int64]int{}
		for i := range n {
			d := fmt.Sprintf("d%06d", i)
			off := transport.Offset(auto, n, &transport.Slot{Index: i, Of: n}, "task", d, 3)
			if off < 0 || off >= window {
				t.Fatalf("n=%d: offset %s outside [0, %s)", n, off, window)
			}
			if again := transport.Offset(auto, n, &transport.Slot{Index: i, Of: n}, "task", d, 3); again != off {
				t.Fatalf("not deterministic")
			}
			perSec[int64(off/time.Second)]++
		}
		limit := schedule.DefaultStartsPerSecond + 1
		if window == schedule.MaxAutoWindow {
			limit = n/3600 + 2 // beyond 36,000 devices the window is capped
		}
		for sec, c := range perSec {
			if c > limit {
				t.Errorf("n=%d: %d starts in second %d, budget %d", n, c, sec, limit)
			}
		}
	}
	iv := auto
	iv.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayInterval, IntervalMinutes: 30}
	if got, want := transport.Offset(iv, 10, &transport.Slot{Index: 3, Of: 10}, "task", "d", 3), schedule.RandomOffset(30*time.Minute, "task", "d", 3); got != want {
		t.Errorf("interval mode: %s, want schedule.RandomOffset %s", got, want)
	}
}
