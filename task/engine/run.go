package engine

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

func (s *Server) addDispatch(st transport.Start, d scope.DeviceID, at time.Time) {
	k := dkey{st.TaskID, d}
	if cur := s.pending[k]; cur != nil && cur.start.RunID > st.RunID {
		return
	}
	dp := &dispatch{start: st, device: d, next: at}
	s.pending[k] = dp
	if s.nextDisp.IsZero() || dp.next.Before(s.nextDisp) {
		s.nextDisp = dp.next
	}
}

// record writes per-device results through the Manager and returns how
// many were applied.
func (s *Server) record(ctx context.Context, rs []task.Result) int {
	if len(rs) == 0 {
		return 0
	}
	n, err := s.m.Runtime().RecordResults(ctx, rs)
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
	var conn, off []scope.DeviceID
	for _, d := range devices {
		if s.connected(ctx, d) {
			conn = append(conn, d)
		} else {
			off = append(off, d)
		}
	}
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

// FireMarkerRetention is how long the engine keeps the fire marker of an
// activation (storage.EngineStateFire) when RecoveryWindow is shorter:
// a restarted or second replica never fires an activation this recent
// twice. Older markers are purged when the task fires again, so the
// newest marker of a task is always kept.
const FireMarkerRetention = 31 * 24 * time.Hour

// fire runs an activation of a server-run task on the devices of its
// scope that are connected now (the selection is resolved at fire time).
func (s *Server) fire(ctx context.Context, ts *taskState, act, now time.Time, kind transport.RunKind) {
	st := transport.Start{TaskID: ts.t.ID, RunID: transport.RunID(act, kind), At: act}
	// The fire marker is engine state, not history: history settings and
	// retention never touch it, and no device event can take its key.
	n, err := s.cfg.Store.PutEngineState(ctx, storage.PutEngineStateParams{Records: []storage.EngineStateRecord{{
		TaskID: ts.t.ID, Kind: storage.EngineStateFire, Key: strconv.FormatInt(st.RunID, 10), RunID: st.RunID, At: storage.UTC(now),
	}}})
	if err != nil {
		s.log.Error().Err(err).Str("task", ts.t.ID).Msg("engine: fire marker")
		return
	}
	if n == 0 {
		return // fired before (a server restart): its starts are recovered from storage
	}
	if _, err := s.cfg.Store.PurgeEngineState(ctx, storage.PurgeEngineStateParams{TaskID: ts.t.ID, Kind: storage.EngineStateFire, Before: storage.UTC(now.Add(-max(FireMarkerRetention, s.cfg.RecoveryWindow)))}); err != nil {
		s.log.Error().Err(err).Str("task", ts.t.ID).Msg("engine: purge old fire markers")
	}
	if ts.t.Notifications.Stores(task.EventProgress) {
		if _, err := s.cfg.Store.AppendEvents(ctx, storage.AppendEventsParams{Events: []storage.EventRecord{{
			TaskID: ts.t.ID, RunID: st.RunID, At: storage.UTC(now), Level: string(task.EventProgress), Severity: string(task.SeverityInfo),
			Message: fmt.Sprintf("scheduled start at %s", act.UTC().Format(time.RFC3339)),
		}}}); err != nil {
			s.log.Error().Err(err).Str("task", ts.t.ID).Msg("engine: fire history event")
		}
	}
	s.stats.Fired++
	s.resolve(ctx, ts)
	ts.lastFire = &st
	s.startOn(ctx, ts, st, ts.devices, ts.t.SettingsRevision, now)
}

// Tick does everything due now: fires server-run activations, sends due
// and retried starts and Wake-on-LAN, refreshes scopes, purges history.
func (s *Server) Tick(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.opened {
		return fmt.Errorf("engine: Tick before Open: %w", ErrClosed)
	}
	now := s.clk.Now()
	if now.Before(s.lastTick) {
		s.clockBack(now, s.lastTick.Sub(now))
	}
	s.lastTick = now
	s.flushResults(ctx, now)
	if !now.Before(s.nextScope) {
		s.nextScope = now.Add(s.cfg.ScopeRefresh)
		s.refresh(ctx, now)
	}
	lead, err := s.leader(ctx)
	if err != nil {
		return err
	}
	for _, id := range s.sortedIDs() {
		ts := s.tasks[id]
		if !ts.onServer || !ts.t.Schedule.Timed() {
			continue
		}
		if !lead {
			// A follower fires nothing but keeps its cursor within
			// RecoveryWindow, so when it takes over it fires what the
			// old leader may have missed (fire markers skip the rest).
			if floor := now.Add(-s.cfg.RecoveryWindow); ts.cursor.Before(floor) {
				ts.cursor, ts.next = floor, time.Time{}
			}
			continue
		}
		if ts.next.IsZero() || !ts.next.After(ts.cursor) {
			nx, ok := ts.t.Schedule.Next(ts.cursor, s.loc)
			if !ok {
				nx = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
			}
			ts.next = nx
		}
		if ts.next.After(now) {
			continue
		}
		for act := range ts.t.Schedule.Between(ts.cursor, now, s.loc) {
			ts.cursor = act
			if !ts.t.Suspended {
				s.fire(ctx, ts, act, now, transport.Scheduled)
			}
		}
		ts.next = time.Time{}
	}
	if lead {
		s.updatesFallback(ctx, now)
	}
	// Without storage.Claimer the starts are dispatched from memory, so
	// only the leader may send them (another replica is refused above).
	if c := s.claimer(); c != nil || lead {
		s.wake(ctx, now)
		if c != nil {
			s.dispatchClaimed(ctx, c, now)
		}
		s.dispatchDue(ctx, now)
		s.controlsDue(ctx, now)
	}
	if lead && s.claimer() != nil && !now.Before(s.nextReconcile) {
		// With replicas, the leader rebuilds the pause, resume and stop
		// orders from the stored states every ScopeRefresh, so an order
		// whose replica died before its devices answered still arrives.
		s.nextReconcile = now.Add(s.cfg.ScopeRefresh)
		if err := s.recoverRuns(ctx, now, true); err != nil {
			s.log.Error().Err(err).Msg("engine: reconcile pause, resume and stop orders")
		}
	}
	if lead && !now.Before(s.nextPurge) {
		s.nextPurge = now.Add(s.cfg.PurgeEvery)
		if _, err := s.m.Runtime().PurgeHistory(ctx); err != nil {
			s.log.Error().Err(err).Msg("engine: purge history")
		}
	}
	return nil
}

// clockBack follows the server's clock stepping back by step: resends,
// scope refreshes and the other periodic duties are due within their
// intervals of the new time rather than an interval after the old one (a
// start waiting for a resend would otherwise wait for the length of the
// step), and the starts not yet answered are due step earlier: their due
// times were computed on the old clock. Schedules keep their cursors:
// nothing fires twice.
func (s *Server) clockBack(now time.Time, step time.Duration) {
	clamp := func(t *time.Time, every time.Duration) {
		if t.After(now.Add(every)) {
			*t = now
		}
	}
	for _, dp := range s.pending {
		clamp(&dp.next, s.cfg.RetryInterval)
		if dp.start.Due.After(now) {
			dp.start.Due = dp.start.Due.Add(-step)
		}
	}
	if !s.nextDisp.IsZero() {
		clamp(&s.nextDisp, s.cfg.RetryInterval)
	}
	for _, c := range s.controls {
		clamp(&c.next, s.cfg.RetryInterval)
	}
	if !s.nextCtl.IsZero() {
		clamp(&s.nextCtl, s.cfg.RetryInterval)
	}
	clamp(&s.nextScope, s.cfg.ScopeRefresh)
	clamp(&s.nextPurge, s.cfg.PurgeEvery)
	clamp(&s.nextReconcile, s.cfg.ScopeRefresh)
	for _, ts := range s.tasks {
		ts.nextWake, ts.wakes = time.Time{}, nil
	}
}

// updatesFallback fires the server-run "when new updates are downloaded"
// tasks (device selections, Administration Server tasks) every
// UpdatesFallbackEvery while the repository got no new updates for
// UpdatesOverdue, as the agent does for device tasks: the activations
// are at base+UpdatesOverdue+k*UpdatesFallbackEvery (base: the last
// download, or Open), the latest due one fires (one catch-up after a
// stall, none twice: a clock stepping back fires nothing until it passes
// the last one again).
func (s *Server) updatesFallback(ctx context.Context, now time.Time) {
	base := s.updAt
	if base.IsZero() {
		base = s.openedAt
	}
	first := base.Add(UpdatesOverdue)
	if first.After(now) {
		return
	}
	act := first.Add(now.Sub(first) / UpdatesFallbackEvery * UpdatesFallbackEvery)
	if !act.After(s.lastFall) {
		return
	}
	s.lastFall = act
	for _, id := range s.sortedIDs() {
		ts := s.tasks[id]
		if ts.onServer && ts.t.Schedule.Kind == schedule.OnUpdates && !ts.t.Suspended {
			s.fire(ctx, ts, act, now, transport.Scheduled)
		}
	}
}

// Run ticks every interval until ctx is done (goroutine mode).
func (s *Server) Run(ctx context.Context, interval time.Duration) error {
	tk := s.clk.Ticker(interval)
	defer tk.Stop()
	for {
		if err := s.Tick(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tk.C:
		}
	}
}

func (s *Server) sortedIDs() []string {
	if s.ids == nil {
		s.ids = make([]string, 0, len(s.tasks))
		for id := range s.tasks {
			s.ids = append(s.ids, id)
		}
		sortStrings(s.ids)
	}
	return s.ids
}

// dispatchDue sends starts whose time has come and resends unanswered
// ones every RetryInterval.
func (s *Server) dispatchDue(ctx context.Context, now time.Time) {
	if s.nextDisp.IsZero() || s.nextDisp.After(now) {
		return
	}
	var next time.Time
	keys := make([]dkey, 0)
	for k, dp := range s.pending {
		if !dp.next.After(now) {
			keys = append(keys, k)
		} else if next.IsZero() || dp.next.Before(next) {
			next = dp.next
		}
	}
	sortKeys(keys)
	var lost map[dkey]bool
	if c := s.claimer(); c != nil {
		lost = s.renewClaimed(ctx, c, keys)
	}
	var firstRows []task.Result
	var sends []transport.Message
	for _, k := range keys {
		dp := s.pending[k]
		if lost[k] {
			delete(s.pending, k) // taken over by another replica, or answered
			s.stats.Fenced++
			continue
		}
		ts := s.tasks[k.task]
		if ts == nil || ts.t.Suspended {
			if ts == nil {
				delete(s.pending, k)
				continue
			}
			dp.next = now.Add(s.cfg.RetryInterval)
		} else {
			if dp.sent == 0 {
				firstRows = append(firstRows, task.Result{TaskID: k.task, DeviceID: k.device, RunID: dp.start.RunID, Seq: transport.SeqDispatched, State: task.Pending, DueAt: dp.start.Due, UpdatedAt: now})
				s.stats.Dispatched++
			} else {
				s.stats.Resent++
			}
			dp.sent++
			st := dp.start
			sends = append(sends, transport.Message{Key: startKey(k.task, dp.start.RunID), Kind: transport.StartRun, Device: k.device, Start: &st, Definition: s.definition(ts)})
			dp.next = now.Add(s.cfg.RetryInterval)
		}
		if next.IsZero() || dp.next.Before(next) {
			next = dp.next
		}
	}
	s.nextDisp = next
	// Pending is recorded (one batch) before the starts go out.
	s.record(ctx, firstRows)
	for _, m := range sends {
		_ = s.send(ctx, m)
	}
}

// refresh re-resolves every scope: devices that joined a device task's
// scope get it with their next heartbeat, and connected devices whose
// automatic-delay slot moved get it now; devices joining a server-run
// Manually/Once/Immediately task with "run missed tasks" get its last
// start (once).
func (s *Server) refresh(ctx context.Context, now time.Time) {
	for _, id := range s.sortedIDs() {
		ts := s.tasks[id]
		before := ts.devices
		added := s.resolve(ctx, ts)
		s.joinedMissed(ctx, ts, added, now)
		s.reslot(ctx, ts, before)
	}
	s.byDevice = nil
}

// wake sends Wake-on-LAN requests the chosen minutes before each device's
// start: for server-run tasks to every device of the scope (connected or
// not: waking turned-off devices is the point), for device tasks before
// the device's own local activation plus its randomized delay.
func (s *Server) wake(ctx context.Context, now time.Time) {
	for _, id := range s.sortedIDs() {
		ts := s.tasks[id]
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
	if l, ok := s.zones[dev.TimeZone]; ok {
		return l
	}
	l, err := time.LoadLocation(dev.TimeZone)
	if err != nil {
		l = time.UTC
	}
	s.zones[dev.TimeZone] = l
	return l
}
