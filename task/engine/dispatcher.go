package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

var _ task.Dispatcher = (*Server)(nil)
var _ transport.Handler = (*Server)(nil)

// TaskSaved implements task.Dispatcher: the task's scope is resolved
// again, device tasks are delivered to the connected devices of the scope
// (and withdrawn from devices that left it; heartbeats repair any loss),
// and a server-run schedule restarts from the saved settings (an
// Immediately schedule fires at once). Suspending a task sends PauseRun
// to the devices running it, resuming sends ResumeRun to the devices
// whose run is paused (both retried until answered). Devices that join
// the scope of a server-run Manually/Once task with "run missed tasks"
// get its last start.
func (s *Server) TaskSaved(ctx context.Context, t *task.Task) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.opened {
		return nil // Open loads every task
	}
	settingsChanged := true
	now := s.clk.Now()
	var before []scope.DeviceID
	wasSuspended, known := false, false
	if old := s.tasks[t.ID]; old != nil {
		before, wasSuspended, known = old.devices, old.t.Suspended, true
		settingsChanged = old.t.SettingsRevision != t.SettingsRevision
	}
	ts := s.load(ctx, t, now)
	s.byDevice = nil
	if known && ts.t.Suspended != wasSuspended {
		s.suspendChanged(ctx, ts, now)
	}
	if ts.onServer {
		if known && !s.refires(ts, settingsChanged) {
			s.joinedMissed(ctx, ts, joined(before, ts.devices), now)
		}
		return nil
	}
	s.rescoped(ts, before) // the connected devices get their new slots below
	for _, d := range before {
		if !ts.inScope[d] {
			_ = s.send(ctx, transport.Message{Kind: transport.Withdraw, Device: d, TaskID: t.ID})
		}
	}
	def := s.definition(ts)
	for _, d := range ts.devices {
		if s.connected(ctx, d) {
			if s.send(ctx, transport.Message{Kind: transport.Deliver, Device: d, Definition: def, Slot: slotOf(ts, d)}) == nil {
				s.stats.Delivered++
			}
		}
	}
	return nil
}

// TaskDeleted implements task.Dispatcher.
func (s *Server) TaskDeleted(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.tasks[id]
	if ts == nil {
		return nil
	}
	delete(s.tasks, id)
	s.ids, s.trig = nil, nil
	for k := range s.pending {
		if k.task == id {
			delete(s.pending, k)
		}
	}
	for k := range s.controls {
		if k.task == id {
			s.dropControl(k)
		}
	}
	s.byDevice = nil
	for _, d := range ts.devices {
		_ = s.send(ctx, transport.Message{Kind: transport.Withdraw, Device: d, TaskID: id})
	}
	return nil
}

// Start implements task.Dispatcher (a manual start): every device of the
// run gets it at its randomized start; devices not connected get it when
// they become visible if the task runs missed tasks, and are recorded
// missed otherwise. A manual start changes the randomized offsets.
func (s *Server) Start(ctx context.Context, t *task.Task, run task.Run) error {
	s.mu.Lock()
	defer s.mu.Unlock()
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
		if ts.inScope[d] {
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

// Stop implements task.Dispatcher: starts not yet begun are recorded
// stopped; devices running the task (or paused, or sent a start) are told
// to stop: StopRun is resent every RetryInterval until the device reports
// a final state for the run (stopped, or whatever it ended with).
func (s *Server) Stop(ctx context.Context, t *task.Task) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clk.Now()
	// A durable stop order in the engine's own state (history settings and
	// retention never touch it): a server that restarts before every
	// device reported the stop finds it and keeps sending StopRun
	// (recoverRuns). Only the latest stop order matters, so older ones go.
	if _, err := s.cfg.Store.PutEngineState(ctx, storage.PutEngineStateParams{Records: []storage.EngineStateRecord{{
		TaskID: t.ID, Kind: storage.EngineStateStop, Key: strconv.FormatInt(now.UnixNano(), 10), At: storage.UTC(now),
	}}}); err != nil {
		return fmt.Errorf("engine: stop %q: %w", t.ID, err)
	}
	if _, err := s.cfg.Store.PurgeEngineState(ctx, storage.PurgeEngineStateParams{TaskID: t.ID, Kind: storage.EngineStateStop, Before: storage.UTC(now)}); err != nil {
		s.log.Error().Err(err).Str("task", t.ID).Msg("engine: purge older stop orders")
	}
	claims := s.claimer() != nil
	after := ""
	for {
		page, err := s.cfg.Store.ListResults(ctx, storage.ListResultsParams{TaskID: t.ID, States: []string{string(task.Scheduled), string(task.Pending), string(task.Running), string(task.Paused)}, AfterDevice: after, Limit: storage.MaxListLimit})
		if err != nil {
			return fmt.Errorf("engine: stop %q: %w", t.ID, err)
		}
		if len(page) == 0 {
			return nil
		}
		var stopped []task.Result
		for _, r := range page {
			d := scope.DeviceID(r.DeviceID)
			k := dkey{t.ID, d}
			dp := s.pending[k]
			delete(s.pending, k)
			unsent := r.State == string(task.Scheduled) || (r.State == string(task.Pending) && (dp == nil || dp.sent == 0))
			if claims && r.State == string(task.Pending) && r.Seq >= transport.SeqDispatched {
				unsent = false // another replica dispatched it
			}
			if unsent {
				stopped = append(stopped, task.Result{TaskID: t.ID, DeviceID: d, RunID: r.RunID, Seq: r.Seq + 1, State: task.Stopped, DueAt: r.DueAt, FinishedAt: now, UpdatedAt: now, Message: "stopped before it started"})
				continue
			}
			s.order(ctx, transport.StopRun, k, r.RunID, 0, now)
		}
		s.record(ctx, stopped)
		after = page[len(page)-1].DeviceID
	}
}

// afterResult settles the dispatch of a reported run and fires "on
// completing another task" tasks.
func (s *Server) afterResult(ctx context.Context, trig *plan, r task.Result, now time.Time) {
	k := dkey{r.TaskID, r.DeviceID}
	if ts := s.tasks[r.TaskID]; ts != nil {
		ts.sawRun(r.RunID)
	}
	if dp := s.pending[k]; dp != nil && r.Seq >= transport.SeqDevice && r.RunID >= dp.start.RunID {
		delete(s.pending, k)
	}
	s.controlResult(ctx, k, r, now)
	var status schedule.CompletionStatus
	switch r.State {
	case task.Completed, task.CompletedWithWarnings:
		status = schedule.Completed
	case task.Failed, task.FailedTimeout:
		status = schedule.Failed
	default:
		return
	}
	if !s.triggered()[r.TaskID] {
		return
	}
	at := r.FinishedAt
	if at.IsZero() {
		at = r.UpdatedAt
	}
	for _, id := range s.sortedIDs() {
		ts := s.tasks[id]
		sch := ts.t.Schedule
		if sch.Kind != schedule.OnTaskCompletion || sch.TaskID != r.TaskID || sch.Status != status || ts.t.Suspended || !ts.inScope[r.DeviceID] {
			continue
		}
		if trig := s.tasks[r.TaskID]; trig == nil || !trig.inScope[r.DeviceID] {
			continue // both tasks must be assigned to the device
		}
		st := transport.Start{TaskID: id, RunID: transport.RunID(at, transport.Triggered), At: at}
		if s.known(ctx, id, r.DeviceID, st.RunID) {
			continue // a redelivered result: this run was started already
		}
		s.plan(ctx, trig, ts, st, []scope.DeviceID{r.DeviceID}, ts.t.SettingsRevision, now)
	}
}

// heartbeat makes the device visible, brings its task definitions up to
// date and answers with the repository state.
func (s *Server) heartbeat(ctx context.Context, m transport.Message, now time.Time) {
	s.stats.Heartbeats++
	d := m.Device
	wasVisible := s.visible(d, now)
	s.seen[d] = now
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
	ids := s.devicesTasks()[d]
	j := 0
	for _, id := range ids {
		for j < len(held) && held[j].TaskID < id {
			j++
		}
		var h transport.HeldTask
		ok := false
		for ; j < len(held) && held[j].TaskID == id; j++ {
			h, ok = held[j], true
		}
		ts := s.tasks[id]
		if ok && h.Revision == ts.t.Revision {
			ts.adoptSlot(d, h.Slot) // after a restart: keep the place it holds
		}
		// A stale revision, or a delay slot that a new layout has moved
		// since the device got the definition, is redelivered.
		if !ok || h.Revision < ts.t.Revision || !holdsSlot(h.Slot, ts, d) {
			if s.send(ctx, transport.Message{Kind: transport.Deliver, Device: d, Definition: s.definition(ts), Slot: slotOf(ts, d)}) == nil {
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
		for i < len(ids) && ids[i] < h.TaskID {
			i++
		}
		if i == len(ids) || ids[i] != h.TaskID {
			if s.tasks[h.TaskID] == nil {
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
	_ = s.send(ctx, transport.Message{Kind: transport.Sync, Device: d, SyncInfo: &transport.SyncInfo{UpdatesGeneration: s.updGen, UpdatesAt: s.updAt}})
	if !wasVisible {
		// Became visible: starts, stops, pauses and resumes waiting for
		// it go out now.
		for k, dp := range s.pending {
			if k.device == d && dp.sent > 0 {
				dp.next = now
				s.nextDisp = now
			}
		}
		s.dispatchDue(ctx, now)
		for k, c := range s.controls {
			if k.device == d && !c.acked {
				c.next = now
				s.nextCtl = now
			}
		}
		s.controlsDue(ctx, now)
	}
}

// UpdatesDownloaded records that the repository received new updates
// (key de-duplicates repeated reports): "when new updates are downloaded"
// tasks run on the server's devices now and on device tasks' devices at
// their next synchronization.
func (s *Server) UpdatesDownloaded(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updatesDownloaded(ctx, key, s.clk.Now())
	return nil
}

func (s *Server) updatesDownloaded(ctx context.Context, key string, now time.Time) {
	if key != "" {
		if s.updKeys[key] {
			return
		}
		if len(s.updKeys) >= maxOutbreakKeys {
			s.updKeys = map[string]bool{} // bounded: devices choose the keys
		}
		s.updKeys[key] = true
	}
	s.updAt = now.UTC()
	gen := now.UnixMilli()
	if gen <= s.updGen {
		gen = s.updGen + 1
	}
	s.updGen = gen
	for _, id := range s.sortedIDs() {
		ts := s.tasks[id]
		if ts.onServer && ts.t.Schedule.Kind == schedule.OnUpdates && !ts.t.Suspended {
			s.fire(ctx, ts, now, now, transport.Triggered)
		}
	}
	sync := &transport.SyncInfo{UpdatesGeneration: s.updGen, UpdatesAt: s.updAt}
	for d := range s.devicesTasks() {
		if s.visible(d, now) {
			_ = s.send(ctx, transport.Message{Kind: transport.Sync, Device: d, SyncInfo: sync})
		}
	}
}

// VirusOutbreak starts the "on virus outbreak" tasks whose application
// types include appType, on the devices of their scopes. Reports of the
// same outbreak (same at) start each task once.
func (s *Server) VirusOutbreak(ctx context.Context, appType schedule.AppTypes, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.virusOutbreak(ctx, appType, at, s.clk.Now())
	return nil
}

func (s *Server) virusOutbreak(ctx context.Context, appType schedule.AppTypes, at, now time.Time) {
	for _, id := range s.sortedIDs() {
		ts := s.tasks[id]
		sch := ts.t.Schedule
		if sch.Kind != schedule.OnVirusOutbreak || !sch.AppTypes.Has(appType) || ts.t.Suspended {
			continue
		}
		if ts.onServer {
			s.fire(ctx, ts, at, now, transport.Triggered)
			continue
		}
		st := transport.Start{TaskID: id, RunID: transport.RunID(at, transport.Triggered), At: at}
		s.startOn(ctx, ts, st, ts.devices, ts.t.SettingsRevision, now)
	}
}

// maxResultBatch is how many buffered results force a flush.
const maxResultBatch = 10000

// triggered returns the ids of tasks that some "on completing another
// task" task waits for (rebuilt with the task list).
func (s *Server) triggered() map[string]bool {
	if s.trig == nil {
		s.trig = map[string]bool{}
		for _, ts := range s.tasks {
			if ts.t.Schedule.Kind == schedule.OnTaskCompletion {
				s.trig[ts.t.Schedule.TaskID] = true
			}
		}
	}
	return s.trig
}

// control is a StopRun, PauseRun or ResumeRun the device has not answered
// yet. It is resent every RetryInterval (and when the device becomes
// visible) until answered: a stop by a final state of the run, a pause or
// resume by the device's acknowledgement of its key (sent once the order
// is applied and the run's new state is in its outbox); any of them by
// the end of the run or a newer run.
//
// An acknowledged order is kept (not resent) until the run ends, so that
// reports crossing it do not send it again.
type control struct {
	kind  transport.Kind
	run   int64
	order int64
	key   string
	next  time.Time
	acked bool
}

func controlKey(kind transport.Kind, k dkey, run, order int64) string {
	switch kind {
	case transport.StopRun:
		return fmt.Sprintf("x/%s/%d", k.task, run)
	case transport.PauseRun:
		return fmt.Sprintf("pause/%s/%d/%d", k.task, run, order)
	}
	return fmt.Sprintf("resume/%s/%d/%d", k.task, run, order)
}

// order sends a control to a device now and keeps resending it until it
// is answered. A newer order replaces the device's unanswered one, except
// that a pending stop is never replaced by a pause or resume.
func (s *Server) order(ctx context.Context, kind transport.Kind, k dkey, run, ord int64, now time.Time) {
	if s.controls == nil {
		s.controls, s.ctlKeys = map[dkey]*control{}, map[string]dkey{}
	}
	if cur := s.controls[k]; cur != nil {
		if cur.kind == transport.StopRun && kind != transport.StopRun && run <= cur.run {
			return
		}
		if cur.kind == kind && cur.run == run && cur.order == ord {
			return // under way
		}
		delete(s.ctlKeys, cur.key)
	}
	c := &control{kind: kind, run: run, order: ord, key: controlKey(kind, k, run, ord), next: now.Add(s.cfg.RetryInterval)}
	s.controls[k] = c
	s.ctlKeys[c.key] = k
	if s.nextCtl.IsZero() || c.next.Before(s.nextCtl) {
		s.nextCtl = c.next
	}
	s.sendControl(ctx, k, c)
}

func (s *Server) sendControl(ctx context.Context, k dkey, c *control) {
	_ = s.send(ctx, transport.Message{Key: c.key, Kind: c.kind, Device: k.device, TaskID: k.task, Control: &transport.Control{RunID: c.run, Order: c.order}})
}

func (s *Server) dropControl(k dkey) {
	if c := s.controls[k]; c != nil {
		delete(s.ctlKeys, c.key)
		delete(s.controls, k)
	}
}

// acked settles the pause and resume orders device d acknowledged.
func (s *Server) acked(d scope.DeviceID, keys []string) {
	for _, key := range keys {
		if k, ok := s.ctlKeys[key]; ok && k.device == d {
			s.controls[k].acked = true
		}
	}
}

// controlsDue resends the unanswered controls whose retry time has come;
// those whose run has ended meanwhile (by the stored result) are settled.
func (s *Server) controlsDue(ctx context.Context, now time.Time) {
	if s.nextCtl.IsZero() || s.nextCtl.After(now) {
		return
	}
	var next time.Time
	var keys []dkey
	for k, c := range s.controls {
		if c.acked {
			continue
		}
		if !c.next.After(now) {
			keys = append(keys, k)
		} else if next.IsZero() || c.next.Before(next) {
			next = c.next
		}
	}
	sortKeys(keys)
	for _, k := range keys {
		c := s.controls[k]
		if s.ended(ctx, k, c.run) {
			s.dropControl(k)
			continue
		}
		c.next = now.Add(s.cfg.RetryInterval)
		if next.IsZero() || c.next.Before(next) {
			next = c.next
		}
		s.sendControl(ctx, k, c)
	}
	s.nextCtl = next
}

// ended reports whether the stored result of a device shows run ended
// (or a newer run); a result that no longer exists (the task was deleted)
// counts as ended.
func (s *Server) ended(ctx context.Context, k dkey, run int64) bool {
	r, err := s.cfg.Store.GetResult(ctx, k.task, string(k.device))
	if err != nil {
		return errors.Is(err, storage.ErrNotFound)
	}
	return r.RunID > run || (r.RunID == run && task.State(r.State).Final())
}

// controlResult settles a device's control with a result that ends its
// run, and keeps the device in step with the task's suspension: a run
// reported running while the task is suspended gets a pause, a run
// reported paused while it is not gets a resume (a run that started from
// a start sent before the suspend, or a report that crossed the order).
func (s *Server) controlResult(ctx context.Context, k dkey, r task.Result, now time.Time) {
	if c := s.controls[k]; c != nil && (r.RunID > c.run || (r.RunID == c.run && r.State.Final())) {
		s.dropControl(k)
	}
	if r.State != task.Running && r.State != task.Paused {
		return
	}
	ts := s.tasks[r.TaskID]
	if ts == nil {
		return
	}
	switch {
	case r.State == task.Running && ts.t.Suspended:
		s.order(ctx, transport.PauseRun, k, r.RunID, ts.t.Revision, now)
	case r.State == task.Paused && !ts.t.Suspended:
		s.order(ctx, transport.ResumeRun, k, r.RunID, ts.t.Revision, now)
	}
}

// suspendChanged sends the task's devices the pause (suspended) or resume
// order of its new revision: the devices whose stored result is running
// (paused) and those with an unanswered opposite order.
func (s *Server) suspendChanged(ctx context.Context, ts *taskState, now time.Time) {
	kind, state := transport.ResumeRun, task.Paused
	if ts.t.Suspended {
		kind, state = transport.PauseRun, task.Running
	}
	id := ts.t.ID
	var keys []dkey
	for k, c := range s.controls {
		if k.task == id && c.kind != transport.StopRun {
			keys = append(keys, k)
		}
	}
	sortKeys(keys)
	for _, k := range keys {
		s.order(ctx, kind, k, s.controls[k].run, ts.t.Revision, now)
	}
	after := ""
	for {
		page, err := s.cfg.Store.ListResults(ctx, storage.ListResultsParams{TaskID: id, States: []string{string(state)}, AfterDevice: after, Limit: storage.MaxListLimit})
		if err != nil {
			s.log.Error().Err(err).Str("task", id).Msg("engine: list runs to pause or resume")
			return
		}
		if len(page) == 0 {
			return
		}
		for _, r := range page {
			s.order(ctx, kind, dkey{id, scope.DeviceID(r.DeviceID)}, r.RunID, ts.t.Revision, now)
		}
		after = page[len(page)-1].DeviceID
	}
}

// lastStartKinds are the schedules whose last start a device joining the
// scope runs when the task runs missed tasks (the product documentation).
func lastStartKinds(k schedule.Kind) bool {
	return k == schedule.Manual || k == schedule.Once || k == schedule.Immediately
}

// joinedMissed starts the last start of a server-run Manually, Once or
// Immediately task with "run missed tasks" on the devices that joined its
// scope, once per device (a device that left and came back, or whose
// start is recorded already, is not started again).
func (s *Server) joinedMissed(ctx context.Context, ts *taskState, added []scope.DeviceID, now time.Time) {
	if len(added) == 0 || !ts.onServer || !ts.t.Schedule.RunMissed || ts.lastFire == nil || !lastStartKinds(ts.t.Schedule.Kind) {
		return
	}
	st := *ts.lastFire
	var devs []scope.DeviceID
	for _, d := range added {
		if !s.known(ctx, ts.t.ID, d, st.RunID) {
			devs = append(devs, d)
		}
	}
	if len(devs) > 0 {
		s.startOn(ctx, ts, st, devs, startRevision(ts, st), now)
	}
}

// refires reports whether a saved server-run task fires again because of
// the save (its Immediately schedule or a Once start still ahead), so
// devices that joined its scope get that start rather than the last one.
func (s *Server) refires(ts *taskState, settingsChanged bool) bool {
	switch ts.t.Schedule.Kind {
	case schedule.Immediately:
		return settingsChanged
	case schedule.Once:
		return ts.t.Schedule.At.After(ts.cursor)
	}
	return false
}

// startRevision is the randomized-offset revision of a start: the run id
// of a manual start (a manual start moves the offsets), the settings
// revision otherwise.
func startRevision(ts *taskState, st transport.Start) int64 {
	if st.Manual {
		return st.RunID
	}
	return ts.t.SettingsRevision
}

// startOf rebuilds a start from its time-derived run id (transport.RunID).
func startOf(taskID string, runID int64) transport.Start {
	at := time.UnixMilli(runID / 4).UTC()
	return transport.Start{TaskID: taskID, RunID: runID, At: at, Due: at, Manual: transport.RunKind(runID%4) == transport.Manual}
}

// joined returns the devices of after that are not in before (both
// sorted).
func joined(before, after []scope.DeviceID) []scope.DeviceID {
	var out []scope.DeviceID
	for _, d := range after {
		if _, ok := slices.BinarySearch(before, d); !ok {
			out = append(out, d)
		}
	}
	return out
}

// holdsSlot reports whether a device holds its place in the task's delay
// layout, without allocating. Only the index counts: a device's start
// time depends on its index alone (slotLayout), so a layout that grew
// does not send every device a new Of.
func holdsSlot(held *transport.Slot, ts *taskState, d scope.DeviceID) bool {
	want, ok := slotAt(ts, d)
	if !ok {
		return held == nil
	}
	return held != nil && held.Index == want.Index
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
	for _, d := range ts.devices {
		if s.connected(ctx, d) && s.send(ctx, transport.Message{Kind: transport.Deliver, Device: d, Definition: def, Slot: slotOf(ts, d)}) == nil {
			s.stats.Delivered++
		}
	}
}

// rescoped reports whether a device task's scope changed from before, and
// then plans its Wake-on-LAN times again (they follow the delay slots).
func (s *Server) rescoped(ts *taskState, before []scope.DeviceID) bool {
	if ts.onServer || slices.Equal(before, ts.devices) {
		return false
	}
	ts.wakes, ts.nextWake = nil, time.Time{}
	return true
}

// recoverRuns restores on Open what the previous server kept in memory:
// the pause and resume orders its devices may not have received (a
// suspended task's running devices, a resumed task's paused ones), the
// stop orders of runs still in progress that a stop marker covers, and
// the last start of server-run Manually/Once/Immediately tasks and the
// last manual start of device tasks with those schedules, when they run
// missed tasks, from the stored results (the newest run id among them; run ids are
// time-derived, so the start is rebuilt exactly). Devices that joined
// such a server-run task's scope while no server ran get that start now.
//
// With controlsOnly (the leader's periodic reconciliation, see Tick) only
// the pause, resume and stop orders are rebuilt: a replica that received
// an order and died before every device answered leaves it to the leader.
func (s *Server) recoverRuns(ctx context.Context, now time.Time, controlsOnly bool) error {
	for _, id := range s.sortedIDs() {
		ts := s.tasks[id]
		state, kind := task.Paused, transport.ResumeRun
		if ts.t.Suspended {
			state, kind = task.Running, transport.PauseRun
		}
		serverRun := !controlsOnly && ts.onServer && ts.t.Schedule.RunMissed && lastStartKinds(ts.t.Schedule.Kind)
		deviceRun := !controlsOnly && !ts.onServer && ts.t.Schedule.RunMissed && lastStartKinds(ts.t.Schedule.Kind)
		var states []string
		if !serverRun && !deviceRun {
			// only the orders to restore: pause/resume, and stops
			states = []string{string(task.Running), string(task.Paused), string(task.Pending)}
		}
		var last int64
		have := map[scope.DeviceID]int64{}
		var live []storage.ResultRecord // runs a stop marker may still apply to
		after := ""
		for {
			page, err := s.cfg.Store.ListResults(ctx, storage.ListResultsParams{TaskID: id, States: states, AfterDevice: after, Limit: storage.MaxListLimit})
			if err != nil {
				return fmt.Errorf("engine: recover runs of %q: %w", id, err)
			}
			if len(page) == 0 {
				break
			}
			for _, r := range page {
				d := scope.DeviceID(r.DeviceID)
				if task.State(r.State) == state {
					s.order(ctx, kind, dkey{id, d}, r.RunID, ts.t.Revision, now)
				}
				switch task.State(r.State) {
				case task.Running, task.Paused:
					live = append(live, r)
				case task.Pending:
					if r.Seq >= transport.SeqDispatched {
						live = append(live, r)
					}
				}
				have[d] = r.RunID
				if r.RunID > last && (serverRun || transport.RunKind(r.RunID%4) == transport.Manual) {
					last = r.RunID
				}
			}
			after = page[len(page)-1].DeviceID
		}
		if err := s.recoverStops(ctx, id, live, now); err != nil {
			return err
		}
		if last == 0 {
			continue
		}
		st := startOf(id, last)
		if deviceRun {
			if ts.manual == nil || ts.manual.RunID < last {
				ts.manual, ts.def = &st, nil
			}
			continue
		}
		if ts.lastFire == nil || ts.lastFire.RunID < last {
			ts.lastFire = &st
		}
		var devs []scope.DeviceID
		for _, d := range ts.devices {
			if have[d] < last {
				devs = append(devs, d)
			}
		}
		if len(devs) > 0 {
			s.startOn(ctx, ts, st, devs, startRevision(ts, st), now)
		}
	}
	return nil
}

// recoverStops sends StopRun again to the runs in live (results still in
// progress) that the task's latest stop marker covers: a run due at or
// before the stop was running, paused or dispatched when it was stopped
// and has not reported a final state since.
func (s *Server) recoverStops(ctx context.Context, id string, live []storage.ResultRecord, now time.Time) error {
	if len(live) == 0 {
		return nil
	}
	from := live[0].DueAt
	for _, r := range live[1:] {
		if r.DueAt.Before(from) {
			from = r.DueAt
		}
	}
	var stopAt time.Time
	p := storage.ListEngineStateParams{TaskID: id, Kind: storage.EngineStateStop, Limit: storage.MaxListLimit}
	for {
		recs, err := s.cfg.Store.ListEngineState(ctx, p)
		if err != nil {
			return fmt.Errorf("engine: recover stops of %q: %w", id, err)
		}
		for _, r := range recs {
			if !r.At.Before(from) && r.At.After(stopAt) {
				stopAt = r.At
			}
		}
		if len(recs) < p.Limit {
			break
		}
		p.AfterID = recs[len(recs)-1].ID
	}
	if stopAt.IsZero() {
		return nil
	}
	for _, r := range live {
		if !r.DueAt.After(stopAt) {
			s.order(ctx, transport.StopRun, dkey{id, scope.DeviceID(r.DeviceID)}, r.RunID, 0, now)
		}
	}
	return nil
}
