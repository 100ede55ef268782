package engine

import (
	"context"
	"errors"
	"fmt"
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
// Immediately schedule fires at once).
func (s *Server) TaskSaved(ctx context.Context, t *task.Task) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.opened {
		return nil // Open loads every task
	}
	now := s.clk.Now()
	var before []scope.DeviceID
	if old := s.tasks[t.ID]; old != nil {
		before = old.devices
	}
	ts := s.load(ctx, t, now)
	s.byDevice = nil
	if ts.onServer {
		return nil
	}
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
// stopped; devices running the task are told to stop (they report
// stopped). StopRun is sent once per device; a device that misses it
// finishes the run.
func (s *Server) Stop(ctx context.Context, t *task.Task) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clk.Now()
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
			_ = s.send(ctx, transport.Message{Key: fmt.Sprintf("x/%s/%d", t.ID, r.RunID), Kind: transport.StopRun, Device: d, TaskID: t.ID})
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
	held := map[string]int64{}
	if m.Heartbeat != nil {
		for _, h := range m.Heartbeat.Held {
			held[h.TaskID] = h.Revision
		}
	}
	for _, id := range s.devicesTasks()[d] {
		ts := s.tasks[id]
		if rev, ok := held[id]; !ok || rev < ts.t.Revision {
			if s.send(ctx, transport.Message{Kind: transport.Deliver, Device: d, Definition: s.definition(ts), Slot: slotOf(ts, d)}) == nil {
				s.stats.Delivered++
			}
		}
		delete(held, id)
	}
	for id := range held {
		_ = s.send(ctx, transport.Message{Kind: transport.Withdraw, Device: d, TaskID: id})
	}
	_ = s.send(ctx, transport.Message{Kind: transport.Sync, Device: d, SyncInfo: &transport.SyncInfo{UpdatesGeneration: s.updGen, UpdatesAt: s.updAt}})
	if !wasVisible {
		// Became visible: starts waiting for it go out now.
		for k, dp := range s.pending {
			if k.device == d && dp.sent > 0 {
				dp.next = now
				s.nextDisp = now
			}
		}
		s.dispatchDue(ctx, now)
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
		if len(m.Merged) > 0 {
			acks[m.Device] = append(acks[m.Device], m.Merged...)
		} else {
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
