package agent_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

// slowExec runs until told otherwise and records what the agent asked.
type slowExec struct {
	mu                           sync.Mutex
	starts, pauses, resumes      []int64
	stops                        []int64
	done                         map[int64]func(agent.Outcome)
	pauseErr, resumeErr, stopErr error
}

func (x *slowExec) AppRunning(context.Context, string) bool { return true }

func (x *slowExec) Start(_ context.Context, r agent.Run, done func(agent.Outcome)) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.starts = append(x.starts, r.RunID)
	if x.done == nil {
		x.done = map[int64]func(agent.Outcome){}
	}
	x.done[r.RunID] = done
	return nil
}

func (x *slowExec) Stop(_ context.Context, _ string, run int64) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.stops = append(x.stops, run)
	return x.stopErr
}

// pausingExec is a slowExec whose runs can be paused.
type pausingExec struct{ slowExec }

func (x *pausingExec) Pause(_ context.Context, _ string, run int64) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.pauses = append(x.pauses, run)
	return x.pauseErr
}

func (x *pausingExec) Resume(_ context.Context, _ string, run int64) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.resumes = append(x.resumes, run)
	return x.resumeErr
}

var _ agent.Pauser = (*pausingExec)(nil)

func controlAgent(t *testing.T, x agent.Executor) (*agent.Agent, *clock.Mock, *endpoint) {
	t.Helper()
	clk := clock.NewMock()
	clk.Set(t0)
	a, err := agent.New(context.Background(), agent.Config{Device: "d1", Store: agent.NewMemStore(), Executor: x, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ep := &endpoint{}
	a.Attach(ep)
	return a, clk, ep
}

func order(a *agent.Agent, kind transport.Kind, taskID string, run, ord int64) {
	a.Handle(context.Background(), transport.Message{Key: string(kind) + "/" + taskID, Kind: kind, Device: "d1", TaskID: taskID,
		Control: &transport.Control{RunID: run, Order: ord}})
}

func stopRun(a *agent.Agent, taskID string, run int64) {
	a.Handle(context.Background(), transport.Message{Key: "x", Kind: transport.StopRun, Device: "d1", TaskID: taskID, Control: &transport.Control{RunID: run}})
}

// states returns every result state reported for a run, in order and
// de-duplicated by key, with its message.
func (e *endpoint) states(run int64) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, m := range e.sent {
		if m.Kind != transport.Results {
			continue
		}
		for i, r := range m.Results {
			k := m.Key
			if len(m.Merged) == len(m.Results) {
				k = m.Merged[i]
			}
			if seen[k] || r.RunID != run {
				continue
			}
			seen[k] = true
			out = append(out, string(r.State))
		}
	}
	return out
}

func (e *endpoint) acks() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, m := range e.sent {
		if m.Kind == transport.Ack {
			out = append(out, m.Acks...)
		}
	}
	return out
}

func tick(t *testing.T, a *agent.Agent, clk *clock.Mock, d time.Duration) {
	t.Helper()
	for end := clk.Now().Add(d); ; {
		if err := a.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !clk.Now().Before(end) {
			return
		}
		clk.Add(time.Minute)
	}
}

// A pause order pauses the run once and a resume order continues it; a
// repeated or late (reordered) order changes nothing, and every order is
// acknowledged.
func TestPauseAndResumeOrdersApplyOnceAndInOrder(t *testing.T) {
	t.Parallel()
	x := &pausingExec{}
	a, clk, ep := controlAgent(t, x)
	d := manualDef(restart.Default())
	start(a, d, 7)
	tick(t, a, clk, time.Minute)
	order(a, transport.PauseRun, "m", 7, 4)
	order(a, transport.PauseRun, "m", 7, 4) // a duplicate
	tick(t, a, clk, time.Minute)
	order(a, transport.ResumeRun, "m", 7, 5)
	order(a, transport.PauseRun, "m", 7, 4) // the old pause, reordered
	tick(t, a, clk, time.Minute)
	if len(x.pauses) != 1 || len(x.resumes) != 1 {
		t.Fatalf("pauses %v resumes %v, want one each", x.pauses, x.resumes)
	}
	want := []string{"running", "paused", "running"}
	if got := ep.states(7); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("states %v, want %v", got, want)
	}
	if n := len(ep.acks()); n != 4 {
		t.Errorf("%d acknowledgements, want 4 (every order, applied or not)", n)
	}
}

// "Stop the task if it runs longer than" counts the time the run executes:
// time spent paused is not counted.
func TestPausedTimeDoesNotCountAgainstTheMaximumRunTime(t *testing.T) {
	t.Parallel()
	x := &pausingExec{}
	a, clk, ep := controlAgent(t, x)
	d := manualDef(restart.Default())
	d.Task.Schedule.StopAfter = schedule.Limit{Enabled: true, Minutes: 60}
	start(a, d, 7)
	tick(t, a, clk, 30*time.Minute)
	order(a, transport.PauseRun, "m", 7, 4)
	tick(t, a, clk, 3*time.Hour)
	order(a, transport.ResumeRun, "m", 7, 5)
	tick(t, a, clk, 25*time.Minute)
	if st := ep.states(7); st[len(st)-1] != string(transport.StateRunning) {
		t.Fatalf("after 55 minutes of execution: %v, want running", st)
	}
	tick(t, a, clk, 10*time.Minute)
	if st := ep.states(7); st[len(st)-1] != string(transport.StateFailedTimeout) {
		t.Fatalf("after 65 minutes of execution: %v, want failed_timeout", st)
	}
}

// An executor without Pauser: the run continues and the device says it
// cannot be paused, in the running result and in a warning event.
func TestRunOfAnExecutorWithoutPauserReportsItCannotBePaused(t *testing.T) {
	t.Parallel()
	x := &slowExec{}
	a, clk, ep := controlAgent(t, x)
	start(a, manualDef(restart.Default()), 7)
	tick(t, a, clk, time.Minute)
	order(a, transport.PauseRun, "m", 7, 4)
	tick(t, a, clk, time.Minute)
	if got := ep.states(7); strings.Join(got, ",") != "running,running" {
		t.Fatalf("states %v, want running twice (the second says why it was not paused)", got)
	}
	var msg string
	var ev []transport.Event
	ep.mu.Lock()
	for _, m := range ep.sent {
		if m.Kind == transport.Results && m.Results[len(m.Results)-1].State == string(transport.StateRunning) {
			msg = m.Results[len(m.Results)-1].Message
		}
		if m.Kind == transport.Events {
			ev = append(ev, m.Events...)
		}
	}
	ep.mu.Unlock()
	if !strings.Contains(msg, "cannot be paused") {
		t.Errorf("running result message %q does not say the run cannot be paused", msg)
	}
	if len(ev) == 0 || ev[0].Severity != string(transport.SeverityWarning) || !strings.Contains(ev[0].Message, "cannot be paused") {
		t.Errorf("events %+v, want a warning that the run cannot be paused", ev)
	}
	if len(ep.acks()) != 1 {
		t.Errorf("acks %v, want the order acknowledged", ep.acks())
	}
	x.mu.Lock()
	done := x.done[7]
	x.mu.Unlock()
	done(agent.Outcome{State: transport.StateCompleted})
	tick(t, a, clk, time.Minute)
	if st := ep.states(7); st[len(st)-1] != string(transport.StateCompleted) {
		t.Errorf("states %v, want the run to complete", st)
	}
}

// A pause order newer than the task's definition holds its queued starts
// until a resume order.
func TestPauseOrderHoldsStartsUntilResumed(t *testing.T) {
	t.Parallel()
	x := &pausingExec{}
	a, clk, _ := controlAgent(t, x)
	d := manualDef(restart.Default()) // revision 3
	start(a, d, 7)
	tick(t, a, clk, time.Minute)
	x.mu.Lock()
	done := x.done[7]
	x.mu.Unlock()
	order(a, transport.PauseRun, "m", 7, 4)
	done(agent.Outcome{State: transport.StateCompleted})
	start(a, d, 8) // started before the suspend, arrives after it
	tick(t, a, clk, 10*time.Minute)
	if len(x.starts) != 1 {
		t.Fatalf("starts %v while suspended, want only the first", x.starts)
	}
	order(a, transport.ResumeRun, "m", 7, 5)
	tick(t, a, clk, time.Minute)
	if len(x.starts) != 2 || x.starts[1] != 8 {
		t.Fatalf("starts %v after resume, want run 8 started", x.starts)
	}
}

// A run that cannot be resumed is stopped and fails, never left paused.
func TestRunThatCannotBeResumedFails(t *testing.T) {
	t.Parallel()
	x := &pausingExec{}
	x.resumeErr = errors.New("scan engine gone")
	a, clk, ep := controlAgent(t, x)
	start(a, manualDef(restart.Default()), 7)
	tick(t, a, clk, time.Minute)
	order(a, transport.PauseRun, "m", 7, 4)
	order(a, transport.ResumeRun, "m", 7, 5)
	tick(t, a, clk, time.Minute)
	res := ep.results()
	if len(res) != 1 || res[0].State != transport.StateFailed || !strings.Contains(res[0].Message, "could not be resumed") {
		t.Fatalf("results %+v, want one failed: could not be resumed", res)
	}
	if len(x.stops) != 1 {
		t.Errorf("stops %v, want the run stopped", x.stops)
	}
}

// StopRun is resent by the server until it learns the run's final state;
// the device applies it once per run: a repeated StopRun does not stop
// the next run, and a run never started is reported stopped and never
// starts.
func TestStopRunIsAppliedOncePerRun(t *testing.T) {
	t.Parallel()
	x := &pausingExec{}
	a, clk, ep := controlAgent(t, x)
	d := manualDef(restart.Default())
	start(a, d, 7)
	tick(t, a, clk, time.Minute)
	order(a, transport.PauseRun, "m", 7, 4)
	stopRun(a, "m", 7) // stop while paused
	order(a, transport.ResumeRun, "m", 7, 5)
	start(a, d, 8)
	tick(t, a, clk, time.Minute)
	stopRun(a, "m", 7) // resent: run 7 ended already
	tick(t, a, clk, time.Minute)
	if len(x.stops) != 1 || x.stops[0] != 7 {
		t.Fatalf("executor stops %v, want run 7 once", x.stops)
	}
	if got := ep.states(7); strings.Join(got, ",") != "running,paused,stopped" {
		t.Errorf("run 7 states %v", got)
	}
	if got := ep.states(8); strings.Join(got, ",") != "running" {
		t.Errorf("run 8 states %v, want it running", got)
	}
	stopRun(a, "m", 9) // a run this device never received
	stopRun(a, "m", 9)
	start(a, d, 9) // its StartRun arrives late
	tick(t, a, clk, time.Minute)
	if got := ep.states(9); strings.Join(got, ",") != "stopped" {
		t.Errorf("run 9 states %v, want stopped once", got)
	}
	if len(x.starts) != 2 {
		t.Errorf("starts %v, want runs 7 and 8 only", x.starts)
	}
	stopRun(a, "other", 3) // a task this device does not hold
	tick(t, a, clk, time.Minute)
	found := 0
	for _, r := range ep.results() {
		if r.TaskID == "other" && r.RunID == 3 && r.State == transport.StateStopped {
			found++
		}
	}
	if found != 1 {
		t.Errorf("run 3 of an unknown task reported stopped %d times, want 1", found)
	}
}

// The heartbeat reports the delay slot each task holds, so the server
// can redeliver a stale one.
func TestHeartbeatReportsHeldSlots(t *testing.T) {
	t.Parallel()
	a, clk, ep := controlAgent(t, &slowExec{})
	d := def("w")
	d.Task.Schedule.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayAutomatic}
	a.Handle(context.Background(), transport.Message{Kind: transport.Deliver, Device: "d1", Definition: &d, Slot: &transport.Slot{Index: 3, Of: 10}})
	tick(t, a, clk, time.Minute)
	ep.mu.Lock()
	defer ep.mu.Unlock()
	var held []transport.HeldTask
	for _, m := range ep.sent {
		if m.Kind == transport.Heartbeat {
			held = m.Heartbeat.Held
		}
	}
	if len(held) != 1 || held[0].Slot == nil || *held[0].Slot != (transport.Slot{Index: 3, Of: 10}) {
		t.Errorf("held %+v, want task w with slot 3 of 10", held)
	}
}

// A run stopped before its StartRun reached the device stays stopped
// across an agent restart: the late StartRun does not start it, and the
// device reports it stopped once.
func TestStoppedBeforeItArrivedSurvivesAnAgentRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(t0)
	store := agent.NewMemStore()
	x := &slowExec{}
	a, err := agent.New(ctx, agent.Config{Device: "d1", Store: store, Executor: x, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ep := &endpoint{}
	a.Attach(ep)
	stopRun(a, "m", 9) // the device does not hold task m
	tick(t, a, clk, time.Minute)
	a2, err := agent.New(ctx, agent.Config{Device: "d1", Store: store, Executor: x, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ep2 := &endpoint{}
	a2.Attach(ep2)
	start(a2, manualDef(restart.Default()), 9) // its StartRun arrives late
	start(a2, manualDef(restart.Default()), 10)
	tick(t, a2, clk, time.Minute)
	if len(x.starts) != 1 || x.starts[0] != 10 {
		t.Fatalf("executor starts %v, want run 10 only", x.starts)
	}
	// The outbox may resend the one "stopped" report after the restart
	// (same key); no other report of run 9 is made.
	keys := map[string]string{}
	for _, e := range []*endpoint{ep, ep2} {
		e.mu.Lock()
		for _, m := range e.sent {
			for _, r := range m.Results {
				if r.TaskID == "m" && r.RunID == 9 {
					keys[m.Key] = string(r.State)
				}
			}
		}
		e.mu.Unlock()
	}
	if len(keys) != 1 {
		t.Errorf("run 9 reports %v, want one (stopped)", keys)
	}
	for _, st := range keys {
		if st != string(transport.StateStopped) {
			t.Errorf("run 9 reported %s, want stopped", st)
		}
	}
}
