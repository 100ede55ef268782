package agent_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

type startLog struct{ started []time.Time }

func (x *startLog) AppRunning(context.Context, string) bool { return true }
func (x *startLog) Start(_ context.Context, r agent.Run, done func(agent.Outcome)) error {
	x.started = append(x.started, r.StartedAt)
	done(agent.Outcome{State: transport.StateCompleted})
	return nil
}
func (x *startLog) Stop(context.Context, string, int64) error { return nil }

// Ticks that only send a heartbeat or retry the outbox skip the tasks, but
// NextWake still wakes the agent for each activation: driven by NextWake
// alone, every activation starts at its instant and every heartbeat goes
// out.
func TestTicksDrivenByNextWakeStartEveryActivationOnTime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(t0)
	x := &startLog{}
	a, err := agent.New(ctx, agent.Config{Device: "d1", Store: agent.NewMemStore(), Executor: x, Clock: clk, Heartbeat: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ep := &endpoint{}
	a.Attach(ep)
	d := def("p")
	d.Task.Schedule = schedule.Default(schedule.EveryMinutes, t0, time.UTC)
	d.Task.Schedule.Every = 7
	d.LastManual = nil
	a.Handle(ctx, transport.Message{Kind: transport.Deliver, Definition: &d})
	end := t0.Add(time.Hour)
	want := slices.Collect(d.Task.Schedule.Between(t0, end, time.UTC))
	if len(want) < 8 {
		t.Fatalf("%d activations in the hour, want 8", len(want))
	}
	ticks := 0
	for now := t0; !now.After(end); now = now.Add(time.Minute) {
		if w := a.NextWake(); w.IsZero() || !w.After(now) {
			ticks++
			if err := a.Tick(ctx); err != nil {
				t.Fatal(err)
			}
		}
		clk.Add(time.Minute)
	}
	if d := cmp.Diff(want, x.started); d != "" {
		t.Errorf("starts (-want +got):\n%s", d)
	}
	beats := 0
	for _, m := range ep.sent {
		if m.Kind == transport.Heartbeat {
			beats++
		}
	}
	if beats != 13 {
		t.Errorf("%d heartbeats in the hour, want 13 (every 5 minutes)", beats)
	}
	if ticks > 61 || ticks < 13+len(want)-2 {
		t.Errorf("%d ticks", ticks)
	}
}

// The heartbeat lists what the agent holds now: a new revision, a moved
// delay slot or a withdrawal shows in the next heartbeat, also when the
// heartbeats between reuse the list.
func TestHeartbeatListsTheHeldTasksAsTheyChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(t0)
	a, err := agent.New(ctx, agent.Config{Device: "d1", Store: agent.NewMemStore(), Executor: &startLog{}, Clock: clk, Heartbeat: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ep := &endpoint{}
	a.Attach(ep)
	lastHeld := func() []transport.HeldTask {
		t.Helper()
		ep.mu.Lock()
		defer ep.mu.Unlock()
		for i := len(ep.sent) - 1; i >= 0; i-- {
			if m := ep.sent[i]; m.Kind == transport.Heartbeat {
				return m.Heartbeat.Held
			}
		}
		t.Fatal("no heartbeat sent")
		return nil
	}
	beat := func() []transport.HeldTask {
		t.Helper()
		clk.Add(5 * time.Minute)
		if err := a.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		return lastHeld()
	}
	deliver := func(d transport.Definition, slot *transport.Slot) {
		a.Handle(ctx, transport.Message{Kind: transport.Deliver, Definition: &d, Slot: slot})
	}
	da, db := def("a"), def("b")
	deliver(da, nil)
	deliver(db, nil)
	want := []transport.HeldTask{{TaskID: "a", Revision: 3}, {TaskID: "b", Revision: 3}}
	for range 3 {
		if d := cmp.Diff(want, beat()); d != "" {
			t.Fatalf("held (-want +got):\n%s", d)
		}
	}
	first := lastHeld()
	da.Task.Revision = 4
	deliver(da, nil)
	slot := &transport.Slot{Index: 2, Of: 5}
	deliver(db, slot)
	want = []transport.HeldTask{{TaskID: "a", Revision: 4}, {TaskID: "b", Revision: 3, Slot: slot}}
	if d := cmp.Diff(want, beat()); d != "" {
		t.Fatalf("held after the changes (-want +got):\n%s", d)
	}
	if first[0].Revision != 3 {
		t.Fatalf("an earlier heartbeat's list changed: %+v", first)
	}
	a.Handle(ctx, transport.Message{Kind: transport.Withdraw, TaskID: "a"})
	want = want[1:]
	for range 2 {
		if d := cmp.Diff(want, beat()); d != "" {
			t.Fatalf("held after the withdrawal (-want +got):\n%s", d)
		}
	}
}

// heldExec holds the runs of task "m" (they finish only when the executor
// starts a run of another task, from inside that Start) and finishes every
// other run at once.
type heldExec struct {
	held   []func(agent.Outcome)
	starts []agent.Run
}

func (x *heldExec) AppRunning(context.Context, string) bool { return true }
func (x *heldExec) Start(_ context.Context, r agent.Run, done func(agent.Outcome)) error {
	x.starts = append(x.starts, r)
	if r.TaskID == "m" {
		x.held = append(x.held, done)
		return nil
	}
	for _, d := range x.held {
		d(agent.Outcome{State: transport.StateCompleted})
	}
	x.held = nil
	done(agent.Outcome{State: transport.StateCompleted})
	return nil
}
func (x *heldExec) Stop(context.Context, string, int64) error { return nil }

// A tick at a scheduled task's activation visits only the tasks due then;
// a run of another task that finishes during that visit still lets that
// task's queued start begin at the next wake (not only when something
// else changes the tasks).
func TestRunFinishedDuringAnotherTasksActivationLetsItsQueueStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(t0)
	x := &heldExec{}
	a, err := agent.New(ctx, agent.Config{Device: "d1", Store: agent.NewMemStore(), Executor: x, Clock: clk, Heartbeat: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	a.Attach(&endpoint{})
	p := def("p")
	p.Task.Schedule = schedule.Default(schedule.EveryMinutes, t0.Add(20*time.Minute), time.UTC)
	p.Task.Schedule.Every = 30
	p.LastManual = nil
	a.Handle(ctx, transport.Message{Kind: transport.Deliver, Definition: &p})
	m := manualDef(restart.Policy{})
	start(a, m, 1)
	if err := a.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	start(a, m, 2) // queued: run 1 is still running
	end := t0.Add(time.Hour)
	for now := t0; !now.After(end); now = now.Add(time.Minute) {
		if w := a.NextWake(); w.IsZero() || !w.After(now) {
			if err := a.Tick(ctx); err != nil {
				t.Fatal(err)
			}
		}
		clk.Add(time.Minute)
	}
	type start struct {
		Task string
		Run  int64
		At   time.Time
	}
	var got []start
	for _, r := range x.starts {
		got = append(got, start{r.TaskID, r.RunID, r.StartedAt})
	}
	act := slices.Collect(p.Task.Schedule.Between(t0, end, time.UTC))
	if len(act) != 2 {
		t.Fatalf("activations %v, want 2", act)
	}
	want := []start{
		{"m", 1, t0},
		{"p", transport.RunID(act[0], transport.Scheduled), act[0]},
		// Run 1 finished inside p's start: run 2 begins at the next
		// minute's tick.
		{"m", 2, act[0].Add(time.Minute)},
		{"p", transport.RunID(act[1], transport.Scheduled), act[1]},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("starts (-want +got):\n%s", d)
	}
}
