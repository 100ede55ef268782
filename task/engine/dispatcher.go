package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
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
	devices := append(append([]scope.DeviceID(nil), run.Devices...), run.Skipped...)
	if !ts.onServer {
		ts.manual = &st
	} else {
		ts.lastFire = &st
	}
	s.startOn(ctx, ts, st, devices, st.RunID, now)
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
	// A durable stop marker (whatever the task's history settings): a
	// server that restarts before every device reported the stop finds it
	// and keeps sending StopRun (recoverRuns).
	if _, err := s.cfg.Store.AppendEvents(ctx, storage.AppendEventsParams{Events: []storage.EventRecord{{
		TaskID: t.ID, At: storage.UTC(now), Level: string(task.EventProgress), Severity: string(task.SeverityInfo),
		Message: "the devices running the task are told to stop", Key: stopMarkerPrefix + strconv.FormatInt(now.UnixNano(), 10),
	}}}); err != nil {
		return fmt.Errorf("engine: stop %q: %w", t.ID, err)
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

// Handle implements transport.Handler for messages from devices.
func (s *Server) Handle(ctx context.Context, m transport.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.opened {
		return
	}
	now := s.clk.Now()
	ack := true
	switch m.Kind {
	case transport.Heartbeat:
		s.heartbeat(ctx, m, now)
		return
	case transport.Ack:
		s.acked(m)
		return
	case transport.Results:
		// Buffered: Tick records every buffered result in one batch and
		// acknowledges them afterwards (see flushResults).
		s.rbuf = append(s.rbuf, m)
		s.rcount += len(m.Results)
		if s.rcount >= maxResultBatch {
			s.flushResults(ctx, now)
		}
		return
	case transport.Events:
		if _, err := s.m.RecordEvents(ctx, m.Events); err != nil && !errors.Is(err, task.ErrInvalid) {
			ack = false
		}
	case transport.UpdatesDownloaded:
		s.updatesDownloaded(ctx, m.Key, now)
	case transport.VirusOutbreak:
		if m.Outbreak != nil {
			s.virusOutbreak(ctx, schedule.AppTypes(m.Outbreak.AppType), m.Outbreak.At, now)
		}
	case transport.LocalEdit:
		if m.Edit != nil {
			s.mu.Unlock() // the Manager calls TaskSaved
			_, err := s.m.MergeDeviceEdit(ctx, task.Actor{ID: m.Edit.User}, m.Edit.Task.ID, m.Edit.BaseRevision, m.Edit.Task)
			s.mu.Lock()
			if err != nil {
				s.log.Error().Err(err).Str("task", m.Edit.Task.ID).Msg("engine: local edit not merged")
				ack = !errors.Is(err, errs.ErrRetryable)
			}
		}
	default:
		return
	}
	if ack && m.Key != "" {
		_ = s.send(ctx, transport.Message{Kind: transport.Ack, Device: m.Device, Acks: []string{m.Key}})
	}
}

// afterResult settles the dispatch of a reported run and fires "on
// completing another task" tasks.
func (s *Server) afterResult(ctx context.Context, trig *plan, r task.Result, now time.Time) {
	k := dkey{r.TaskID, r.DeviceID}
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
		// A stale revision, or a delay slot that the scope has moved
		// since the device got the definition, is redelivered.
		if !ok || h.Revision < ts.t.Revision || !holdsSlot(h.Slot, ts, d) {
			if s.send(ctx, transport.Message{Kind: transport.Deliver, Device: d, Definition: s.definition(ts), Slot: slotOf(ts, d)}) == nil {
				s.stats.Delivered++
			}
		}
	}
	i := 0
	for j, h := range held {
		if j > 0 && held[j-1].TaskID == h.TaskID {
			continue
		}
		for i < len(ids) && ids[i] < h.TaskID {
			i++
		}
		if i == len(ids) || ids[i] != h.TaskID {
			_ = s.send(ctx, transport.Message{Kind: transport.Withdraw, Device: d, TaskID: h.TaskID})
		}
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

// flushResults records the buffered results through the Manager in one
// call (one task decode per task instead of per message), then
// acknowledges them and runs their follow-ups. A batch the Manager rejects
// as invalid is retried message by message so one bad message cannot hold
// back the others (the bad one is acknowledged and dropped: resending it
// cannot help); a storage failure acknowledges nothing, so devices resend.
func (s *Server) flushResults(ctx context.Context, now time.Time) {
	if len(s.rbuf) == 0 {
		return
	}
	msgs := s.rbuf
	s.rbuf, s.rcount = nil, 0
	defer func() {
		// Keep the buffer for the next results (they arrive all day).
		clear(msgs)
		if s.rbuf == nil {
			s.rbuf = msgs[:0]
		}
	}()
	// One buffer, sized exactly and reused across flushes: RecordResults
	// keeps nothing of its argument.
	total := 0
	for _, m := range msgs {
		total += len(m.Results)
	}
	if cap(s.flushBuf) < total {
		s.flushBuf = make([]task.Result, 0, total)
	}
	all := s.flushBuf[:0]
	for _, m := range msgs {
		all = append(all, m.Results...)
	}
	defer func() {
		clear(all)
		s.flushBuf = all[:0]
	}()
	ok := msgs
	n, err := s.m.RecordResults(ctx, all)
	switch {
	case err == nil:
		s.stats.ResultsApplied += int64(n)
	case errors.Is(err, task.ErrInvalid):
		ok = ok[:0:0]
		for _, m := range msgs {
			n, err := s.m.RecordResults(ctx, m.Results)
			if err != nil && !errors.Is(err, task.ErrInvalid) {
				continue
			}
			if err != nil {
				s.log.Error().Err(err).Str("device", string(m.Device)).Msg("engine: invalid results dropped")
			}
			s.stats.ResultsApplied += int64(n)
			ok = append(ok, m)
		}
	default:
		s.log.Error().Err(err).Msg("engine: results not recorded; devices will resend")
		return
	}
	acks := map[scope.DeviceID][]string{}
	var order []scope.DeviceID
	for _, m := range ok {
		if _, seen := acks[m.Device]; !seen {
			order = append(order, m.Device)
		}
		switch {
		case len(m.Merged) > 0 && acks[m.Device] == nil:
			// Usually the device's only message: ack its keys as
			// they are (clipped, so a later append copies them).
			acks[m.Device] = slices.Clip(m.Merged)
		case len(m.Merged) > 0:
			acks[m.Device] = append(acks[m.Device], m.Merged...)
		default:
			acks[m.Device] = append(acks[m.Device], m.Key)
		}
	}
	for _, d := range order {
		_ = s.send(ctx, transport.Message{Kind: transport.Ack, Device: d, Acks: acks[d]})
	}
	var trig plan
	for _, m := range ok {
		for _, r := range m.Results {
			s.afterResult(ctx, &trig, r, now)
		}
	}
	s.commit(ctx, trig) // "on completing another task" starts, in one batch
}

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

// acked settles the pause and resume orders a device acknowledged.
func (s *Server) acked(m transport.Message) {
	for _, key := range m.Acks {
		if k, ok := s.ctlKeys[key]; ok && k.device == m.Device {
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

func sameSlot(a, b *transport.Slot) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

// holdsSlot is sameSlot(held, slotOf(ts, d)) without allocating.
func holdsSlot(held *transport.Slot, ts *taskState, d scope.DeviceID) bool {
	want, ok := slotAt(ts, d)
	if !ok {
		return held == nil
	}
	return held != nil && *held == want
}

// reslot follows a change of a device task's scope from before: its
// Wake-on-LAN times are planned again, and with the automatic randomized
// delay the connected devices whose slot moved get the definition with
// their new slot now, so the new scope keeps to the start budget (the
// others get it with their next heartbeat, which reports the slot they
// hold). It returns how many devices were sent a new slot.
func (s *Server) reslot(ctx context.Context, ts *taskState, before []scope.DeviceID) int {
	if !s.rescoped(ts, before) || ts.t.Schedule.RandomDelay.Mode != schedule.DelayAutomatic {
		return 0
	}
	def := s.definition(ts)
	n := 0
	for i, d := range ts.devices {
		if j, ok := slices.BinarySearch(before, d); !ok || (j == i && len(before) == len(ts.devices)) {
			continue // new devices get the task with their heartbeat; unmoved slots stay
		}
		if s.connected(ctx, d) && s.send(ctx, transport.Message{Kind: transport.Deliver, Device: d, Definition: def, Slot: &transport.Slot{Index: i, Of: len(ts.devices)}}) == nil {
			s.stats.Delivered++
			n++
		}
	}
	return n
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

// stopMarkerPrefix starts the key of the history event Stop writes.
const stopMarkerPrefix = "stop/"

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
	p := storage.ListEventsParams{TaskID: id, From: from, Limit: storage.MaxListLimit}
	for {
		evs, err := s.cfg.Store.ListEvents(ctx, p)
		if err != nil {
			return fmt.Errorf("engine: recover stops of %q: %w", id, err)
		}
		for _, e := range evs {
			if strings.HasPrefix(e.Key, stopMarkerPrefix) && e.At.After(stopAt) {
				stopAt = e.At
			}
		}
		if len(evs) < p.Limit {
			break
		}
		p.AfterID = evs[len(evs)-1].ID
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
