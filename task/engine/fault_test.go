package engine_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/agent/agentsqlite"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
	"github.com/taskfleet/taskfleet/task/transport/inproc"
)

// resultEvents counts the stored final-result events of a task per device
// (each applied result is stored once: a duplicate would count twice).
func resultEvents(t *testing.T, b *bundle, id string) map[scope.DeviceID]int {
	t.Helper()
	out := map[scope.DeviceID]int{}
	var after int64
	for {
		evs, err := b.sim.Store.ListEvents(context.Background(), storage.ListEventsParams{TaskID: id, AfterID: after, Limit: storage.MaxListLimit})
		must(t, err)
		if len(evs) == 0 {
			return out
		}
		for _, e := range evs {
			if e.Level == string(task.EventResult) {
				out[scope.DeviceID(e.DeviceID)]++
			}
		}
		after = evs[len(evs)-1].ID
	}
}

// Dropped, duplicated, delayed and reordered messages: every expected run
// happens exactly once (against schedule.Between) and every result is
// stored exactly once.
func TestFaultyTransportEveryRunExactlyOnce(t *testing.T) {
	t.Parallel()
	const n = 24
	b := setup(t, n, func(c *enginetest.Config) {
		c.Faults = inproc.Faults{Drop: 0.2, Duplicate: 0.2, Reorder: 0.2, Delay: 90 * time.Second}
		c.Seed = 7
	})
	dev := sched(schedule.EveryHours, func(s *schedule.Schedule) { s.Every = 2; s.Start = t0.Add(17 * time.Minute) })
	daily := sched(schedule.EveryDays, func(s *schedule.Schedule) { s.Time = schedule.Clock(9, 0, 0); s.StartDate = schedule.DateOf(t0) })
	sel := sched(schedule.EveryHours, func(s *schedule.Schedule) { s.Every = 3; s.Start = t0.Add(40 * time.Minute) })
	tDev := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: dev})
	tDaily := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: daily})
	tSel := b.create(t, task.Task{Scope: winSelection(), Schedule: sel})
	from := b.sim.Clock.Now()
	b.step(t, 3*24*time.Hour)
	to := b.sim.Clock.Now()
	b.sim.Net.SetFaults(inproc.Faults{})
	b.step(t, 10*time.Minute) // drain outboxes; no activation of any task falls in (72:00, 72:10]
	if b.sim.Net.Stats().Dropped == 0 || b.sim.Net.Stats().Duplicated == 0 || b.sim.Net.Stats().Reordered == 0 {
		t.Fatalf("no faults injected: %+v", b.sim.Net.Stats())
	}
	berlin := loc(t, "Europe/Berlin")
	for _, c := range []struct {
		name string
		tk   *task.Task
		want func(l *time.Location) int
	}{
		{"device every 2h", tDev, func(*time.Location) int { return expect(dev, from, to, time.UTC) }},
		{"device daily 09:00 local", tDaily, func(l *time.Location) int { return expect(daily, from, to, l) }},
		{"selection every 3h", tSel, func(*time.Location) int { return expect(sel, from, to, berlin) }},
	} {
		ev := resultEvents(t, b, c.tk.ID)
		for i := range n {
			d := scope.DeviceID(fmtID(i))
			want := c.want(loc(t, zones[i%len(zones)]))
			runs := b.sim.Exec.Runs(c.tk.ID, d)
			if len(runs) != want {
				t.Errorf("%s on %s: %d runs, want %d", c.name, d, len(runs), want)
			}
			seen := map[int64]bool{}
			for _, r := range runs {
				if seen[r.RunID] {
					t.Errorf("%s on %s: run %d twice", c.name, d, r.RunID)
				}
				seen[r.RunID] = true
			}
			if ev[d] != want {
				t.Errorf("%s on %s: %d results stored, want %d", c.name, d, ev[d], want)
			}
		}
	}
	for i := range n {
		if l := b.sim.Agent(scope.DeviceID(fmtID(i))).OutboxLen(b.ctx); l != 0 {
			t.Errorf("device %d: %d messages never acknowledged", i, l)
		}
	}
}

// A device offline for days keeps running its tasks; on reconnection each
// result is stored exactly once.
func TestDeviceOfflineForDaysResultsStoredExactlyOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 3, func(c *enginetest.Config) { c.Faults = inproc.Faults{Duplicate: 0.5}; c.Seed = 3 })
	s := sched(schedule.EveryHours, func(s *schedule.Schedule) { s.Every = 4; s.Start = t0.Add(time.Hour) })
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: s})
	from := b.sim.Clock.Now()
	b.sim.Disconnect("d00002")
	b.step(t, 5*24*time.Hour)
	to := b.sim.Clock.Now()
	b.sim.Reconnect("d00002")
	b.step(t, 30*time.Minute)
	want := expect(s, from, to, time.UTC)
	if got := len(b.sim.Exec.Runs(tk.ID, "d00002")); got != want {
		t.Errorf("%d runs, want %d", got, want)
	}
	if got := resultEvents(t, b, tk.ID)["d00002"]; got != want {
		t.Errorf("%d results stored, want %d", got, want)
	}
}

// An agent restarted in the middle of a run reports that run once (it
// ended with the agent), never reruns it, and runs the next activations.
func TestAgentRestartMidRun(t *testing.T) {
	t.Parallel()
	b := setup(t, 1, func(c *enginetest.Config) {
		c.Behavior = func(agent.Run, scope.DeviceID) enginetest.Behavior {
			return enginetest.Behavior{Duration: 2 * time.Hour}
		}
	})
	s := sched(schedule.EveryHours, func(s *schedule.Schedule) { s.Every = 6; s.Start = t0.Add(time.Hour) })
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: s})
	b.step(t, 2*time.Hour) // running since 01:00
	if st := b.result(t, tk.ID, "d00000").State; st != task.Running {
		t.Fatalf("state %s, want running", st)
	}
	must(t, b.sim.RestartAgent(b.ctx, "d00000"))
	b.step(t, 30*time.Minute)
	r := b.result(t, tk.ID, "d00000")
	if r.State != task.Failed {
		t.Fatalf("interrupted run: %s, want failed", r.State)
	}
	b.step(t, 7*time.Hour) // 07:00 run completes at 09:00
	runs := b.sim.Exec.Runs(tk.ID, "d00000")
	if len(runs) != 2 {
		t.Fatalf("%d runs, want 2 (the interrupted one is not rerun)", len(runs))
	}
	if st := b.result(t, tk.ID, "d00000").State; st != task.Completed {
		t.Errorf("state %s", st)
	}
	if got := resultEvents(t, b, tk.ID)["d00000"]; got != 2 {
		t.Errorf("%d results stored, want 2", got)
	}
}

// A server restarted in the middle of dispatching a server-run task (some
// devices started, others waiting for their randomized delay) starts each
// device exactly once.
func TestServerRestartMidDispatch(t *testing.T) {
	t.Parallel()
	const n = 24
	b := setup(t, n, nil)
	s := sched(schedule.Once, func(s *schedule.Schedule) {
		s.At = t0.Add(time.Hour)
		s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayInterval, IntervalMinutes: 60}
	})
	tk := b.create(t, task.Task{Scope: winSelection(), Schedule: s})
	b.step(t, 90*time.Minute)
	started := 0
	for i := range n {
		started += len(b.sim.Exec.Runs(tk.ID, scope.DeviceID(fmtID(i))))
	}
	if started == 0 || started == n {
		t.Fatalf("%d of %d started before the restart; the test needs a partial dispatch", started, n)
	}
	must(t, b.sim.RestartServer(b.ctx))
	b.step(t, 2*time.Hour)
	for i := range n {
		d := scope.DeviceID(fmtID(i))
		if got := len(b.sim.Exec.Runs(tk.ID, d)); got != 1 {
			t.Errorf("%s: %d runs, want 1", d, got)
		}
		if st := b.result(t, tk.ID, d).State; st != task.Completed {
			t.Errorf("%s: %s", d, st)
		}
	}
}

// A server that stops right at an activation (before it fired) fires it
// once after the restart; one that already fired does not fire again.
func TestServerRestartAtActivation(t *testing.T) {
	t.Parallel()
	b := setup(t, 4, nil)
	s := sched(schedule.EveryHours, func(s *schedule.Schedule) { s.Every = 1; s.Start = t0.Add(30 * time.Minute) })
	tk := b.create(t, task.Task{Scope: winSelection(), Schedule: s})
	b.step(t, 30*time.Minute) // fired 00:30
	must(t, b.sim.RestartServer(b.ctx))
	b.sim.Clock.Add(time.Hour) // 01:30 due while the new server has not ticked
	must(t, b.sim.RestartServer(b.ctx))
	b.step(t, 10*time.Minute)
	for i := range 4 {
		if got := len(b.sim.Exec.Runs(tk.ID, scope.DeviceID(fmtID(i)))); got != 2 {
			t.Errorf("device %d: %d runs, want 2", i, got)
		}
	}
}

// The agent's SQLite outbox: results produced while offline survive an
// agent restart (the device was turned off and on) and reach storage
// exactly once when the device reconnects.
func TestOfflineResultsSurviveAgentRestartWithSQLiteOutbox(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := setup(t, 2, func(c *enginetest.Config) {
		c.AgentStore = func(id scope.DeviceID) (agent.Store, error) {
			return agentsqlite.Open(context.Background(), filepath.Join(dir, string(id)+".db"))
		}
		c.Faults = inproc.Faults{Duplicate: 0.3}
	})
	s := sched(schedule.EveryHours, func(s *schedule.Schedule) { s.Every = 3; s.Start = t0.Add(time.Hour) })
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: s})
	from := b.sim.Clock.Now()
	b.sim.Disconnect("d00001")
	b.step(t, 24*time.Hour)
	if b.sim.Agent("d00001").OutboxLen(b.ctx) == 0 {
		t.Fatal("nothing waits in the outbox")
	}
	must(t, b.sim.RestartAgent(b.ctx, "d00001")) // reconnects with the reopened store
	b.step(t, 2*time.Hour+30*time.Minute)
	to := b.sim.Clock.Now()
	want := expect(s, from, to, time.UTC)
	if got := len(b.sim.Exec.Runs(tk.ID, "d00001")); got != want {
		t.Errorf("%d runs, want %d", got, want)
	}
	if got := resultEvents(t, b, tk.ID)["d00001"]; got != want {
		t.Errorf("%d results stored, want %d", got, want)
	}
	if n := b.sim.Agent("d00001").OutboxLen(b.ctx); n != 0 {
		t.Errorf("%d messages left in the outbox", n)
	}
}
