package engine

import (
	"slices"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task/transport"
)

// slotLayout is the automatic randomized delay of a task: each
// device's place (transport.Slot.Index) among Of = size places. A place
// is a tenth of a second of the window (schedule.AutoWindow gives every
// device DefaultStartsPerSecond⁻¹ s), so a device's calculated start time
// depends on its index only, and stays put while its index does:
//
//   - A new layout (the task is created or its settings edited: devices
//     in id order; a manual start: the same order rotated by the run id,
//     so every start time changes) gives the devices places 0..n-1.
//   - When the scope changes, the devices that stay keep their places;
//     the places of devices that left are free, and new devices take the
//     lowest free place, or a new one at the end.
//   - After Open (a server restart) the layout is rebuilt in id order,
//     provisionally: a device that reports the place it holds for the
//     task's current revision keeps it (the device whose provisional
//     place it was takes the reporter's), so the devices keep their start
//     times across restarts; until every device has reported, new devices
//     take new places at the end, not free ones a silent device may hold.
//     (A server-run task's devices hold no slot: its layout is rebuilt in
//     id order.)
type slotLayout struct {
	index map[scope.DeviceID]int
	by    []scope.DeviceID // by place; "" is free
	free  []int            // free places, ascending
	// provisional: rebuilt on Open; sure are the devices whose place is
	// confirmed by the device.
	provisional bool
	sure        map[scope.DeviceID]bool
}

// automaticDelay reports whether a task's devices get delay slots: a task
// with the automatic randomized delay (device tasks send each device its
// slot; server-run tasks use theirs at each fire).
func automaticDelay(ts *taskState) bool {
	return ts.t.Schedule.RandomDelay.Mode == schedule.DelayAutomatic
}

// freshSlots gives the scope's devices places 0..n-1: in id order rotated
// by shift.
func (ts *taskState) freshSlots(shift int) {
	n := len(ts.devices)
	l := &slotLayout{index: make(map[scope.DeviceID]int, n), by: make([]scope.DeviceID, n)}
	for i, d := range ts.devices {
		p := (i + shift) % n
		l.index[d], l.by[p] = p, d
	}
	ts.slots = l
}

// followSlots updates the layout after the scope was resolved: devices
// that left free their places, new devices take free or new ones.
func (ts *taskState) followSlots() {
	if !automaticDelay(ts) {
		ts.slots = nil
		return
	}
	if ts.slots == nil {
		ts.freshSlots(0)
		return
	}
	l := ts.slots
	if len(l.index) != len(ts.devices) || !ts.sameDevices() {
		for d, p := range l.index {
			if !ts.inScope[d] {
				delete(l.index, d)
				delete(l.sure, d)
				l.by[p] = ""
				i, _ := slices.BinarySearch(l.free, p)
				l.free = slices.Insert(l.free, i, p)
			}
		}
	}
	for _, d := range ts.devices {
		if _, ok := l.index[d]; ok {
			continue
		}
		p := len(l.by)
		if len(l.free) > 0 && !l.provisional {
			p, l.free = l.free[0], l.free[1:]
			l.by[p] = d
		} else {
			l.by = append(l.by, d)
		}
		l.index[d] = p
	}
}

// sameDevices reports whether every device of the layout is in scope.
func (ts *taskState) sameDevices() bool {
	for d := range ts.slots.index {
		if !ts.inScope[d] {
			return false
		}
	}
	return true
}

// adoptSlot takes the place a device reports it holds (for the task's
// current revision) into a provisional layout; see slotLayout. A place
// another device confirmed, or one far outside the layout (hostile or
// stale input), is not taken: the device gets its layout place again.
func (ts *taskState) adoptSlot(d scope.DeviceID, held *transport.Slot) {
	l := ts.slots
	if l == nil || !l.provisional || held == nil || l.sure[d] {
		return
	}
	cur, ok := l.index[d]
	if !ok {
		return
	}
	want := held.Index
	if want < 0 || want >= max(len(l.by), 2*len(ts.devices)) {
		return
	}
	if l.sure == nil {
		l.sure = map[scope.DeviceID]bool{}
	}
	if want < len(l.by) && l.by[want] != "" && l.by[want] != d && l.sure[l.by[want]] {
		return // confirmed by another device
	}
	l.sure[d] = true
	if want != cur {
		for len(l.by) <= want {
			l.free = append(l.free, len(l.by))
			l.by = append(l.by, "")
		}
		if o := l.by[want]; o != "" {
			l.by[cur], l.index[o] = o, cur // the other takes d's place
		} else {
			l.by[cur] = ""
			if i, ok := slices.BinarySearch(l.free, want); ok {
				l.free = slices.Delete(l.free, i, i+1)
			}
			i, _ := slices.BinarySearch(l.free, cur)
			l.free = slices.Insert(l.free, i, cur)
		}
		l.by[want], l.index[d] = d, want
	}
	if len(l.sure) >= len(l.index) {
		l.provisional, l.sure = false, nil
	}
}

// moveAll makes sure no device of devices keeps its place in old (a
// manual start changes every calculated start time): a device whose new
// place is its old one swaps places with the next device, which then has
// a place that was not its own either (places are distinct).
func (l *slotLayout) moveAll(old *slotLayout, devices []scope.DeviceID) {
	if old == nil || len(devices) < 2 {
		return
	}
	for i, d := range devices {
		p := l.index[d]
		if q, ok := old.index[d]; !ok || q != p {
			continue
		}
		e := devices[(i+1)%len(devices)]
		pe := l.index[e]
		l.index[d], l.index[e] = pe, p
		l.by[pe], l.by[p] = d, e
	}
}

// slotCount is the device count the delay window is computed for (the
// definition's Devices): the layout's size with the automatic delay, the
// scope's size otherwise.
func slotCount(ts *taskState) int {
	if ts.slots != nil {
		return len(ts.slots.by)
	}
	return len(ts.devices)
}

// manualShift is the rotation of the layout a manual start recomputes:
// never 0 for two devices or more, so every device's place changes.
func manualShift(runID int64, n int) int {
	if n < 2 {
		return 0
	}
	return 1 + int(uint64(runID)%uint64(n-1))
}
