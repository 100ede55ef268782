package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Device sync: heartbeats bring each device's definitions up to date
// (deliver, withdraw), Wake-on-LAN before starts, and everything the
// server sends goes out through send (state: deviceSync).

// heartbeat makes the device visible, brings its task definitions up to
// date and answers with the repository state.
func (s *Server) heartbeat(ctx context.Context, m transport.Message, now time.Time) {
	s.stats.Heartbeats++
	d := m.Device
	// One map lookup gives the device's number; its last heartbeat and
	// task list are then read by index (deviceSync).
	n := s.dev.intern(d)
	wasVisible := s.dev.visibleAt(n, now, s.cfg.VisibilityTimeout)
	s.dev.seen[n] = now
	// The device's tasks (in id order, rebuildByDevice) and the ones it
	// holds (in id order from our agents) are merged, not mapped: this
	// runs for every heartbeat of the fleet. Of one id held twice the
	// later entry counts.
	var held []transport.HeldTask
	if m.Heartbeat != nil {
		held = m.Heartbeat.Held
		if len(held) > transport.MaxHeld {
			s.reject(d, RejectTooMany, len(held)-transport.MaxHeld, "", "held tasks beyond the per-heartbeat limit")
			held = held[:transport.MaxHeld]
		}
		byID := func(a, b transport.HeldTask) int { return strings.Compare(a.TaskID, b.TaskID) }
		if !slices.IsSortedFunc(held, byID) {
			held = slices.Clone(held)
			slices.SortStableFunc(held, byID)
		}
	}
	tss, at := s.deviceTasks(n)
	j := 0
	for k, ts := range tss {
		id := ts.t.ID
		for j < len(held) && held[j].TaskID < id {
			j++
		}
		var h transport.HeldTask
		ok := false
		for ; j < len(held) && held[j].TaskID == id; j++ {
			h, ok = held[j], true
		}
		if ok && h.Revision == ts.t.Revision {
			ts.adoptSlot(d, h.Slot) // after a restart: keep the place it holds
		}
		// A stale revision, or a delay slot that a new layout has moved
		// since the device got the definition, is redelivered.
		want, slotted := slotAtIndex(ts, d, at[k])
		if !ok || h.Revision < ts.t.Revision || !holdsPlace(h.Slot, want, slotted) {
			var sl *transport.Slot
			if slotted {
				sl = new(transport.Slot) // only when delivering: want stays on the stack
				*sl = want
			}
			if s.send(ctx, transport.Message{Kind: transport.Deliver, Device: d, Definition: s.definition(ts), Slot: sl}) == nil {
				s.stats.Delivered++
			}
		}
	}
	// Withdraw what the device holds but is not its task: a task of
	// the server's (bounded by the task list), or at most
	// MaxUnknownWithdraws ids the server does not know (deleted tasks;
	// the rest go with later heartbeats), so the answer is bounded by
	// what the device holds or should hold, not by what it claims.
	i, unknown := 0, 0
	for j, h := range held {
		if j > 0 && held[j-1].TaskID == h.TaskID {
			continue
		}
		for i < len(tss) && tss[i].t.ID < h.TaskID {
			i++
		}
		if i == len(tss) || tss[i].t.ID != h.TaskID {
			if s.cat.tasks[h.TaskID] == nil {
				if unknown++; unknown > MaxUnknownWithdraws || len(h.TaskID) > transport.MaxKeyBytes {
					continue
				}
			}
			_ = s.send(ctx, transport.Message{Kind: transport.Withdraw, Device: d, TaskID: h.TaskID})
		}
	}
	if unknown > MaxUnknownWithdraws {
		s.reject(d, RejectTooMany, unknown-MaxUnknownWithdraws, "", "held task ids the server does not know")
	}
	// A Quiet heartbeat (protocol 4: the device has nothing waiting to
	// send) is answered only when the device has not acted on the latest
	// updates generation; every other heartbeat gets its Sync.
	if hb := m.Heartbeat; hb == nil || !hb.Quiet || hb.UpdatesGeneration < s.upd.updGen {
		_ = s.send(ctx, transport.Message{Kind: transport.Sync, Device: d, SyncInfo: &transport.SyncInfo{UpdatesGeneration: s.upd.updGen, UpdatesAt: s.upd.updAt}})
	}
	if !wasVisible {
		// Became visible: starts, stops, pauses and resumes waiting for
		// it go out now.
		s.resendTo(ctx, d, now)
		for k, c := range s.ctl.controls {
			if k.device == d && !c.acked {
				c.next = now
				s.ctl.nextCtl = now
			}
		}
		s.controlsDue(ctx, now)
	}
}

// wake sends Wake-on-LAN requests the chosen minutes before each device's
// start: for server-run tasks to every device of the scope (connected or
// not: waking turned-off devices is the point), for device tasks before
// the device's own local activation plus its randomized delay.
func (s *Server) wake(ctx context.Context, now time.Time) {
	for _, id := range s.sortedIDs() {
		ts := s.cat.tasks[id]
		lead, ok := ts.t.Schedule.WakeLead()
		if !ok || !ts.t.Schedule.Timed() || ts.t.Suspended {
			continue
		}
		if ts.onServer {
			nx, ok := ts.t.Schedule.Next(ts.cursor, s.loc)
			if !ok || nx.Add(-lead).After(now) || ts.wokeFor.Equal(nx) {
				continue
			}
			ts.wokeFor = nx
			for _, d := range ts.devices {
				_ = s.send(ctx, transport.Message{Kind: transport.Wake, Device: d})
			}
			continue
		}
		if !ts.nextWake.IsZero() && ts.nextWake.After(now) {
			continue
		}
		if ts.wakes == nil {
			ts.wakes = map[scope.DeviceID]time.Time{}
		}
		ts.nextWake = time.Time{}
		for _, d := range ts.devices {
			w, ok := ts.wakes[d]
			if ok && w.After(now) {
				if ts.nextWake.IsZero() || w.Before(ts.nextWake) {
					ts.nextWake = w
				}
				continue
			}
			if ok {
				_ = s.send(ctx, transport.Message{Kind: transport.Wake, Device: d})
			}
			l := s.deviceLoc(ctx, d)
			off := transport.Offset(ts.t.Schedule, slotCount(ts), slotOf(ts, d), ts.t.ID, string(d), ts.t.SettingsRevision)
			after := now.Add(lead - off)
			nx, ok2 := ts.t.Schedule.Next(after, l)
			if !ok2 {
				delete(ts.wakes, d)
				continue
			}
			w = nx.Add(off - lead)
			ts.wakes[d] = w
			if ts.nextWake.IsZero() || w.Before(ts.nextWake) {
				ts.nextWake = w
			}
		}
	}
}

func (s *Server) deviceLoc(ctx context.Context, d scope.DeviceID) *time.Location {
	dev, err := s.cfg.Inventory.Device(ctx, d)
	if err != nil || dev.TimeZone == "" {
		return time.UTC
	}
	if l, ok := s.dev.zones[dev.TimeZone]; ok {
		return l
	}
	l, err := time.LoadLocation(dev.TimeZone)
	if err != nil {
		l = time.UTC
	}
	s.dev.zones[dev.TimeZone] = l
	return l
}

// deviceTasks returns the device tasks of device number n in id order,
// and the device's index in each one's device list (at[i] in
// tss[i].devices), rebuilt after the task list or a scope changed (every
// change that adds, replaces or drops a taskState calls
// deviceSync.invalidate, so the entries are the catalog's current ones).
func (s *Server) deviceTasks(n int32) (tss []*taskState, at []int32) {
	if s.dev.stale {
		s.rebuildByDevice()
	}
	if int(n)+1 >= len(s.dev.off) {
		return nil, nil // numbered after the build: in no task's scope
	}
	lo, hi := s.dev.off[n], s.dev.off[n+1]
	return s.dev.tasks[lo:hi:hi], s.dev.at[lo:hi:hi]
}

// rebuildByDevice builds the per-device task lists in two passes over
// the tasks' device lists: the lists are counted first, then laid out
// one after the other in one array of exactly the total length (8 bytes
// per device and task, and 4 for the device's index in the task's list,
// nothing spare), found by the device's number through off.
func (s *Server) rebuildByDevice() {
	ids := s.sortedIDs()
	x := &s.dev
	total := 0
	for _, id := range ids {
		if ts := s.cat.tasks[id]; !ts.onServer {
			total += len(ts.devices)
		}
	}
	// nums holds each (task, device) entry's device number, so the
	// second pass looks nothing up.
	nums := make([]int32, 0, total)
	var counts []int32
	for _, id := range ids {
		ts := s.cat.tasks[id]
		if ts.onServer {
			continue
		}
		for _, d := range ts.devices {
			n := x.intern(d)
			if int(n) >= len(counts) {
				counts = slices.Grow(counts, len(x.ids)-len(counts))[:len(x.ids)]
			}
			counts[n]++
			nums = append(nums, n)
		}
	}
	off := make([]int, len(counts)+1)
	for n, c := range counts {
		off[n+1] = off[n] + int(c)
	}
	tasks := make([]*taskState, total)
	at := make([]int32, total)
	next := counts // reused: next[n] counts the entries of n laid out
	clear(next)
	k := 0
	for _, id := range ids {
		ts := s.cat.tasks[id]
		if ts.onServer {
			continue
		}
		for i := range ts.devices {
			n := nums[k]
			k++
			e := off[n] + int(next[n])
			next[n]++
			tasks[e], at[e] = ts, int32(i)
		}
	}
	x.off, x.tasks, x.at, x.stale = off, tasks, at, false
}

func (s *Server) connected(ctx context.Context, d scope.DeviceID) bool {
	if d == task.ServerDevice {
		return true
	}
	dev, err := s.cfg.Inventory.Device(ctx, d)
	return err == nil && dev.Connected
}

func (s *Server) visible(d scope.DeviceID, now time.Time) bool {
	n, ok := s.dev.num[d]
	return ok && s.dev.visibleAt(n, now, s.cfg.VisibilityTimeout)
}

// intern returns device d's number, giving it the next one the first time.
func (x *deviceSync) intern(d scope.DeviceID) int32 {
	if n, ok := x.num[d]; ok {
		return n
	}
	if x.num == nil {
		x.num = map[scope.DeviceID]int32{}
	}
	n := int32(len(x.ids))
	x.num[d] = n
	x.ids = append(x.ids, d)
	x.seen = append(x.seen, time.Time{})
	return n
}

// visibleAt reports whether device number n was heard from within
// timeout before now.
func (x *deviceSync) visibleAt(n int32, now time.Time, timeout time.Duration) bool {
	t := x.seen[n]
	return !t.IsZero() && now.Sub(t) <= timeout
}

// invalidate marks the per-device task lists for a rebuild.
func (x *deviceSync) invalidate() { x.stale = true }

func (s *Server) send(ctx context.Context, m transport.Message) error {
	if s.closed {
		return ErrClosed
	}
	m.SentAt = s.clk.Now().UTC()
	err := s.ep.Send(ctx, m)
	if err != nil && !errors.Is(err, transport.ErrUnreachable) {
		s.log.Error().Err(err).Str("device", string(m.Device)).Str("kind", string(m.Kind)).Msg("engine: send")
	}
	return err
}

// slotOf returns a device's place in a task's automatic randomized delay
// (slotLayout); nil when the delay is not automatic.
func slotOf(ts *taskState, d scope.DeviceID) *transport.Slot {
	sl, ok := slotAt(ts, d)
	if !ok {
		return nil
	}
	return &sl
}

// slotAtIndex is slotAt for the device at index i of ts.devices: while
// the layout shares the task's device list (it does once followSlots ran)
// the place is read at i, without a search.
func slotAtIndex(ts *taskState, d scope.DeviceID, i int32) (transport.Slot, bool) {
	l := ts.slots
	if l == nil {
		return transport.Slot{}, false
	}
	if int(i) < len(l.ids) && len(l.ids) == len(ts.devices) && &l.ids[0] == &ts.devices[0] && l.ids[i] == d {
		return transport.Slot{Index: int(l.pos[i]), Of: len(l.by)}, true
	}
	return slotAt(ts, d)
}

// holdsPlace reports whether a device holds its place in the task's delay
// layout, for a place already looked up (want, ok). Only the index
// counts: a device's start time depends on its index alone (slotLayout),
// so a layout that grew does not send every device a new Of.
func holdsPlace(held *transport.Slot, want transport.Slot, ok bool) bool {
	if !ok {
		return held == nil
	}
	return held != nil && held.Index == want.Index
}

// slotAt is slotOf as a value (false: no slot).
func slotAt(ts *taskState, d scope.DeviceID) (transport.Slot, bool) {
	if ts.slots == nil {
		return transport.Slot{}, false
	}
	i, ok := ts.slots.get(d)
	if !ok {
		return transport.Slot{}, false
	}
	return transport.Slot{Index: i, Of: len(ts.slots.by)}, true
}
