package hierarchy

import (
	"testing"
	"time"
)

// TestBackoff: the nth failure in a row waits a jittered w in [w/2, w],
// w doubling from the minimum up to the maximum, and the draws differ.
func TestBackoff(t *testing.T) {
	minB, maxB := time.Second, 30*time.Second
	for n, w := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 5: 16 * time.Second, 6: 30 * time.Second, 60: 30 * time.Second} {
		seen := map[time.Duration]bool{}
		for range 200 {
			got := backoff(minB, maxB, n)
			if got < w/2 || got > w {
				t.Fatalf("failure %d: wait %v, want in [%v, %v]", n, got, w/2, w)
			}
			seen[got] = true
		}
		if len(seen) < 10 {
			t.Fatalf("failure %d: only %d distinct waits in 200 draws: no jitter", n, len(seen))
		}
	}
}

// TestSyncConfigDefaults: zero is the documented defaults; negative or
// inverted bounds are invalid.
func TestSyncConfigDefaults(t *testing.T) {
	c, err := SyncConfig{}.withDefaults()
	if err != nil || c.Interval != DefaultSyncInterval || c.MinBackoff != DefaultMinBackoff || c.MaxBackoff != DefaultMaxBackoff {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	for _, bad := range []SyncConfig{{Interval: -1}, {MinBackoff: -1}, {MinBackoff: time.Hour, MaxBackoff: time.Minute}} {
		if _, err := bad.withDefaults(); err == nil {
			t.Fatalf("%+v accepted", bad)
		}
	}
}
