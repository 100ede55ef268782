package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Control orders: StopRun, PauseRun and ResumeRun sent to devices and
// resent until the device reports the run's new state (state:
// controlOrders).

// StopRun implements task.Dispatcher (stopping a task's runs; it does
// not stop the server, see Close): starts not yet begun are recorded
// stopped; devices running the task (or paused, or sent a start) are told
// to stop: StopRun is resent every RetryInterval until the device reports
// a final state for the run (stopped, or whatever it ended with).
func (s *Server) StopRun(ctx context.Context, t *task.Task) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.live("StopRun"); err != nil {
		return err
	}
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
			dp := s.disp.pending[k]
			s.disp.drop(k)
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
	if s.ctl.controls == nil {
		s.ctl.controls, s.ctl.ctlKeys = map[dkey]*control{}, map[string]dkey{}
	}
	if cur := s.ctl.controls[k]; cur != nil {
		if cur.kind == transport.StopRun && kind != transport.StopRun && run <= cur.run {
			return
		}
		if cur.kind == kind && cur.run == run && cur.order == ord {
			return // under way
		}
		delete(s.ctl.ctlKeys, cur.key)
	}
	c := &control{kind: kind, run: run, order: ord, key: controlKey(kind, k, run, ord), next: now.Add(s.cfg.RetryInterval)}
	s.ctl.controls[k] = c
	s.ctl.ctlKeys[c.key] = k
	if s.ctl.nextCtl.IsZero() || c.next.Before(s.ctl.nextCtl) {
		s.ctl.nextCtl = c.next
	}
	s.sendControl(ctx, k, c)
}

func (s *Server) sendControl(ctx context.Context, k dkey, c *control) {
	_ = s.send(ctx, transport.Message{Key: c.key, Kind: c.kind, Device: k.device, TaskID: k.task, Control: &transport.Control{RunID: c.run, Order: c.order}})
}

func (s *Server) dropControl(k dkey) {
	if c := s.ctl.controls[k]; c != nil {
		delete(s.ctl.ctlKeys, c.key)
		delete(s.ctl.controls, k)
	}
}

// acked settles the pause and resume orders device d acknowledged.
func (s *Server) acked(d scope.DeviceID, keys []string) {
	for _, key := range keys {
		if k, ok := s.ctl.ctlKeys[key]; ok && k.device == d {
			s.ctl.controls[k].acked = true
		}
	}
}

// controlsDue resends the unanswered controls whose retry time has come;
// those whose run has ended meanwhile (by the stored result) are settled.
func (s *Server) controlsDue(ctx context.Context, now time.Time) {
	if s.ctl.nextCtl.IsZero() || s.ctl.nextCtl.After(now) {
		return
	}
	var next time.Time
	var keys []dkey
	for k, c := range s.ctl.controls {
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
		c := s.ctl.controls[k]
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
	s.ctl.nextCtl = next
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
	if c := s.ctl.controls[k]; c != nil && (r.RunID > c.run || (r.RunID == c.run && r.State.Final())) {
		s.dropControl(k)
	}
	if r.State != task.Running && r.State != task.Paused {
		return
	}
	ts := s.cat.tasks[r.TaskID]
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
	for k, c := range s.ctl.controls {
		if k.task == id && c.kind != transport.StopRun {
			keys = append(keys, k)
		}
	}
	sortKeys(keys)
	for _, k := range keys {
		s.order(ctx, kind, k, s.ctl.controls[k].run, ts.t.Revision, now)
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
