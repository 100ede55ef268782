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
//
// Places are kept compactly: ids (sorted; the task's resolved device
// list, shared with it) and pos (each one's place) instead of a map, 20
// bytes a device with by.
type slotLayout struct {
	ids  []scope.DeviceID // sorted; never modified in place
	pos  []int32          // pos[i] is the place of ids[i]
	by   []scope.DeviceID // by place; "" is free
	free []int            // free places, ascending
	// provisional: rebuilt on Open; sure are the devices whose place is
	// confirmed by the device.
	provisional bool
	sure        map[scope.DeviceID]bool
}

// get returns a device's place.
func (l *slotLayout) get(d scope.DeviceID) (int, bool) {
	i, ok := slices.BinarySearch(l.ids, d)
	if !ok {
		return 0, false
	}
	return int(l.pos[i]), true
}

// set moves a device of the layout to place p.
func (l *slotLayout) set(d scope.DeviceID, p int) {
	if i, ok := slices.BinarySearch(l.ids, d); ok {
		l.pos[i] = int32(p)
	}
}

// size is the number of devices placed.
func (l *slotLayout) size() int { return len(l.ids) }

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
	l := &slotLayout{ids: ts.devices, pos: make([]int32, n), by: make([]scope.DeviceID, n)}
	for i, d := range ts.devices {
		p := (i + shift) % n
		l.pos[i], l.by[p] = int32(p), d
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
	if slices.Equal(l.ids, ts.devices) {
		l.ids = ts.devices // the same devices: share the new list
		return
	}
	// Merge the old and the new sorted lists: devices that stay keep
	// their places, devices that left free theirs, new ones (-1) take
	// free or new places below, in id order.
	pos := make([]int32, len(ts.devices))
	freed := false
	i := 0
	for j, d := range ts.devices {
		for i < len(l.ids) && l.ids[i] < d {
			l.leave(i)
			freed = true
			i++
		}
		if i < len(l.ids) && l.ids[i] == d {
			pos[j] = l.pos[i]
			i++
		} else {
			pos[j] = -1
		}
	}
	for ; i < len(l.ids); i++ {
		l.leave(i)
		freed = true
	}
	if freed {
		slices.Sort(l.free)
	}
	for j, d := range ts.devices {
		if pos[j] >= 0 {
			continue
		}
		p := len(l.by)
		if len(l.free) > 0 && !l.provisional {
			p, l.free = l.free[0], l.free[1:]
			l.by[p] = d
		} else {
			l.by = append(l.by, d)
		}
		pos[j] = int32(p)
	}
	l.ids, l.pos = ts.devices, pos
}

// leave frees the place of the layout's i-th device, which left the
// scope (the caller sorts free).
func (l *slotLayout) leave(i int) {
	p := l.pos[i]
	delete(l.sure, l.ids[i])
	l.by[p] = ""
	l.free = append(l.free, int(p))
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
	cur, ok := l.get(d)
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
			l.by[cur] = o // the other takes d's place
			l.set(o, cur)
		} else {
			l.by[cur] = ""
			if i, ok := slices.BinarySearch(l.free, want); ok {
				l.free = slices.Delete(l.free, i, i+1)
			}
			i, _ := slices.BinarySearch(l.free, cur)
			l.free = slices.Insert(l.free, i, cur)
		}
		l.by[want] = d
		l.set(d, want)
	}
	if len(l.sure) >= l.size() {
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
		p, _ := l.get(d)
		if q, ok := old.get(d); !ok || q != p {
			continue
		}
		e := devices[(i+1)%len(devices)]
		pe, _ := l.get(e)
		l.set(d, pe)
		l.set(e, p)
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
