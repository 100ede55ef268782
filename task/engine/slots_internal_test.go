package engine

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

var t0Internal = time.Date(2026, 3, 23, 0, 0, 0, 0, time.UTC)

// checkLayout verifies a layout's invariants: every device in scope has
// one place, places are distinct and inside the layout, and the free list
// is exactly the empty places, ascending.
func checkLayout(t *testing.T, ts *taskState) {
	t.Helper()
	l := ts.slots
	if l.size() != len(ts.devices) || len(l.pos) != len(l.ids) || !slices.IsSorted(l.ids) {
		t.Fatalf("%d devices placed (%d places, sorted %v), %d in scope", l.size(), len(l.pos), slices.IsSorted(l.ids), len(ts.devices))
	}
	var free []int
	for p, d := range l.by {
		if d == "" {
			free = append(free, p)
			continue
		}
		if q, _ := l.get(d); q != p {
			t.Fatalf("place %d holds %s, whose place is %d", p, d, q)
		}
	}
	for _, d := range ts.devices {
		if p, ok := l.get(d); !ok || p < 0 || p >= len(l.by) || l.by[p] != d {
			t.Fatalf("%s in scope has place %d (ok %v) of %d", d, p, ok, len(l.by))
		}
	}
	if !slices.Equal(free, l.free) && !(len(free) == 0 && len(l.free) == 0) {
		t.Fatalf("free places %v, the list says %v", free, l.free)
	}
	if len(l.by) > 2*len(ts.devices)+len(ts.devices)+64 {
		t.Fatalf("layout of %d places for %d devices", len(l.by), len(ts.devices))
	}
}

// FuzzSlotLayout drives a delay layout with scope changes, devices
// reporting the places they hold (outside input: any index) and manual
// starts, and checks the layout's invariants after each step.
func FuzzSlotLayout(f *testing.F) {
	f.Add([]byte{0, 5, 1, 2, 3, 0, 1, 7, 2, 9})
	f.Add([]byte{3, 0, 1, 255, 1, 1, 0, 1, 2, 0, 0, 4})
	f.Add([]byte{1, 3, 1, 3, 1, 3, 2, 7, 0, 12, 3, 1, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const pool = 16
		in := map[scope.DeviceID]bool{}
		for i := range 8 {
			in[scope.DeviceID(fmt.Sprintf("d%02d", i))] = true
		}
		s := schedule.Default(schedule.EveryDays, t0Internal, nil)
		s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayAutomatic, IntervalMinutes: 1}
		ts := &taskState{t: &task.Task{ID: "t", Schedule: s}}
		rescope := func() {
			ts.devices = nil
			for d := range in {
				ts.devices = append(ts.devices, d)
			}
			slices.Sort(ts.devices)
			ts.followSlots()
		}
		rescope()
		ts.slots.provisional = true
		checkLayout(t, ts)
		for i := 0; i+1 < len(ops) && i < 400; i += 2 {
			d := scope.DeviceID(fmt.Sprintf("d%02d", int(ops[i+1])%pool))
			switch ops[i] % 4 {
			case 0: // joins
				in[d] = true
				rescope()
			case 1: // leaves
				delete(in, d)
				rescope()
			case 2: // reports a place
				idx := int(int8(ops[i+1]))
				if i+2 < len(ops) {
					idx = int(ops[i+2]) - 8
				}
				ts.adoptSlot(d, &transport.Slot{Index: idx, Of: len(ts.slots.by)})
			case 3: // a manual start
				old := ts.slots
				ts.freshSlots(manualShift(int64(ops[i+1])*4+1, len(ts.devices)))
				ts.slots.moveAll(old, ts.devices)
				for _, d := range ts.devices {
					q, was := old.get(d)
					if p, _ := ts.slots.get(d); len(ts.devices) > 1 && was && q == p {
						t.Fatalf("%s kept place %d after a manual start", d, q)
					}
				}
			}
			checkLayout(t, ts)
		}
	})
}
