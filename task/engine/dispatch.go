package engine

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Dispatching runs: a run is planned (results written first), then its
// starts are sent to the devices and resent until they answer (state:
// dispatching). With replicas the store's claims decide who sends
// (replicas.go).

// StartRun implements task.Dispatcher (a manual start of a task run; it
// does not start the server, see Open): every device of the
// run gets it at its randomized start; devices not connected get it when
// they become visible if the task runs missed tasks, and are recorded
// missed otherwise. A manual start changes the randomized offsets.
func (s *Server) StartRun(ctx context.Context, t *task.Task, run task.Run) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.live("StartRun"); err != nil {
		return err
	}
	now := s.clk.Now()
	ts := s.load(ctx, t, now)
	at := run.At
	if at.IsZero() {
		at = now
	}
	st := transport.Start{TaskID: t.ID, RunID: transport.RunID(at, transport.Manual), At: at, Manual: true}
	if run.ID != 0 {
		st.RunID = run.ID // ManualRunID's: the latest of the task
	}
	ts.sawRun(st.RunID)
	devices := make([]scope.DeviceID, 0, len(run.Devices)+len(run.Skipped))
	for _, d := range slices.Concat(run.Devices, run.Skipped) {
		// Devices of secondary and virtual servers in a distributed
		// task's scope are started by their own server (see resolve).
		if ts.has(d) {
			devices = append(devices, d)
		}
	}
	if !ts.onServer {
		ts.manual = &st
	} else {
		ts.lastFire = &st
	}
	s.startOn(ctx, ts, st, devices, st.RunID, now)
	s.newLayout(ctx, ts, st.RunID)
	return nil
}

// reslot follows a change of a device task's scope from before: its
// Wake-on-LAN times are planned again. The devices that stayed keep their
// delay slots (slotLayout) and new devices get the task, with their slot,
// at their next heartbeat, so nothing is sent.
func (s *Server) reslot(_ context.Context, ts *taskState, before []scope.DeviceID) {
	s.rescoped(ts, before)
}

// newLayout gives a device task with the automatic randomized delay a new
// layout after a manual start (the product documentation: the calculated
// start time changes when the task is started manually) and sends the
// connected devices their new slots; the others get theirs with their
// next heartbeat.
func (s *Server) newLayout(ctx context.Context, ts *taskState, runID int64) {
	if ts.slots == nil {
		return
	}
	old := ts.slots
	ts.freshSlots(manualShift(runID, len(ts.devices)))
	ts.slots.moveAll(old, ts.devices)
	ts.wakes, ts.nextWake = nil, time.Time{}
	if ts.onServer {
		return // the server uses the slots at each fire
	}
	def := s.definition(ts)
	conn, _ := s.splitConnected(ctx, ts.devices)
	for _, d := range conn {
		if s.send(ctx, transport.Message{Kind: transport.Deliver, Device: d, Definition: def, Slot: slotOf(ts, d)}) == nil {
			s.stats.Delivered++
		}
	}
}

func (s *Server) addDispatch(st transport.Start, d scope.DeviceID, at time.Time) {
	k := dkey{st.TaskID, d}
	if cur := s.disp.pending[k]; cur != nil && cur.start.RunID > st.RunID {
		return
	}
	dp := &dispatch{start: st, device: d, next: at}
	s.disp.put(k, dp)
	if s.disp.nextDisp.IsZero() || dp.next.Before(s.disp.nextDisp) {
		s.disp.nextDisp = dp.next
	}
}

// record writes per-device results through the Manager and returns how
// many were applied.
func (s *Server) record(ctx context.Context, rs []task.Result) int {
	if len(rs) == 0 {
		return 0
	}
	began := s.clk.Now()
	n, err := s.m.Runtime().RecordResults(ctx, rs)
	s.storeCall(ctx, "RecordResults", began)
	if err != nil {
		s.log.Error().Err(err).Msg("engine: record results")
		return n
	}
	s.sinkResults(ctx, rs)
	return n
}

// startOn starts run st of ts on devices: connected devices (or, with run
// missed tasks on, every device) get a scheduled result and a dispatch at
// their randomized start; the others are recorded missed. revision is
// the randomized-offset revision.
func (s *Server) startOn(ctx context.Context, ts *taskState, st transport.Start, devices []scope.DeviceID, revision int64, now time.Time) {
	var p plan
	s.plan(ctx, &p, ts, st, devices, revision, now)
	if e := s.log.Info(); e.Enabled() {
		waiting, missed := 0, 0
		for _, r := range p.rows {
			switch r.State {
			case task.Missed:
				missed++
			case task.Pending:
				waiting++
			}
		}
		e.Str("task", ts.t.ID).Int64("run", st.RunID).Bool("manual", st.Manual).Int("devices", len(p.rows)-waiting-missed).Int("waiting_for_device", waiting).Int("missed", missed).Msg("engine: run dispatched")
	}
	s.commit(ctx, p)
}

// plan collects the results to write and the starts to dispatch.
type plan struct {
	rows []task.Result
	dues []transport.Start
	devs []scope.DeviceID
	off  []bool // dues[i] is for a device that was not connected (pending)
}

func (p *plan) scheduled(i int) bool { return i >= len(p.off) || !p.off[i] }

func (s *Server) plan(ctx context.Context, p *plan, ts *taskState, st transport.Start, devices []scope.DeviceID, revision int64, now time.Time) {
	ts.sawRun(st.RunID)
	sch := ts.t.Schedule
	conn, off := s.splitConnected(ctx, devices)
	for i, d := range conn {
		// The task's delay layout (slotLayout) when the delay is
		// automatic, so a device's start stays put while others come and
		// go; otherwise its place among the connected devices.
		n, slot := len(conn), &transport.Slot{Index: i, Of: len(conn)}
		if sl, ok := slotAt(ts, d); ok {
			n, slot = slotCount(ts), &sl
		}
		at := st.At.Add(transport.Offset(sch, n, slot, ts.t.ID, string(d), revision))
		p.rows = append(p.rows, task.Result{TaskID: ts.t.ID, DeviceID: d, RunID: st.RunID, Seq: transport.SeqScheduled, State: task.Scheduled, DueAt: at, UpdatedAt: now})
		x := st
		x.Due = at
		p.dues, p.devs, p.off = append(p.dues, x), append(p.devs, d), append(p.off, false)
	}
	claims := s.claimer() != nil
	for _, d := range off {
		if sch.RunMissed {
			// With replicas the start is scheduled like any other, so it is
			// dispatched (and sent until the device answers) by exactly one
			// replica, and taken over if that replica dies; alone, the
			// server keeps it pending until the device becomes visible.
			state := task.Pending
			if claims {
				state = task.Scheduled
			}
			p.rows = append(p.rows, task.Result{TaskID: ts.t.ID, DeviceID: d, RunID: st.RunID, Seq: transport.SeqScheduled, State: state, DueAt: st.At, UpdatedAt: now,
				Message: "waiting for the device to become visible"})
			x := st
			x.Due = st.At
			p.dues, p.devs, p.off = append(p.dues, x), append(p.devs, d), append(p.off, !claims)
			continue
		}
		p.rows = append(p.rows, task.Result{TaskID: ts.t.ID, DeviceID: d, RunID: st.RunID, Seq: transport.SeqScheduled, State: task.Missed, DueAt: st.At, FinishedAt: now, UpdatedAt: now,
			Message: "missed: the device was not visible (not connected to the Administration Server) when the task started"})
	}
}

// connectedChunk is how many devices one ConnectedDevices call checks.
const connectedChunk = 10000

// splitConnected splits devices (in their order) into the connected ones
// and the others. With a scope.ConnectionChecker inventory that is one
// call per connectedChunk devices, not one Device call each (a run on
// 100,000 devices was 100,000 queries, with the server's lock held); when
// a call fails, those devices are checked one by one (a failed check
// counts as not connected, as before).
func (s *Server) splitConnected(ctx context.Context, devices []scope.DeviceID) (conn, off []scope.DeviceID) {
	cc, _ := s.cfg.Inventory.(scope.ConnectionChecker)
	for len(devices) > 0 {
		chunk := devices[:min(len(devices), connectedChunk)]
		devices = devices[len(chunk):]
		var up []scope.DeviceID
		var err error
		if cc != nil && len(chunk) > 1 {
			began := s.clk.Now()
			up, err = cc.ConnectedDevices(ctx, chunk)
			s.storeCall(ctx, "ConnectedDevices", began)
			if err != nil {
				s.log.Error().Err(err).Int("devices", len(chunk)).Msg("engine: connection states: checking the devices one by one")
			}
		}
		for _, d := range chunk {
			var ok bool
			if cc == nil || len(chunk) == 1 || err != nil {
				ok = s.connected(ctx, d)
			} else {
				_, ok = slices.BinarySearch(up, d)
				ok = ok || d == task.ServerDevice
			}
			if ok {
				conn = append(conn, d)
			} else {
				off = append(off, d)
			}
		}
	}
	return conn, off
}

// commit writes a plan's results first and dispatches second: a server
// that stops in between finds the scheduled results on Open and
// dispatches them.
func (s *Server) commit(ctx context.Context, p plan) {
	s.record(ctx, p.rows)
	claims := s.claimer() != nil
	for i, st := range p.dues {
		if claims && p.scheduled(i) {
			continue // claimed from the store by exactly one replica
		}
		s.addDispatch(st, p.devs[i], st.Due)
	}
}

// known reports whether device d already has run runID (or a newer one)
// of task id, so a redelivered trigger does not start it again.
func (s *Server) known(ctx context.Context, id string, d scope.DeviceID, runID int64) bool {
	r, err := s.cfg.Store.GetResult(ctx, id, string(d))
	return err == nil && r.RunID >= runID
}

// dispatchDue sends starts whose time has come and resends unanswered
// ones (see resendDue: RetryInterval, then backing off per device).
func (s *Server) dispatchDue(ctx context.Context, now time.Time) {
	if s.disp.nextDisp.IsZero() || s.disp.nextDisp.After(now) {
		return
	}
	var next time.Time
	keys := make([]dkey, 0)
	for k, dp := range s.disp.pending {
		if !dp.next.After(now) {
			keys = append(keys, k)
		} else if next.IsZero() || dp.next.Before(next) {
			next = dp.next
		}
	}
	sortKeys(keys)
	s.disp.nextDisp = next
	s.sendDue(ctx, now, keys)
}

// retryWait is how long after its last send an unanswered start that was
// sent n times (since its back-off last started over) is sent again: RetryInterval after the first send, then
// twice as long after each resend, at most MaxRetryInterval.
func (s *Server) retryWait(n int) time.Duration {
	w := s.cfg.RetryInterval
	for i := 1; i < n && w < s.cfg.MaxRetryInterval; i++ {
		w *= 2
	}
	return min(w, s.cfg.MaxRetryInterval)
}

// resendDue reports whether an unanswered start is to be sent again now:
// its wait (retryWait) since the last send is over, the device became
// visible again since (lastSend cleared), or the clock was set back
// behind the last send.
func (s *Server) resendDue(dp *dispatch, now time.Time) bool {
	return dp.lastSend.IsZero() || now.Before(dp.lastSend) || !now.Before(dp.lastSend.Add(s.retryWait(dp.tries)))
}

// wakeAt is when the dispatcher looks at a sent start again: at its next
// resend, and, for a claimed start, every RetryInterval to renew the
// claim's lease (dispatchTTL) even while its resends back off.
func (s *Server) wakeAt(dp *dispatch, now time.Time) time.Time {
	at := dp.lastSend.Add(s.retryWait(dp.tries))
	if dp.lastSend.IsZero() || at.Before(now) {
		at = now
	}
	if renew := now.Add(s.cfg.RetryInterval); dp.epoch > 0 && renew.Before(at) {
		at = renew
	}
	return at
}

// sendDue sends the starts of keys (due, in key order): first sends are
// recorded pending (one batch) before they go out; unanswered ones are
// resent when resendDue says so, and their claims renewed.
func (s *Server) sendDue(ctx context.Context, now time.Time, keys []dkey) {
	var lost map[dkey]bool
	if c := s.claimer(); c != nil {
		lost = s.renewClaimed(ctx, c, keys)
	}
	var firstRows []task.Result
	var sends []transport.Message
	var again []bool // sends[i] is a resend
	for _, k := range keys {
		dp := s.disp.pending[k]
		if dp == nil {
			continue
		}
		if lost[k] {
			s.disp.drop(k) // taken over by another replica, or answered
			s.stats.Fenced++
			continue
		}
		ts := s.cat.tasks[k.task]
		switch {
		case ts == nil:
			s.disp.drop(k)
			continue
		case ts.t.Suspended:
			dp.next = now.Add(s.cfg.RetryInterval)
		case dp.sent > 0 && !s.resendDue(dp, now):
			// Backing off: only the claim's lease is renewed (above).
			dp.next = s.wakeAt(dp, now)
		default:
			if dp.sent == 0 {
				firstRows = append(firstRows, task.Result{TaskID: k.task, DeviceID: k.device, RunID: dp.start.RunID, Seq: transport.SeqDispatched, State: task.Pending, DueAt: dp.start.Due, UpdatedAt: now})
				s.stats.Dispatched++
				s.met.dispatched.Add(ctx, 1, s.met.firstSend...)
				if !dp.start.Due.IsZero() {
					s.met.lag.Record(ctx, max(now.Sub(dp.start.Due), 0).Seconds())
				}
			}
			dp.sent++
			dp.tries++
			dp.lastSend = now
			st := dp.start
			sends = append(sends, transport.Message{Key: startKey(k.task, dp.start.RunID), Kind: transport.StartRun, Device: k.device, Start: &st, Definition: s.definition(ts)})
			again = append(again, dp.sent > 1)
			dp.next = s.wakeAt(dp, now)
		}
		if s.disp.nextDisp.IsZero() || dp.next.Before(s.disp.nextDisp) {
			s.disp.nextDisp = dp.next
		}
	}
	// Pending is recorded (one batch) before the starts go out.
	s.record(ctx, firstRows)
	for i, m := range sends {
		switch {
		case !s.sendStart(ctx, m, now):
			s.stats.Unreachable++
		case again[i]:
			s.stats.Resent++
			s.met.dispatched.Add(ctx, 1, s.met.resend...)
		}
	}
}

// unreachableRetry is how soon a start whose send found its device
// unreachable is tried again (at most RetryInterval).
const unreachableRetry = 5 * time.Second

// sendStart sends a StartRun and reports whether the transport took it.
// When the transport reports the device unreachable (not connected to
// this server process: a restarted server's devices are still
// reconnecting), nothing went out, so the start is tried again soon, not
// after its back-off, and sendStart returns false.
func (s *Server) sendStart(ctx context.Context, m transport.Message, now time.Time) bool {
	if err := s.send(ctx, m); !errors.Is(err, transport.ErrUnreachable) {
		return true
	}
	dp := s.disp.pending[dkey{m.Start.TaskID, m.Device}]
	if dp == nil || dp.start.RunID != m.Start.RunID {
		return false
	}
	dp.lastSend, dp.tries = time.Time{}, 0
	if at := now.Add(min(unreachableRetry, s.cfg.RetryInterval)); at.Before(dp.next) {
		dp.next = at
		if s.disp.nextDisp.IsZero() || at.Before(s.disp.nextDisp) {
			s.disp.nextDisp = at
		}
	}
	return false
}

// resendTo sends device d's unanswered starts again at once (it became
// visible again: after VisibilityTimeout without a heartbeat, or after a
// server restart), and restarts their back-off. It looks up the device's
// dispatches task by task, not by scanning every dispatch: a restarted
// server hears the first heartbeat of every device of the fleet.
func (s *Server) resendTo(ctx context.Context, d scope.DeviceID, now time.Time) {
	// The device's starts are found through byDev: a fleet of devices
	// becoming visible one by one costs each its own starts, not a scan of
	// every task or every device's. Starts already sent start their
	// back-off over; first sends already due go out with them.
	var keys []dkey
	for _, id := range s.disp.byDev[d] {
		k := dkey{id, d}
		dp := s.disp.pending[k]
		switch {
		case dp == nil:
		case dp.sent > 0:
			dp.lastSend, dp.tries, dp.next = time.Time{}, 0, now
			keys = append(keys, k)
		case !dp.next.After(now):
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return
	}
	sortKeys(keys)
	s.sendDue(ctx, now, keys)
}
