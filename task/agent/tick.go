package agent

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Tick does everything due at the clock's current time: collects finished
// runs, starts due activations and queued starts, stops runs over their
// maximum time, follows restart timelines, sends the heartbeat and flushes
// the outbox. Simulations call it after each clock step; it is cheap when
// nothing is due. It returns ErrNotAttached before Attach and ErrClosed
// after Close.
func (a *Agent) Tick(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if a.ep == nil {
		return ErrNotAttached
	}
	now := a.clk.Now()
	if now.Sub(a.lastTick) > a.cfg.SleepGap {
		// The device slept (or the host stopped ticking): it was not
		// visible in between, and becomes visible again now.
		a.awakeSince, a.dirty = now, true
		for _, t := range a.tasks {
			t.nextOK = false
		}
	}
	if now.Before(a.lastTick) {
		a.clockBack(now)
	}
	a.lastTick = now
	a.cmu.Lock()
	completed := len(a.compl) > 0
	a.cmu.Unlock()
	if !a.dirty && !a.touched && !completed && now.Before(a.wakeAt) {
		// Nothing is due (the fast path of simulations); at most the
		// outbox has to go out because the server answered.
		if a.flushNow && a.ep != nil {
			a.flush(ctx, now)
			if a.outboxBusy && a.nextFlush.Before(a.wakeAt) {
				a.wakeAt = a.nextFlush
			}
		}
		a.wake.Store(a.wakeAt.UnixNano())
		a.cmu.Lock()
		if len(a.compl) > 0 {
			a.wake.Store(0)
		}
		a.cmu.Unlock()
		return nil
	}
	// Nothing changed since the last visit of the tasks and none of them
	// is due before taskWake: only the heartbeat or an outbox retry is
	// due (most ticks of a fleet), and the tasks are not visited.
	visit := a.dirty || a.touched || completed || !now.Before(a.taskWake)
	// partial: time, messages about single tasks (touched) or ends of
	// single tasks' runs made the visit due, and nothing changed the
	// tasks as a whole (dirty) since the last visit: the tasks whose own
	// wake (a.wakes, from that visit; zeroed by rewake for a task a
	// message or a run's end changed) is still ahead have nothing to do
	// and are not touched (each touch of a task is a cache miss in a
	// large fleet).
	partial := visit && !a.dirty && a.wakesOK && a.order != nil
	if visit {
		if !partial {
			a.heldOK = false // what changed the tasks set dirty
		}
		a.dirty, a.touched = false, false
		if a.collect(ctx) {
			partial = false // a finished run's task has no wake entry
		}
		order := a.sorted()
		for i, t := range order {
			if partial && a.wakes[i].After(now) {
				continue // not due; a zero wake is never After
			}
			a.tickTask(ctx, t, now)
			if partial {
				a.wakes[i] = time.Time{} // recomputed by nextWake
			}
		}
		if a.updatesFallback(ctx, now) {
			partial = false // it may have queued starts of any task
		}
		if a.collect(ctx) { // synchronous executors finish inside Start
			partial = false // a finished run's task has no wake entry
		}
	}
	if a.ep != nil && !now.Before(a.nextBeat) {
		a.nextBeat = now.Add(a.cfg.Heartbeat)
		a.heartbeat(ctx)
	}
	if a.ep != nil && (a.flushNow || (a.outboxBusy && !now.Before(a.nextFlush))) {
		a.flush(ctx, now)
	}
	if visit {
		a.wakeAt = a.nextWake(now, partial && !a.dirty)
	} else {
		a.wakeAt = a.combineWake(now)
	}
	if a.dirty || a.flushNow {
		a.wake.Store(0)
	} else {
		a.wake.Store(a.wakeAt.UnixNano())
	}
	a.cmu.Lock()
	if len(a.compl) > 0 { // a run finished meanwhile
		a.wake.Store(0)
	}
	a.cmu.Unlock()
	return nil
}

// clockBack follows the device's clock stepping back: the heartbeat, the
// outbox retry and the application checks are due within their intervals
// of the new time, not an interval after the old one (the server would
// count the device invisible meanwhile). Schedules keep their cursors
// (nothing runs twice).
func (a *Agent) clockBack(now time.Time) {
	if a.nextBeat.After(now.Add(a.cfg.Heartbeat)) {
		a.nextBeat = now
	}
	if a.nextFlush.After(now.Add(a.cfg.RetryInterval)) {
		a.nextFlush = now
	}
	for _, t := range a.tasks {
		if t.appCheck.After(now.Add(a.cfg.RetryInterval)) {
			t.appCheck = now
		}
		t.nextOK = false
	}
	a.dirty = true
}

// nextWake returns the earliest instant at which Tick has something to do,
// and sets taskWake. With partial, only the tasks the visit ticked (their
// wakes zeroed) are looked at again: the others' wakes still hold.
func (a *Agent) nextWake(now time.Time, partial bool) time.Time {
	tw, atOnce := a.tasksWake(now, partial)
	if atOnce {
		a.taskWake = now
		return now
	}
	a.taskWake = tw
	return a.combineWake(now)
}

// combineWake is the earliest of the heartbeat, the outbox retry and
// taskWake, after now.
func (a *Agent) combineWake(now time.Time) time.Time {
	w := a.nextBeat
	if a.ep == nil {
		w = now.Add(a.cfg.Heartbeat)
	}
	if a.outboxBusy && !a.nextFlush.IsZero() && a.nextFlush.Before(w) {
		w = a.nextFlush
	}
	if !a.taskWake.IsZero() && a.taskWake.Before(w) {
		w = a.taskWake
	}
	if !w.After(now) {
		w = now.Add(time.Nanosecond)
	}
	return w
}

// noWake marks, in a.wakes, a task with nothing to do until something
// changes it (after every real instant).
var noWake = time.Unix(1<<62, 0)

// tasksWake returns the earliest instant at which a task has something to
// do (zero: none), or atOnce. It records each task's own wake in a.wakes
// (in sorted order; wakesOK when every entry holds), which a partial
// visit reads; with partial it recomputes only the zeroed entries.
func (a *Agent) tasksWake(now time.Time, partial bool) (w time.Time, atOnce bool) {
	order := a.sorted()
	if !partial || !a.wakesOK || len(a.wakes) != len(order) {
		partial = false
		a.wakes = slices.Grow(a.wakes[:0], len(order))[:len(order)]
		a.wakeUpdates = false
	}
	a.wakesOK = false // until every entry is computed
	for i, t := range order {
		if partial && !a.wakes[i].IsZero() {
			continue
		}
		tw, now0, upd := a.taskWakeOf(t, now)
		if now0 {
			return now, true
		}
		a.wakeUpdates = a.wakeUpdates || upd
		if tw.IsZero() {
			tw = noWake
		}
		a.wakes[i] = tw
	}
	a.wakesOK = true
	for _, tw := range a.wakes {
		if tw != noWake && (w.IsZero() || tw.Before(w)) {
			w = tw
		}
	}
	if a.wakeUpdates {
		due := a.updAt.Add(UpdatesOverdue)
		if a.dpDown {
			due = now
		}
		if !a.lastFall.IsZero() && a.lastFall.Add(UpdatesFallbackEvery).After(due) {
			due = a.lastFall.Add(UpdatesFallbackEvery)
		}
		if !due.IsZero() && (w.IsZero() || due.Before(w)) {
			w = due
		}
	}
	return w, false
}

// taskWakeOf returns the earliest instant at which the task has something
// to do (zero: none), or atOnce, and whether it follows the "when new
// updates are downloaded" fallback.
func (a *Agent) taskWakeOf(t *LocalTask, now time.Time) (w time.Time, atOnce, updates bool) {
	min := func(t time.Time) {
		if !t.IsZero() && (w.IsZero() || t.Before(w)) {
			w = t
		}
	}
	if r := t.Running; r != nil {
		if r.Executing {
			if max, ok := t.Def.Task.Schedule.MaxRunDuration(); ok && !r.Paused {
				min(r.StartedAt.Add(max + r.PausedFor))
			}
		} else {
			min(r.NextPrompt)
			min(r.RestartAt)
		}
		return w, false, false
	}
	if t.Waiting != nil && !suspended(t) {
		if t.appCheck.IsZero() {
			return now, true, false
		}
		min(t.appCheck)
	}
	for _, q := range t.Queue {
		if q.Due.IsZero() {
			return now, true, false
		}
		min(q.Due)
	}
	if t.Def.Task.Schedule.Kind == schedule.OnUpdates && (!t.Transient || a.dpDown) {
		updates = true
	}
	if t.Transient {
		return w, false, updates
	}
	if !t.nextOK {
		t.nextDue, t.nextOK = time.Time{}, true
		if nx, ok := t.Def.Task.Schedule.Next(t.Cursor, a.loc); ok {
			t.nextDue = nx.Add(a.offset(t))
		}
	}
	min(t.nextDue)
	return w, false, updates
}

func (a *Agent) heartbeat(ctx context.Context) {
	if !a.heldOK {
		a.heldOK = true
		if !a.heldSame() {
			// A new list: the previous one may still be in messages.
			a.held, a.hb = nil, nil
			if len(a.tasks) > 0 {
				a.held = make([]transport.HeldTask, 0, len(a.tasks))
			}
			for _, t := range a.sorted() {
				if !t.Transient {
					a.held = append(a.held, transport.HeldTask{TaskID: t.Def.Task.ID, Revision: t.Def.Task.Revision, Slot: t.Slot})
				}
			}
		}
	}
	// The payload is shared by the heartbeats sent while neither the held
	// tasks nor the updates generation nor the outbox's state change
	// (receivers only read it). With an empty outbox the heartbeat is
	// Quiet: the server answers it only when it has a newer updates
	// generation (with messages waiting, its Sync answer is the signal to
	// send them at once).
	quiet := !a.outboxBusy
	if a.hb == nil || a.hb.UpdatesGeneration != a.updGen || a.hb.Quiet != quiet {
		a.hb = &transport.HeartbeatInfo{UpdatesGeneration: a.updGen, Held: a.held, Quiet: quiet}
	}
	_ = a.ep.Send(ctx, transport.Message{Version: transport.ProtocolVersion, Kind: transport.Heartbeat, Device: a.cfg.Device, SentAt: a.clk.Now().UTC(), Heartbeat: a.hb})
}

// heldSame reports whether a.held still lists exactly the held
// (non-transient) tasks, their revisions and slots: most task visits
// change none of them, and the list is then kept instead of rebuilt.
func (a *Agent) heldSame() bool {
	if a.hb == nil {
		return false
	}
	i := 0
	for _, t := range a.sorted() {
		if t.Transient {
			continue
		}
		if i >= len(a.held) {
			return false
		}
		h := a.held[i]
		if h.TaskID != t.Def.Task.ID || h.Revision != t.Def.Task.Revision || !sameSlot(h.Slot, t.Slot) {
			return false
		}
		i++
	}
	return i == len(a.held)
}

func sameSlot(a, b *transport.Slot) bool {
	return a == b || a != nil && b != nil && *a == *b
}

// flush sends every unacknowledged outbox message; they stay queued until
// the server acknowledges them, and are resent every RetryInterval.
func (a *Agent) flush(ctx context.Context, now time.Time) {
	a.flushNow = false
	a.nextFlush = now.Add(a.cfg.RetryInterval)
	var ms []transport.Message
	var err error
	if a.freshOK {
		// The outbox is exactly fresh (see Agent.fresh).
		ms, a.freshOK = a.fresh, false
		defer func() {
			clear(ms) // hold no sent message until the next flush
			a.fresh = ms[:0]
		}()
	} else if o, ok := a.cfg.Store.(outboxAppender); ok {
		ms, err = o.appendOutbox(a.obuf[:0])
		if err == nil {
			a.obuf = ms
			defer clear(ms) // hold no sent message until the next flush
		}
	} else {
		ms, err = a.cfg.Store.Outbox(ctx)
	}
	if err != nil {
		a.log.Error().Err(err).Msg("agent: read outbox")
		return
	}
	a.outboxBusy = len(ms) > 0
	// Results are merged into messages of up to maxMerge entries (one
	// round trip, one storage batch); the server acknowledges every key.
	var merged transport.Message // Merged == nil: no results waiting
	send := func() bool {
		if merged.Merged == nil {
			return true
		}
		m := merged
		merged = transport.Message{}
		return a.ep.Send(ctx, m) == nil
	}
	mergeable := func(m transport.Message) bool { return m.Kind == transport.Results && len(m.Merged) == 0 }
	for i, m := range ms {
		if mergeable(m) {
			if len(merged.Merged) >= maxMerge {
				if !send() {
					return
				}
			}
			if merged.Merged == nil {
				// Size the message for the run of results it merges.
				n, k := 0, 0
				for _, r := range ms[i:] {
					if !mergeable(r) || n == maxMerge {
						break
					}
					n, k = n+1, k+len(r.Results)
				}
				merged = transport.Message{Version: transport.ProtocolVersion, Key: m.Key, Kind: transport.Results, Device: m.Device, SentAt: now.UTC(), Merged: make([]string, 0, n)}
				if n == 1 {
					// Alone (the usual case): its results are sent as
					// they are, not copied (neither the outbox nor a
					// receiver changes a queued result; clipped, so an
					// append copies).
					merged.Merged = append(merged.Merged, m.Key)
					merged.Results = slices.Clip(m.Results)
					continue
				}
				if k > 0 {
					merged.Results = make([]transport.Result, 0, k)
				}
			}
			merged.Merged = append(merged.Merged, m.Key)
			merged.Results = append(merged.Results, m.Results...)
			continue
		}
		if !send() {
			return
		}
		if err := a.ep.Send(ctx, m); err != nil {
			return // unreachable: retried later
		}
	}
	send()
}

// maxMerge bounds the outbox entries merged into one message.
const maxMerge = 256

// collect finishes the runs completed meanwhile, and zeroes their tasks'
// wakes (rewake: a partial visit ticks them, or recomputes their wakes).
// It reports whether the wake of such a task could not be kept (only a
// visit of every task is then safe).
func (a *Agent) collect(ctx context.Context) (all bool) {
	for {
		a.cmu.Lock()
		cs := a.compl
		a.compl = nil
		a.cmu.Unlock()
		if len(cs) == 0 {
			return all
		}
		for _, c := range cs {
			t := a.tasks[c.taskID]
			if t == nil || t.Running == nil || t.Running.RunID != c.runID || !t.Running.Executing {
				continue // stopped or timed out meanwhile
			}
			a.finish(ctx, t, c.out)
			if !a.rewake(t) {
				all = true
			}
		}
	}
}

// tickTask handles one task at now.
func (a *Agent) tickTask(ctx context.Context, t *LocalTask, now time.Time) {
	if r := t.Running; r != nil {
		if r.Executing {
			// The maximum run time counts execution only: time spent
			// paused (the task was suspended) is added to the limit.
			if max, ok := t.Def.Task.Schedule.MaxRunDuration(); ok && !r.Paused && !now.Before(r.StartedAt.Add(max+r.PausedFor)) {
				_ = a.cfg.Executor.Stop(ctx, t.Def.Task.ID, r.RunID)
				a.finish(ctx, t, Outcome{State: transport.StateFailedTimeout, Message: "stopped: the run exceeded its maximum time of " + max.String()})
			}
		} else if !r.RequiredAt.IsZero() {
			a.followRestart(ctx, t, now)
		}
		if t.Running != nil {
			return // one run per task at a time; due starts wait
		}
	}
	// unsaved: dueActivations changed t (its cursor, queue, missed runs)
	// and left the write to the caller: a begin below writes t anyway
	// (each of its paths does, before the run starts), so one write
	// records both; otherwise t is written at the end. Nothing leaves
	// the agent between the two changes but what begin queues before
	// its write (as the other order would), so an agent killed in
	// between restarts as if killed before the activation.
	unsaved := false
	if !t.Transient && (!t.nextOK || !t.nextDue.After(now)) {
		if suspended(t) {
			a.skipActivations(ctx, t, now)
		} else {
			unsaved = a.dueActivations(ctx, t, now)
		}
	}
	if w := t.Waiting; w != nil && t.Running == nil && !suspended(t) && !now.Before(t.appCheck) {
		t.appCheck = now.Add(a.cfg.RetryInterval)
		if a.cfg.Executor.AppRunning(ctx, t.Def.Task.Application) {
			t.Waiting = nil
			a.begin(ctx, t, *w, now)
			unsaved = false
		}
	}
	if t.Running == nil && !suspended(t) {
		for i, s := range t.Queue {
			if s.Due.After(now) {
				continue
			}
			t.Queue = slices.Delete(t.Queue, i, i+1)
			a.begin(ctx, t, s, now)
			unsaved = false
			break
		}
	}
	if unsaved {
		a.save(ctx, t)
	}
}

func (a *Agent) offset(t *LocalTask) time.Duration {
	return transport.Offset(t.Def.Task.Schedule, t.Def.Devices, t.Slot, t.Def.Task.ID, string(a.cfg.Device), t.Def.Task.SettingsRevision)
}

// dueActivations starts the task's scheduled activations that are due.
// Activations due before the device became visible (the agent was not
// running or the device slept, or the task reached the device only after
// them) are missed: with "run missed tasks" the latest of them runs once
// now and the others are recorded missed; without it every one is
// recorded missed (the newest maxMissed of a long gap individually).
// It reports whether it changed t, which the caller then writes to the
// store (see tickTask).
func (a *Agent) dueActivations(ctx context.Context, t *LocalTask, now time.Time) (changed bool) {
	s := &t.Def.Task.Schedule
	if !s.Timed() {
		return false
	}
	off := a.offset(t)
	if !t.nextOK {
		t.nextDue, t.nextOK = time.Time{}, true
		if nx, ok := s.Next(t.Cursor, a.loc); ok {
			t.nextDue = nx.Add(off)
		}
	}
	if t.nextDue.IsZero() || t.nextDue.After(now) {
		// Nothing due (the first activation below is Next(Cursor)):
		// the common case, and the range below allocates.
		return false
	}
	awake := a.awakeSince.Add(-a.cfg.MissedTolerance)
	reached := t.visibleFrom().Add(-a.cfg.MissedTolerance)
	// g is allocated at the first missed activation: the loop body is a
	// closure, so a value declared here would be allocated every visit.
	var g *missedGap
	for act := range s.Between(t.Cursor, now, a.loc) {
		due := act.Add(off)
		if due.After(now) {
			break
		}
		changed = true
		t.Cursor = act
		switch {
		case due.Before(reached):
			if g == nil {
				g = new(missedGap)
			}
			g.add(act, missedNotReached)
		case due.Before(awake):
			if g == nil {
				g = new(missedGap)
			}
			g.add(act, missedNotRunning)
		default:
			t.Queue = append(t.Queue, transport.Start{TaskID: t.Def.Task.ID, RunID: transport.RunID(act, transport.Scheduled), At: act, Due: due})
			if g != nil {
				g.later = len(g.acts) > 0
			}
		}
	}
	if g != nil && len(g.acts) > 0 {
		a.missedRun(ctx, t, *g, now)
	}
	if changed {
		t.nextOK = false
	}
	return changed
}

// missedGap collects the missed activations of one visit, oldest first:
// the newest maxMissed with why each was missed, and how many older ones
// were left out.
type missedGap struct {
	acts    []time.Time
	why     []string
	skipped int
	// later: an activation after the missed ones runs normally, so "run
	// missed tasks" has nothing to catch up.
	later bool
}

func (g *missedGap) add(act time.Time, why string) {
	if len(g.acts) == maxMissed {
		g.acts, g.why = slices.Delete(g.acts, 0, 1), slices.Delete(g.why, 0, 1)
		g.skipped++
	}
	g.acts, g.why = append(g.acts, act), append(g.why, why)
	g.later = false
}

// maxMissed bounds the missed activations of one gap recorded one by one
// (a device asleep for a year with a per-minute schedule records the
// newest maxMissed, the oldest of them naming how many came before).
const maxMissed = 64

// Why an activation was missed (the missed result's message).
const (
	missedNotRunning = "missed: the device was not visible when the task was due (the agent was not running or the device was asleep)"
	missedNotReached = "missed: the device was not visible when the task was due (the task reached the device only after it)"
	missedNoApp      = "missed: the application %s was not running; a later start replaced this one"
)

// visibleFrom is when the task could first run on the device: when the
// server sent it (the device was reachable then), or when it arrived.
func (t *LocalTask) visibleFrom() time.Time {
	if !t.SentAt.IsZero() && t.SentAt.Before(t.ReceivedAt) {
		return t.SentAt
	}
	return t.ReceivedAt
}

// missedRun handles the missed activations of one gap: with "run missed
// tasks" the latest runs once now (one catch-up, not a burst) unless a
// later activation runs anyway, and the others are recorded missed;
// otherwise all are.
func (a *Agent) missedRun(ctx context.Context, t *LocalTask, g missedGap, now time.Time) {
	note := ""
	if t.Def.Task.Schedule.RunMissed {
		note = "; a later activation runs instead"
		if !g.later {
			last := g.acts[len(g.acts)-1]
			g.acts, g.why = g.acts[:len(g.acts)-1], g.why[:len(g.why)-1]
			t.Queue = append(t.Queue, transport.Start{TaskID: t.Def.Task.ID, RunID: transport.RunID(last, transport.Scheduled), At: last, Due: now})
			note = "; the latest missed activation runs instead"
		}
	}
	for i, act := range g.acts {
		msg := g.why[i]
		if i == 0 && g.skipped > 0 {
			msg += fmt.Sprintf(" (and %d earlier activations)", g.skipped)
		}
		a.recordMissed(ctx, t, transport.RunID(act, transport.Scheduled), transport.SeqDevice, act, now, msg+note)
	}
}

func (a *Agent) recordMissed(ctx context.Context, t *LocalTask, id, seq int64, act, now time.Time, msg string) {
	t.Done = appendDone(t.Done, id)
	a.report(ctx, t, result{RunID: id, Seq: seq, State: transport.StateMissed, DueAt: act.UTC(), FinishedAt: now.UTC(), Message: msg})
}

// skipActivations passes over the activations of a suspended task: they
// are not run later.
func (a *Agent) skipActivations(ctx context.Context, t *LocalTask, now time.Time) {
	if !t.Def.Task.Schedule.Timed() {
		return
	}
	changed := false
	for act := range t.Def.Task.Schedule.Between(t.Cursor, now, a.loc) {
		t.Cursor, changed = act, true
	}
	if changed {
		t.nextOK = false
		a.save(ctx, t)
	}
}

func appendDone(d []int64, id int64) []int64 {
	d = append(d, id)
	if len(d) > maxDone {
		d = d[len(d)-maxDone:]
	}
	return d
}

// begin starts one run.
// A start that finds the application not running ends
// application_not_running, or, when the task runs missed tasks, waits for
// the application (LocalTask.Waiting).
func (a *Agent) begin(ctx context.Context, t *LocalTask, s transport.Start, now time.Time) {
	if slices.Contains(t.Done, s.RunID) {
		a.save(ctx, t)
		return
	}
	def := &t.Def.Task
	seq := transport.SeqDevice
	waited := false
	if w := t.Waiting; w != nil && w.RunID == s.RunID {
		t.Waiting = nil
		waited = true
	}
	if !a.cfg.Executor.AppRunning(ctx, def.Application) {
		if def.Schedule.RunMissed {
			a.wait(ctx, t, s, now)
			return
		}
		t.Done = appendDone(t.Done, s.RunID)
		// Queued before the task is stored with the run done (see end).
		a.report(ctx, t, result{RunID: s.RunID, Seq: transport.SeqDevice, State: transport.StateAppNotRunning, DueAt: s.At.UTC(), FinishedAt: now.UTC(),
			Message: "the application " + def.Application + " is not running"})
		a.save(ctx, t)
		return
	}
	if waited {
		seq++ // the waiting report took SeqDevice
	}
	t.Done = appendDone(t.Done, s.RunID)
	if s.Manual && s.RunID > t.LastManualDone {
		t.LastManualDone = s.RunID
	}
	r := t.spareRun // the last run's, reused (one allocation fewer per run)
	if r == nil {
		r = new(RunState)
	}
	t.spareRun = nil
	*r = RunState{RunID: s.RunID, At: s.At, Due: s.Due, StartedAt: now, Manual: s.Manual, Seq: seq, Executing: true}
	t.Running = r
	a.save(ctx, t) // write-ahead: a restart reports this run, never reruns it
	a.report(ctx, t, result{RunID: s.RunID, Seq: seq, State: transport.StateRunning, DueAt: s.At.UTC(), StartedAt: now.UTC()})
	run := Run{TaskID: def.ID, RunID: s.RunID, Application: def.Application, Type: def.Type, Account: def.Account, Manual: s.Manual, At: s.At, Due: s.Due, StartedAt: now}
	run.Settings = def.Settings
	if !def.Account.IsDefault() && a.cfg.Sealer != nil {
		pw, err := a.cfg.Sealer.Open(def.Account.Password)
		if err != nil {
			a.finish(ctx, t, Outcome{State: transport.StateFailed, Message: "the run-as account's password cannot be opened"})
			return
		}
		run.Password = pw
	}
	id, runID := def.ID, s.RunID
	done := func(o Outcome) {
		a.cmu.Lock()
		a.compl = append(a.compl, completion{id, runID, o})
		a.wake.Store(0)
		a.cmu.Unlock()
	}
	if err := a.cfg.Executor.Start(ctx, run, done); err != nil {
		a.finish(ctx, t, Outcome{State: transport.StateFailed, Message: "the run did not start: " + err.Error()})
		return
	}
	a.met.started.Add(ctx, 1)
	a.log.Info().Str("task", id).Int64("run", runID).Bool("manual", s.Manual).Time("due", s.Due.UTC()).Msg("agent: run started")
}

// wait keeps s until the task's application runs ("run missed tasks":
// the task starts the next time the application runs). A start already
// waiting is replaced by a newer one and recorded missed.
func (a *Agent) wait(ctx context.Context, t *LocalTask, s transport.Start, now time.Time) {
	if w := t.Waiting; w != nil {
		if w.RunID >= s.RunID {
			// An older start than the waiting one: missed.
			a.recordMissed(ctx, t, s.RunID, transport.SeqDevice, s.At, now, fmt.Sprintf(missedNoApp, t.Def.Task.Application))
			a.save(ctx, t)
			return
		}
		// After its "waiting for the application" report (SeqDevice).
		a.recordMissed(ctx, t, w.RunID, transport.SeqDevice+1, w.At, now, fmt.Sprintf(missedNoApp, t.Def.Task.Application))
	}
	t.Waiting = &s
	t.appCheck = now.Add(a.cfg.RetryInterval)
	a.save(ctx, t)
	a.report(ctx, t, result{RunID: s.RunID, Seq: transport.SeqDevice, State: transport.StatePending, DueAt: s.At.UTC(),
		Message: "waiting for the application " + t.Def.Task.Application + " to run (the task runs missed tasks)"})
}

// ApplicationStarted tells the agent that an application started on the
// device: starts waiting for it (tasks that run missed tasks) begin at
// the next Tick rather than at the next check (every RetryInterval).
func (a *Agent) ApplicationStarted(application string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range a.tasks {
		if t.Waiting != nil && t.Def.Task.Application == application {
			t.appCheck = time.Time{}
			a.dirty = true
			a.wake.Store(0)
		}
	}
}

// finish records the end of the running run (or of its execution, when a
// restart timeline follows).
func (a *Agent) finish(ctx context.Context, t *LocalTask, o Outcome) {
	r := t.Running
	now := a.clk.Now()
	r.Executing = false
	if o.RestartRequired && (o.State == transport.StateCompleted || o.State == transport.StateCompletedWithWarnings) {
		p := t.Def.Task.Restart
		if p.IsZero() {
			p = restart.Default()
		}
		if a.cfg.Restarter != nil && p.Action != restart.DoNotRestart {
			tl, err := restart.Plan(p, now, now)
			if err == nil {
				r.RequiredAt, r.RestartAt = now, tl.RestartAt
				if p.Action == restart.Prompt {
					r.NextPrompt = now
				}
				a.save(ctx, t)
				a.followRestart(ctx, t, now)
				return
			}
		}
		o.State = transport.StateRestartRequired
		if o.Message == "" {
			o.Message = "an operating system restart is required to complete the operation"
		}
	}
	a.end(ctx, t, o, now)
}

func (a *Agent) end(ctx context.Context, t *LocalTask, o Outcome, now time.Time) {
	r := t.Running
	r.Seq++
	t.Running = nil
	// The result is queued before the task is stored without its run:
	// an agent killed in between finds the run still executing and
	// reports it failed with the same key (Seq), which the outbox
	// ignores, so the queued end goes out. The other order lost the
	// result: the task said the run was over, the outbox had no end.
	a.report(ctx, t, result{RunID: r.RunID, Seq: r.Seq, State: o.State, DueAt: r.At.UTC(), StartedAt: r.StartedAt.UTC(), FinishedAt: now.UTC(),
		Progress: 100, Message: o.Message, RestartRequired: o.State == transport.StateRestartRequired})
	a.save(ctx, t)
	t.spareRun = r // for the task's next run
	if t.Def.Task.Schedule.ShutdownAfter && a.cfg.Power != nil && o.State != transport.StateStopped {
		if err := a.cfg.Power.Shutdown(ctx); err != nil {
			a.log.Error().Err(err).Msg("agent: shutdown after task")
		}
	}
}

// followRestart advances a run's restart timeline (restart.Plan's
// semantics): prompts every repeat interval, the forced restart at
// RestartAt unless the session is locked and applications may not be
// closed.
func (a *Agent) followRestart(ctx context.Context, t *LocalTask, now time.Time) {
	r := t.Running
	p := t.Def.Task.Restart
	if p.IsZero() {
		p = restart.Default()
	}
	dev := a.cfg.Restarter
	if !r.RestartAt.IsZero() && !now.Before(r.RestartAt) {
		locked, err := dev.SessionLocked(ctx)
		switch {
		case err != nil:
			a.end(ctx, t, Outcome{State: transport.StateRestartRequired, Message: "the session state could not be read"}, now)
		case locked && !p.ForceCloseLocked:
			a.end(ctx, t, Outcome{State: transport.StateRestartRequired, Message: "the session is locked; restart the device to complete the operation"}, now)
		default:
			if locked {
				if err := dev.CloseApplications(ctx); err != nil {
					a.end(ctx, t, Outcome{State: transport.StateRestartRequired, Message: "applications of the locked session could not be closed"}, now)
					return
				}
			}
			if err := dev.Restart(ctx); err != nil {
				a.end(ctx, t, Outcome{State: transport.StateRestartRequired, Message: "the restart failed"}, now)
				return
			}
			a.end(ctx, t, Outcome{State: transport.StateCompleted, Message: "completed after a restart"}, now)
		}
		return
	}
	if p.Action == restart.Prompt && !r.NextPrompt.IsZero() && !now.Before(r.NextPrompt) {
		_ = dev.ShowPrompt(ctx, p.Message)
		r.Prompts++
		r.NextPrompt = time.Time{}
		if p.RepeatPrompt.Enabled {
			r.NextPrompt = now.Add(time.Duration(p.RepeatPrompt.Minutes) * time.Minute)
			if !r.RestartAt.IsZero() && !r.NextPrompt.Before(r.RestartAt) {
				r.NextPrompt = time.Time{}
			}
		}
		a.save(ctx, t)
	}
}

// updatesFallback runs "when new updates are downloaded" tasks every hour
// while no updates arrived for UpdatesOverdue or the distribution point is
// unreachable.
// It reports whether it was due (and may have changed tasks).
func (a *Agent) updatesFallback(ctx context.Context, now time.Time) bool {
	due := a.updAt.Add(UpdatesOverdue)
	if a.dpDown {
		due = now
	}
	if !a.lastFall.IsZero() && a.lastFall.Add(UpdatesFallbackEvery).After(due) {
		due = a.lastFall.Add(UpdatesFallbackEvery)
	}
	if due.After(now) {
		return false
	}
	any := false
	overdue := !now.Before(a.updAt.Add(UpdatesOverdue))
	for _, t := range a.sorted() {
		if t.Def.Task.Schedule.Kind != schedule.OnUpdates || suspended(t) {
			continue
		}
		// A device-selection task (held transient, since the server
		// started it here) runs on the device's own fallback only while
		// its distribution point is unreachable: when updates are
		// overdue the server fires it every hour on the whole selection.
		if t.Transient && (!a.dpDown || overdue) {
			continue
		}
		any = true
		t.Queue = append(t.Queue, transport.Start{TaskID: t.Def.Task.ID, RunID: transport.RunID(due, transport.Scheduled), At: due, Due: due})
		a.save(ctx, t)
	}
	a.lastFall = due
	if !any {
		return true
	}
	_ = a.cfg.Store.SetMeta(ctx, "fallback", due, 0)
	for _, t := range a.sorted() {
		if t.Running == nil {
			a.tickTask(ctx, t, now)
		}
	}
	return true
}

// Handle receives a message from the server.
func (a *Agent) Handle(ctx context.Context, m transport.Message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	now := a.clk.Now()
	switch m.Kind {
	case transport.Ack, transport.Sync, transport.Wake:
		// Change no task (a Sync with news sets dirty below).
	case transport.Deliver, transport.StartRun, transport.StopRun, transport.PauseRun, transport.ResumeRun:
		// About one task: touch marks it below, and the next Tick
		// visits it (not every task).
		a.wake.Store(0)
	default:
		a.dirty = true
		a.wake.Store(0)
	}
	switch m.Kind {
	case transport.Ack:
		// An acknowledgement before the flush (of a key sent before and
		// enqueued again) would leave fresh holding a removed message.
		a.freshOK = false
		if err := a.cfg.Store.Remove(ctx, m.Acks); err != nil {
			a.log.Error().Err(err).Msg("agent: outbox ack")
		} else {
			a.acked(now)
		}
	case transport.Deliver:
		if m.Definition != nil {
			t := a.deliver(ctx, *m.Definition, false, m.SentAt, now)
			a.log.Debug().Str("task", m.Definition.Task.ID).Int64("revision", m.Definition.Task.Revision).Msg("agent: task delivered")
			if t.Slot == nil || m.Slot == nil || *t.Slot != *m.Slot {
				t.Slot, t.nextOK = m.Slot, false
				a.save(ctx, t)
			}
			a.heldOK = false // a new revision or slot
			a.touch(t)
		}
	case transport.Withdraw:
		if t := a.tasks[m.TaskID]; t != nil {
			if t.Running != nil && t.Running.Executing {
				_ = a.cfg.Executor.Stop(ctx, t.Def.Task.ID, t.Running.RunID)
				a.end(ctx, t, Outcome{State: transport.StateStopped, Message: "the task was withdrawn from the device"}, now)
			}
			a.log.Debug().Str("task", m.TaskID).Msg("agent: task withdrawn")
			a.withdrawn[m.TaskID] = t.Done // a late StartRun must not rerun them
			delete(a.tasks, m.TaskID)
			a.order = nil
			_ = a.cfg.Store.DeleteTask(ctx, m.TaskID)
		}
	case transport.StartRun:
		if m.Start == nil {
			return
		}
		t := a.tasks[m.Start.TaskID]
		if m.Definition != nil && (t == nil || t.Transient) {
			t = a.deliver(ctx, *m.Definition, true, m.SentAt, now)
			a.touch(t) // transient: not in the heartbeat's held list
		}
		if t == nil {
			return // the definition arrives with the next heartbeat; the server resends
		}
		s := *m.Start
		if slices.Contains(t.Done, s.RunID) || (t.Running != nil && t.Running.RunID == s.RunID) || (t.Waiting != nil && t.Waiting.RunID == s.RunID) || slices.ContainsFunc(t.Queue, func(q transport.Start) bool { return q.RunID == s.RunID }) {
			return
		}
		a.touch(t)
		if a.stoppedBefore(ctx, s.TaskID, s.RunID) {
			t.Done = appendDone(t.Done, s.RunID) // stopped before it arrived
			a.save(ctx, t)
			return
		}
		t.Queue = append(t.Queue, s)
		a.save(ctx, t)
	case transport.StopRun:
		a.stopRun(ctx, m, now)
		a.touch(a.tasks[m.TaskID])
	case transport.PauseRun, transport.ResumeRun:
		a.control(ctx, m, now)
		a.touch(a.tasks[m.TaskID])
		if m.Key != "" && a.ep != nil {
			// The order is applied and the run's new state queued in
			// the outbox: the server may stop resending it.
			_ = a.ep.Send(ctx, transport.Message{Version: transport.ProtocolVersion, Kind: transport.Ack, Device: a.cfg.Device, SentAt: now.UTC(), Acks: []string{m.Key}})
		}
	case transport.Sync:
		if m.SyncInfo != nil && m.SyncInfo.UpdatesGeneration > a.updGen {
			a.dirty = true
			a.wake.Store(0)
			a.updGen = m.SyncInfo.UpdatesGeneration
			a.updAt = now
			a.lastFall = time.Time{}
			_ = a.cfg.Store.SetMeta(ctx, "updates", a.updAt, a.updGen)
			for _, t := range a.sorted() {
				if t.Transient || t.Def.Task.Schedule.Kind != schedule.OnUpdates || suspended(t) {
					continue
				}
				at := m.SyncInfo.UpdatesAt
				t.Queue = append(t.Queue, transport.Start{TaskID: t.Def.Task.ID, RunID: transport.RunID(at, transport.Triggered), At: at})
				a.save(ctx, t)
			}
		}
		if a.outboxBusy {
			a.flushNow = true
			a.wake.Store(0) // the server is reachable: send what waits
		}
	case transport.Error:
		// The server could not process a message at all (a kind or
		// version it does not know): say so; the outbox keeps it.
		if e := m.Error; e != nil {
			a.log.Error().Str("code", e.Code).Str("kind", string(e.Kind)).Str("key", e.Key).Str("reason", e.Message).Msg("agent: the server refused a message")
		}
	case transport.Shutdown:
		if a.cfg.Power != nil {
			_ = a.cfg.Power.Shutdown(ctx)
		}
	}
}

// acked follows an acknowledgement: when the store tells cheaply that
// the outbox is now empty (a MemStore: Agent.mem), it is no longer busy, nothing
// is left to send at once (a Sync may have asked for it while the
// messages waited), and the wake the retry or the send set is dropped.
// (Otherwise a Tick finds the outbox empty: a wake and an outbox read for
// nothing, after most runs.)
func (a *Agent) acked(now time.Time) {
	if !a.outboxBusy || a.mem == nil || !a.mem.outboxEmpty() {
		return
	}
	a.outboxBusy, a.flushNow = false, false
	if a.dirty || a.touched || !a.taskWake.IsZero() && !a.taskWake.After(now) {
		return // due anyway
	}
	a.wakeAt = a.combineWake(now)
	a.cmu.Lock()
	if len(a.compl) == 0 { // else due at once
		a.wake.Store(a.wakeAt.UnixNano())
	}
	a.cmu.Unlock()
}

// deliver stores a definition sent at sent (the server's clock), keeping
// the local schedule state of a task already held.
func (a *Agent) deliver(ctx context.Context, d transport.Definition, transient bool, sent, now time.Time) *LocalTask {
	t := a.tasks[d.Task.ID]
	if t != nil {
		if !transient && t.Def.Task.Revision > d.Task.Revision && !t.Transient {
			return t // a reordered older revision
		}
		t.Def = d
		t.nextOK = false
		t.Transient = transient && t.Transient
	} else {
		t = &LocalTask{Def: d, Transient: transient, ReceivedAt: now, SentAt: sent, Done: a.withdrawn[d.Task.ID]}
		delete(a.withdrawn, d.Task.ID)
		// Activations from when the device became visible for the task
		// (less the tolerance) count; earlier ones are not this device's.
		t.Cursor = t.visibleFrom().Add(-a.cfg.MissedTolerance)
		if t.Cursor.After(now) {
			t.Cursor = now // the server's clock is ahead
		}
		if d.Since.After(t.Cursor) && !d.Since.After(now) {
			t.Cursor = d.Since // activations strictly after the save
		}
		s := d.Task.Schedule
		// A Once or Immediately activation from before the device had the
		// task (it was offline, or joined the scope later) is a missed
		// activation: "run missed tasks" decides. A Once start at the
		// instant of saving is the save's own activation.
		switch {
		case s.Kind == schedule.Once && (!s.At.After(now) || s.At.Equal(d.Since)):
			t.Cursor = s.At.Add(-time.Nanosecond)
		case s.Kind == schedule.Immediately && !d.Since.IsZero() && !d.Since.After(now):
			t.Cursor = d.Since.Add(-time.Nanosecond)
		}
		if lm := d.LastManual; lm != nil && !s.RunMissed {
			t.LastManualDone = lm.RunID
		}
		a.tasks[d.Task.ID] = t
		a.order = nil
	}
	if lm := d.LastManual; lm != nil && !transient && d.Task.Schedule.RunMissed && lm.RunID > t.LastManualDone && !slices.Contains(t.Done, lm.RunID) &&
		!slices.ContainsFunc(t.Queue, func(q transport.Start) bool { return q.RunID == lm.RunID }) {
		st := *lm
		st.Due = now
		t.Queue = append(t.Queue, st)
		t.LastManualDone = lm.RunID
	}
	a.save(ctx, t)
	return t
}
