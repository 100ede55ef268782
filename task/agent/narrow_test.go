package agent_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

// The tests of this file guard the agent's narrow visits: a message about
// one task (a start, a stop order, a pause or resume, a new revision) and
// the end of one task's run make the next Tick visit that task only, and
// leave the other tasks' wakes as they were. Each drives an agent of
// several tasks both by NextWake (as a simulation or a host that sleeps
// until then) and by a Tick every minute, and checks that every run of
// every task still starts, and ends, at its exact instant.

// taskExec finishes the runs of the tasks not in hold at once; the runs
// of the tasks in hold execute until the test finishes them (finish) or
// the agent stops them. Its runs can be paused.
type taskExec struct {
	mu     sync.Mutex
	hold   map[string]bool
	starts []started
	done   map[string]func(agent.Outcome) // by task: the run executing
}

// started is one start the executor saw.
type started struct {
	Task string
	Run  int64
	At   time.Time
}

func (x *taskExec) AppRunning(context.Context, string) bool { return true }

func (x *taskExec) Start(_ context.Context, r agent.Run, done func(agent.Outcome)) error {
	x.mu.Lock()
	x.starts = append(x.starts, started{r.TaskID, r.RunID, r.StartedAt})
	held := x.hold[r.TaskID]
	if held {
		if x.done == nil {
			x.done = map[string]func(agent.Outcome){}
		}
		x.done[r.TaskID] = done
	}
	x.mu.Unlock()
	if !held {
		done(agent.Outcome{State: transport.StateCompleted})
	}
	return nil
}

func (x *taskExec) Stop(_ context.Context, taskID string, _ int64) error {
	x.mu.Lock()
	delete(x.done, taskID)
	x.mu.Unlock()
	return nil
}

func (x *taskExec) Pause(context.Context, string, int64) error  { return nil }
func (x *taskExec) Resume(context.Context, string, int64) error { return nil }

// finish ends the executing run of task id (from the test, as an
// application's goroutine would).
func (x *taskExec) finish(t *testing.T, id string) {
	t.Helper()
	x.mu.Lock()
	done := x.done[id]
	delete(x.done, id)
	x.mu.Unlock()
	if done == nil {
		t.Fatalf("no run of %s executing", id)
	}
	done(agent.Outcome{State: transport.StateCompleted})
}

func (x *taskExec) startList() []started {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.starts)
}

// narrowAgent returns an agent on a mock clock at t0 with a heartbeat of
// an hour (heartbeats do not wake it in between).
func narrowAgent(t *testing.T, x agent.Executor) (*agent.Agent, *clock.Mock, *endpoint) {
	t.Helper()
	clk := clock.NewMock()
	clk.Set(t0)
	a, err := agent.New(context.Background(), agent.Config{Device: "d1", Store: agent.NewMemStore(), Executor: x, Clock: clk, Heartbeat: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ep := &endpoint{}
	a.Attach(ep)
	return a, clk, ep
}

// every10 is a task scheduled every 10 minutes from t0+10m, without a
// randomized delay.
func every10(id string) transport.Definition {
	d := def(id)
	d.Task.Schedule = schedule.Default(schedule.EveryMinutes, t0.Add(10*time.Minute), time.UTC)
	d.Task.Schedule.Every = 10
	d.LastManual = nil
	return d
}

// heldManual is a delivered (held, not transient) task with a manual
// schedule: the server starts it with StartRun messages that carry no
// definition.
func heldManual(id string) transport.Definition {
	d := def(id)
	d.Task.Schedule = schedule.Default(schedule.Manual, t0, time.UTC)
	d.LastManual = nil
	return d
}

// driveModes are the two ways the tests tick the agent.
var driveModes = []struct {
	name   string
	byWake bool
}{{"by NextWake", true}, {"every minute", false}}

// drive steps the clock a minute at a time up to end; at each instant it
// first calls at (messages, finished runs), then ticks the agent: always,
// or, byWake, only when NextWake says it is due.
func drive(t *testing.T, a *agent.Agent, clk *clock.Mock, end time.Time, byWake bool, at func(now time.Time)) {
	t.Helper()
	ctx := context.Background()
	for now := clk.Now(); !now.After(end); now = now.Add(time.Minute) {
		clk.Set(now)
		at(now)
		if w := a.NextWake(); !byWake || w.IsZero() || !w.After(now) {
			if err := a.Tick(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func deliverDef(a *agent.Agent, d transport.Definition) {
	a.Handle(context.Background(), transport.Message{Kind: transport.Deliver, Definition: &d})
}

// startRun sends a StartRun of run of task id without a definition (the
// device holds the task).
func startRun(a *agent.Agent, id string, run int64, at time.Time) {
	a.Handle(context.Background(), transport.Message{Kind: transport.StartRun, Start: &transport.Start{TaskID: id, RunID: run, At: at}})
}

// A StartRun that arrives at the instant another task's activation is due
// starts both then; StartRuns between activations start their runs at
// once and leave the scheduled task on time.
func TestStartRunAtAnotherTasksActivationStartsBoth(t *testing.T) {
	t.Parallel()
	for _, mode := range driveModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			x := &taskExec{}
			a, clk, _ := narrowAgent(t, x)
			deliverDef(a, every10("p"))
			deliverDef(a, heldManual("q"))
			m := manualDef(restart.Policy{})
			at := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
			drive(t, a, clk, at(60), mode.byWake, func(now time.Time) {
				switch now {
				case at(20): // p's activation
					start(a, m, 1) // transient: the StartRun carries the definition
					startRun(a, "q", 1, now)
				case at(25):
					start(a, m, 2)
				case at(30): // p's activation
					startRun(a, "q", 2, now)
				case at(47):
					startRun(a, "q", 3, now)
				}
			})
			want := []started{
				{"p", transport.RunID(at(10), transport.Scheduled), at(10)},
				{"m", 1, at(20)}, {"p", transport.RunID(at(20), transport.Scheduled), at(20)}, {"q", 1, at(20)},
				{"m", 2, at(25)},
				{"p", transport.RunID(at(30), transport.Scheduled), at(30)}, {"q", 2, at(30)},
				{"p", transport.RunID(at(40), transport.Scheduled), at(40)},
				{"q", 3, at(47)},
				{"p", transport.RunID(at(50), transport.Scheduled), at(50)},
				{"p", transport.RunID(at(60), transport.Scheduled), at(60)},
			}
			if d := cmp.Diff(want, x.startList()); d != "" {
				t.Errorf("starts (-want +got):\n%s", d)
			}
		})
	}
}

// The end of one task's run lets that task's queued start begin at once,
// also at the instant another task's activation is due (both start then),
// and a run's end between activations leaves the scheduled task on time.
func TestRunEndAtAnotherTasksActivationStartsBoth(t *testing.T) {
	t.Parallel()
	for _, mode := range driveModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			x := &taskExec{hold: map[string]bool{"h": true}}
			a, clk, ep := narrowAgent(t, x)
			deliverDef(a, every10("p"))
			deliverDef(a, heldManual("h"))
			at := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
			drive(t, a, clk, at(50), mode.byWake, func(now time.Time) {
				switch now {
				case at(1):
					startRun(a, "h", 1, now)
				case at(2):
					startRun(a, "h", 2, now) // waits for run 1
				case at(20): // p's activation
					x.finish(t, "h")
				case at(33):
					x.finish(t, "h")
				case at(34):
					startRun(a, "h", 3, now)
				case at(40): // p's activation
					x.finish(t, "h")
				}
			})
			want := []started{
				{"h", 1, at(1)},
				{"p", transport.RunID(at(10), transport.Scheduled), at(10)},
				{"h", 2, at(20)}, {"p", transport.RunID(at(20), transport.Scheduled), at(20)},
				{"p", transport.RunID(at(30), transport.Scheduled), at(30)},
				{"h", 3, at(34)},
				{"p", transport.RunID(at(40), transport.Scheduled), at(40)},
				{"p", transport.RunID(at(50), transport.Scheduled), at(50)},
			}
			if d := cmp.Diff(want, x.startList()); d != "" {
				t.Errorf("starts (-want +got):\n%s", d)
			}
			var ends []time.Time
			for _, r := range ep.results() {
				if r.TaskID == "h" {
					ends = append(ends, r.FinishedAt)
				}
			}
			if d := cmp.Diff([]time.Time{at(20), at(33), at(40)}, ends); d != "" {
				t.Errorf("h's runs ended at (-want +got):\n%s", d)
			}
		})
	}
}

// A run's maximum time holds while messages about other tasks and other
// tasks' runs come and go; pausing and resuming the run (orders about its
// own task) moves its end by the time it spent paused.
func TestMaximumRunTimeHoldsWhileOtherTasksChange(t *testing.T) {
	t.Parallel()
	for _, mode := range driveModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			x := &taskExec{hold: map[string]bool{"l": true, "k": true}}
			a, clk, ep := narrowAgent(t, x)
			deliverDef(a, every10("p"))
			deliverDef(a, heldManual("q"))
			for _, id := range []string{"l", "k"} {
				d := heldManual(id)
				d.Task.Schedule.StopAfter = schedule.Limit{Enabled: true, Minutes: 30}
				deliverDef(a, d)
			}
			at := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
			drive(t, a, clk, at(60), mode.byWake, func(now time.Time) {
				switch now {
				case at(1):
					startRun(a, "l", 1, now) // ends failed_timeout at 31
					startRun(a, "k", 1, now) // paused 12-35: ends at 54
				case at(5), at(25), at(31), at(36):
					startRun(a, "q", now.Sub(t0).Milliseconds(), now)
				case at(12):
					order(a, transport.PauseRun, "k", 1, 4)
				case at(35): // after the paused run's unpaused end (31)
					order(a, transport.ResumeRun, "k", 1, 5)
				}
			})
			ends := map[string][]time.Time{}
			for _, r := range ep.results() {
				if r.State == transport.StateFailedTimeout {
					ends[r.TaskID] = append(ends[r.TaskID], r.FinishedAt)
				}
			}
			want := map[string][]time.Time{"l": {at(31)}, "k": {at(54)}}
			if d := cmp.Diff(want, ends); d != "" {
				t.Errorf("runs stopped at their maximum time (-want +got):\n%s", d)
			}
			qs := 0
			for _, s := range x.startList() {
				if s.Task == "q" {
					qs++
				}
			}
			if qs != 4 {
				t.Errorf("%d starts of q, want 4", qs)
			}
		})
	}
}

// A new revision of a held task with an earlier schedule starts at the new
// schedule's first activation, not at the old revision's next one, while
// the other tasks keep theirs.
func TestNewRevisionStartsAtItsSchedule(t *testing.T) {
	t.Parallel()
	for _, mode := range driveModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			x := &taskExec{}
			a, clk, _ := narrowAgent(t, x)
			at := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
			r := every10("r")
			r.Task.Schedule = schedule.Default(schedule.EveryMinutes, at(30), time.UTC)
			r.Task.Schedule.Every = 30
			deliverDef(a, r)
			deliverDef(a, every10("p"))
			drive(t, a, clk, at(50), mode.byWake, func(now time.Time) {
				if now == at(5) {
					r2 := r
					r2.Task.Revision++
					r2.Task.Schedule = schedule.Default(schedule.EveryMinutes, at(12), time.UTC)
					r2.Task.Schedule.Every = 30
					deliverDef(a, r2)
				}
			})
			want := []started{
				{"p", transport.RunID(at(10), transport.Scheduled), at(10)},
				{"r", transport.RunID(at(12), transport.Scheduled), at(12)},
				{"p", transport.RunID(at(20), transport.Scheduled), at(20)},
				{"p", transport.RunID(at(30), transport.Scheduled), at(30)},
				{"p", transport.RunID(at(40), transport.Scheduled), at(40)},
				{"r", transport.RunID(at(42), transport.Scheduled), at(42)},
				{"p", transport.RunID(at(50), transport.Scheduled), at(50)},
			}
			if d := cmp.Diff(want, x.startList()); d != "" {
				t.Errorf("starts (-want +got):\n%s", d)
			}
		})
	}
}

// sentKeys returns the outbox keys of the messages sent so far (each key
// a merged message carries).
func (e *endpoint) sentKeys() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, m := range e.sent {
		switch {
		case len(m.Merged) > 0:
			out = append(out, m.Merged...)
		case m.Key != "" && m.Kind != transport.Heartbeat && m.Kind != transport.Ack:
			out = append(out, m.Key)
		}
	}
	return out
}

// Once the server has acknowledged every message of the outbox, the
// agent's next wake is its next heartbeat or activation, not an outbox
// retry that would find nothing to send (nor a send at once that a Sync
// asked for while the messages waited); while a message is still
// unacknowledged, the retry comes after RetryInterval and resends it.
func TestAcknowledgedOutboxNeedsNoRetryWake(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		ackAll   bool
		sync     bool          // a Sync comes before the acknowledgement
		wantWake time.Duration // after the run's tick
	}{{"all acknowledged", true, false, time.Hour}, {"all acknowledged after a Sync", true, true, time.Hour},
		{"one left", false, false, time.Minute}, {"one left after a Sync", false, true, 0}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			x := &taskExec{}
			a, clk, ep := narrowAgent(t, x)
			deliverDef(a, heldManual("q"))
			if err := a.Tick(ctx); err != nil { // the first heartbeat
				t.Fatal(err)
			}
			startRun(a, "q", 1, t0)
			if err := a.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			keys := ep.sentKeys()
			if len(keys) != 2 {
				t.Fatalf("sent %v, want the running and the completed result", keys)
			}
			if !c.ackAll {
				keys = keys[:1]
			}
			if c.sync {
				a.Handle(ctx, transport.Message{Kind: transport.Sync, Device: "d1", SyncInfo: &transport.SyncInfo{}})
			}
			a.Handle(ctx, transport.Message{Kind: transport.Ack, Device: "d1", Acks: keys})
			want := t0.Add(c.wantWake)
			if c.wantWake == 0 {
				want = time.Time{} // at once
			}
			if got := a.NextWake(); !got.Equal(want) {
				t.Fatalf("NextWake %v, want %v", got, want)
			}
			if c.ackAll {
				return
			}
			sent := len(ep.sentKeys())
			clk.Add(time.Minute)
			if err := a.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			if got := ep.sentKeys()[sent:]; len(got) != 1 || got[0] != ep.sentKeys()[1] {
				t.Fatalf("the retry sent %v, want the unacknowledged %s", got, ep.sentKeys()[1])
			}
		})
	}
}

// plainStore hides MemStore's shortcuts: the agent sees only the Store
// interface (as with agentsqlite or a host's store).
type plainStore struct{ agent.Store }

// Every flush sends exactly the messages of the outbox, each once, in
// their order: after duplicates of a key, a flush that failed, a key
// enqueued again after its acknowledgement, and an agent restarted on an
// outbox it did not fill.
func TestFlushSendsExactlyTheOutbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, plain := range []bool{false, true} {
		name := "MemStore"
		if plain {
			name = "Store interface only"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mem := agent.NewMemStore()
			var st agent.Store = mem
			if plain {
				st = plainStore{mem}
			}
			clk := clock.NewMock()
			clk.Set(t0)
			x := &taskExec{}
			ep := &endpoint{}
			newAgent := func() *agent.Agent {
				a, err := agent.New(ctx, agent.Config{Device: "d1", Store: st, Executor: x, Clock: clk, Heartbeat: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				a.Attach(ep)
				return a
			}
			a := newAgent()
			deliverDef(a, heldManual("q"))
			outboxKeys := func() []string {
				ms, err := mem.Outbox(ctx)
				if err != nil {
					t.Fatal(err)
				}
				var ks []string
				for _, m := range ms {
					ks = append(ks, m.Key)
				}
				return ks
			}
			event := func(key string) {
				if err := a.ReportEvent(ctx, key, agent.Event{TaskID: "q", Level: transport.EventInfo, Severity: transport.SeverityInfo, Message: key}); err != nil {
					t.Fatal(err)
				}
			}
			// tickSends ticks a minute later and checks that the agent
			// sent exactly the outbox (nothing acknowledges meanwhile).
			tickSends := func(step string, wantN int) {
				t.Helper()
				clk.Add(time.Minute)
				before := len(ep.sentKeys())
				if err := a.Tick(ctx); err != nil {
					t.Fatal(err)
				}
				want := outboxKeys()
				got := slices.Clip(ep.sentKeys()[before:])
				if len(got) == 0 {
					got = nil
				}
				if ep.down {
					got = nil
				}
				if len(want) != wantN {
					t.Fatalf("%s: outbox %v, want %d messages", step, want, wantN)
				}
				if d := cmp.Diff(want, got); d != "" {
					t.Fatalf("%s: sent (-outbox +sent):\n%s", step, d)
				}
			}
			ack := func() { a.Handle(ctx, transport.Message{Kind: transport.Ack, Device: "d1", Acks: outboxKeys()}) }

			tickSends("the first tick", 0)
			event("k1")
			event("k1") // a duplicate: ignored
			tickSends("an event and its duplicate", 1)
			ack()
			event("k1") // the same key again, after its acknowledgement
			startRun(a, "q", 1, clk.Now())
			tickSends("the key again and a run", 3)
			ep.mu.Lock()
			ep.down = true
			ep.mu.Unlock()
			event("k2")
			clk.Add(time.Minute)
			if err := a.Tick(ctx); err != nil { // the send fails
				t.Fatal(err)
			}
			ep.mu.Lock()
			ep.down = false
			ep.mu.Unlock()
			event("k3")
			tickSends("after a failed flush", 5)
			ack()
			event("k4")
			tickSends("after the acknowledgement", 1)
			// A new agent on the outbox the old one left.
			_ = a.Close()
			a = newAgent()
			event("k5")
			tickSends("after a restart", 2)
			ack()
			tickSends("all acknowledged", 0)
		})
	}
}
