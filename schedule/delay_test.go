package schedule_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
)

// TestRandomOffsetStable pins outputs: the offset is part of the stored
// contract (devices keep their start across restarts and releases).
func TestRandomOffsetStable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		window   time.Duration
		task     string
		device   string
		revision int64
		want     time.Duration
	}{
		{time.Hour, "task-1", "device-1", 1, 3403002271115},
		{time.Hour, "task-1", "device-1", 2, 1850720761860},
		{time.Minute, "task-1", "device-2", 1, 37080094915},
		{time.Minute, "", "", 0, 25642570251},
		// Length prefixes keep ("ab","c") and ("a","bc") apart.
		{time.Minute, "ab", "c", 0, 37945316091},
		{time.Minute, "a", "bc", 0, 59250162094},
		{0, "task-1", "device-1", 1, 0},
		{-time.Second, "task-1", "device-1", 1, 0},
	}
	for _, tt := range tests {
		if got := schedule.RandomOffset(tt.window, tt.task, tt.device, tt.revision); got != tt.want {
			t.Errorf("RandomOffset(%v, %q, %q, %d) = %d, want %d", tt.window, tt.task, tt.device, tt.revision, got, tt.want)
		}
	}
}

// TestRandomOffsetSpread: offsets stay in [0, window), cover it evenly,
// and a new revision moves most devices.
func TestRandomOffsetSpread(t *testing.T) {
	t.Parallel()
	const devices, buckets = 20000, 10
	window := 10 * time.Minute
	var count [buckets]int
	moved := 0
	for i := range devices {
		id := fmt.Sprintf("device-%d", i)
		o := schedule.RandomOffset(window, "task-7", id, 3)
		if o < 0 || o >= window {
			t.Fatalf("offset %v outside [0, %v)", o, window)
		}
		count[o*buckets/window]++
		if schedule.RandomOffset(window, "task-7", id, 4) != o {
			moved++
		}
	}
	for b, c := range count {
		if c < devices/buckets*9/10 || c > devices/buckets*11/10 {
			t.Errorf("bucket %d holds %d of %d offsets: %v", b, c, devices, count)
		}
	}
	if moved < devices*99/100 {
		t.Errorf("only %d of %d devices moved on a new revision", moved, devices)
	}
	if o := schedule.RandomOffset(time.Nanosecond, "t", "d", 1); o != 0 {
		t.Errorf("1ns window: %v", o)
	}
}

func TestAutoWindowAndHelpers(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		devices int
		want    time.Duration
	}{
		{-3, 0}, {0, 0}, {1, 0}, {2, 200 * time.Millisecond}, {10, time.Second}, {600, time.Minute},
		{35999, 3599*time.Second + 900*time.Millisecond}, {36000, time.Hour}, {1 << 40, time.Hour},
	} {
		if got := schedule.AutoWindow(tt.devices); got != tt.want {
			t.Errorf("AutoWindow(%d) = %v, want %v", tt.devices, got, tt.want)
		}
	}
	s := schedule.Default(schedule.Weekly, created, nil)
	if got := s.DelayWindow(6000); got != 0 {
		t.Errorf("off: %v", got)
	}
	s.RandomDelay.Mode = schedule.DelayAutomatic
	if got := s.DelayWindow(6000); got != 10*time.Minute {
		t.Errorf("automatic: %v", got)
	}
	s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayInterval, IntervalMinutes: 7}
	if got := s.DelayWindow(6000); got != 7*time.Minute {
		t.Errorf("interval: %v", got)
	}
	if d, on := s.MaxRunDuration(); d != 120*time.Minute || on {
		t.Errorf("MaxRunDuration = %v, %v", d, on)
	}
	s.StopAfter = schedule.Limit{Enabled: true, Minutes: 30}
	if d, on := s.MaxRunDuration(); d != 30*time.Minute || !on {
		t.Errorf("MaxRunDuration = %v, %v", d, on)
	}
	if d, on := s.WakeLead(); d != 5*time.Minute || on {
		t.Errorf("WakeLead = %v, %v", d, on)
	}
	s.WakeOnLAN.Enabled = true
	if d, on := s.WakeLead(); d != 5*time.Minute || !on {
		t.Errorf("WakeLead = %v, %v", d, on)
	}
}
