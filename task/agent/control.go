package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/taskfleet/taskfleet/task/transport"
)

// suspended reports whether t is suspended on this device: whichever is
// newer of its definition (Task.Suspended at Task.Revision) and the last
// pause or resume order applied (Held at Control) decides.
func suspended(t *LocalTask) bool {
	if t.Control > t.Def.Task.Revision {
		return t.Held
	}
	return t.Def.Task.Suspended
}

// errNoPauser is why a run of an executor without Pauser is not paused.
var errNoPauser = errors.New("the application does not support pausing a run")

// control applies a PauseRun or ResumeRun: an order older than (or the
// same as) the last one applied to the task is a duplicate or arrived
// late, and changes nothing. The caller acknowledges the message's key
// afterwards in every case.
func (a *Agent) control(ctx context.Context, m transport.Message, now time.Time) {
	c := m.Control
	t := a.tasks[m.TaskID]
	if c == nil || t == nil || c.Order <= t.Control {
		return
	}
	pause := m.Kind == transport.PauseRun
	t.Control, t.Held = c.Order, pause
	if r := t.Running; r != nil && r.Executing {
		switch {
		case pause && !r.Paused:
			a.pauseRun(ctx, t, c.Order, now)
		case !pause && r.Paused:
			a.resumeRun(ctx, t, now)
		}
	}
	a.save(ctx, t)
}

// pauseRun pauses the running run through the executor's Pauser. A run
// that cannot be paused continues; the device says so in a warning event
// and in the running result's message, never silently.
func (a *Agent) pauseRun(ctx context.Context, t *LocalTask, order int64, now time.Time) {
	r := t.Running
	id := t.Def.Task.ID
	err := errNoPauser
	if p, ok := a.cfg.Executor.(Pauser); ok {
		err = p.Pause(ctx, id, r.RunID)
	}
	r.Seq++
	if err != nil {
		msg := "the task was suspended but the run cannot be paused (" + err.Error() + "); it continues"
		a.save(ctx, t)
		a.report(ctx, t, result{RunID: r.RunID, Seq: r.Seq, State: transport.StateRunning, DueAt: r.At.UTC(), StartedAt: r.StartedAt.UTC(), Message: msg})
		e := Event{TaskID: id, RunID: r.RunID, At: now, Level: transport.EventProgress, Severity: transport.SeverityWarning, Message: msg}
		k := fmt.Sprintf("%s/pause/%s/%d/%d", a.cfg.Device, id, r.RunID, order)
		if err := a.enqueue(ctx, transport.Message{Key: "ev/" + k, Kind: transport.Events, Events: []transport.Event{wireEvent(e, k)}}); err != nil {
			a.log.Error().Err(err).Str("task", id).Msg("agent: event not queued")
		}
		return
	}
	r.Paused, r.PausedAt = true, now
	a.save(ctx, t)
	a.report(ctx, t, result{RunID: r.RunID, Seq: r.Seq, State: transport.StatePaused, DueAt: r.At.UTC(), StartedAt: r.StartedAt.UTC(), Message: "paused: the task was suspended"})
}

// resumeRun continues the paused run. A run the executor cannot resume is
// stopped and ends failed, so it is never left paused for good.
func (a *Agent) resumeRun(ctx context.Context, t *LocalTask, now time.Time) {
	r := t.Running
	id := t.Def.Task.ID
	r.PausedFor += now.Sub(r.PausedAt)
	r.Paused, r.PausedAt = false, time.Time{}
	err := errNoPauser
	if p, ok := a.cfg.Executor.(Pauser); ok {
		err = p.Resume(ctx, id, r.RunID)
	}
	if err != nil {
		_ = a.cfg.Executor.Stop(ctx, id, r.RunID)
		a.end(ctx, t, Outcome{State: transport.StateFailed, Message: "the paused run could not be resumed: " + err.Error()}, now)
		return
	}
	r.Seq++
	a.save(ctx, t)
	a.report(ctx, t, result{RunID: r.RunID, Seq: r.Seq, State: transport.StateRunning, DueAt: r.At.UTC(), StartedAt: r.StartedAt.UTC(), Message: "resumed: the task was resumed"})
}

// stopRun applies a StopRun. The server resends it until it learns a
// final state of the run, so the device applies it once per run: a
// StopRun for a run that already ended (stopped by an earlier copy, or
// finished) changes nothing. A run the device never started is recorded
// stopped before it started (and will not start), so the server always
// gets its final state.
func (a *Agent) stopRun(ctx context.Context, m transport.Message, now time.Time) {
	t := a.tasks[m.TaskID]
	if m.Control == nil || m.Control.RunID == 0 {
		// Stop whatever runs (a sender that names no run).
		if t != nil {
			a.stopTask(ctx, t, now)
		}
		return
	}
	id := m.Control.RunID
	if t == nil {
		// The device never had the task (its StartRun was lost) or it
		// was withdrawn: a late StartRun must not start the run.
		if slices.Contains(a.withdrawn[m.TaskID], id) {
			return
		}
		a.withdrawn[m.TaskID] = appendDone(a.withdrawn[m.TaskID], id)
		// Kept in the store too, so a late StartRun after an agent
		// restart does not start it either.
		if err := a.cfg.Store.SetMeta(ctx, stoppedMeta(m.TaskID, id), now.UTC(), id); err != nil {
			a.log.Error().Err(err).Str("task", m.TaskID).Msg("agent: record a run stopped before it arrived")
		}
		a.queueResult(ctx, result{TaskID: m.TaskID, RunID: id, Seq: transport.SeqDevice, State: transport.StateStopped, FinishedAt: now.UTC(),
			Message: "stopped before it started on the device"})
		return
	}
	running := t.Running != nil && t.Running.RunID == id
	if !running && slices.Contains(t.Done, id) {
		return // ended already: a repeated StopRun
	}
	var due time.Time
	seq := transport.SeqDevice
	if i := slices.IndexFunc(t.Queue, func(q transport.Start) bool { return q.RunID == id }); i >= 0 {
		due = t.Queue[i].At.UTC()
	}
	if w := t.Waiting; w != nil && w.RunID == id {
		due, seq = w.At.UTC(), seq+1 // after its "waiting for the application" report
	}
	a.stopTask(ctx, t, now)
	if !running {
		t.Done = appendDone(t.Done, id)
		// Queued before the task is stored with the run done: killed in
		// between, the agent meets the server's next StopRun with the run
		// not done and reports it again (the same key). The other order
		// lost it: the next StopRun found the run done ("ended already").
		a.report(ctx, t, result{RunID: id, Seq: seq, State: transport.StateStopped, DueAt: due, FinishedAt: now.UTC(),
			Message: "stopped before it started on the device"})
		a.save(ctx, t)
	}
}

// stopTask stops the task's run in progress, if any, and drops its queued
// and waiting starts.
func (a *Agent) stopTask(ctx context.Context, t *LocalTask, now time.Time) {
	t.Queue, t.Waiting = nil, nil
	if t.Running == nil {
		a.save(ctx, t)
		return
	}
	if t.Running.Executing {
		_ = a.cfg.Executor.Stop(ctx, t.Def.Task.ID, t.Running.RunID)
	}
	a.end(ctx, t, Outcome{State: transport.StateStopped, Message: "stopped by the administrator"}, now)
}

// stoppedMeta names the Store's record of a run stopped before the device
// received its start.
func stoppedMeta(taskID string, runID int64) string {
	return "stopped/" + taskID + "/" + strconv.FormatInt(runID, 10)
}

// stoppedBefore reports whether run runID of taskID was stopped before the
// device received it (also before an agent restart).
func (a *Agent) stoppedBefore(ctx context.Context, taskID string, runID int64) bool {
	if slices.Contains(a.withdrawn[taskID], runID) {
		return true
	}
	_, n, err := a.cfg.Store.Meta(ctx, stoppedMeta(taskID, runID))
	return err == nil && n == runID
}
