package engine_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/inproc"
)

// With the server's clock set back 2 hours, a new manual run is the
// task's latest: its results (failed) replace the previous run's
// (completed), whatever the wall clock says.
func TestManualRunAfterTheClockWasSetBackIsTheLatest(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	b := setup(t, 2, func(c *enginetest.Config) {
		c.Behavior = func(agent.Run, scope.DeviceID) enginetest.Behavior {
			if fail.Load() {
				return enginetest.Behavior{State: task.Failed, Message: "disk full"}
			}
			return enginetest.Behavior{State: task.Completed}
		}
	})
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, nil)})
	b.step(t, 3*time.Hour)
	first, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 10*time.Minute)
	for _, d := range []scope.DeviceID{"d00000", "d00001"} {
		if st := b.result(t, tk.ID, d).State; st != task.Completed {
			t.Fatalf("%s: first run %s", d, st)
		}
	}
	b.sim.Clock.Set(b.sim.Clock.Now().Add(-2 * time.Hour))
	fail.Store(true)
	second, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 10*time.Minute)
	if second.ID <= first.ID {
		t.Errorf("second run id %d is not after the first's %d", second.ID, first.ID)
	}
	for _, d := range []scope.DeviceID{"d00000", "d00001"} {
		r := b.result(t, tk.ID, d)
		if r.State != task.Failed || r.RunID != second.ID {
			t.Errorf("%s: shows run %d %s, want the new run %d failed", d, r.RunID, r.State, second.ID)
		}
		if n := len(b.sim.Exec.Runs(tk.ID, d)); n != 2 {
			t.Errorf("%s: %d runs, want 2", d, n)
		}
	}
}

// The rule for server-run schedules when the server's clock steps: back,
// the activations already fired are not fired again (their run ids exist)
// and the schedule goes on with the first activation after the last
// fired one; forward, the activations stepped over are fired at once,
// each once, and each device runs the latest of them (one catch-up, as a
// device that slept). No activation runs twice, none is lost unfired.
func TestServerScheduleNeitherSkipsNorRepeatsWhenTheClockSteps(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, nil)
	s := sched(schedule.EveryHours, func(s *schedule.Schedule) { s.Every = 1; s.Start = t0.Add(30 * time.Minute) })
	tk := b.create(t, task.Task{Scope: winSelection(), Schedule: s})
	fired0 := b.sim.Server.Stats().Fired
	b.step(t, 5*time.Hour) // 00:30 .. 04:30
	b.sim.Clock.Set(b.sim.Clock.Now().Add(-2 * time.Hour))
	b.step(t, 4*time.Hour) // back at 03:00, on to 07:00: 05:30, 06:30
	if got := b.sim.Server.Stats().Fired - fired0; got != 7 {
		t.Errorf("%d activations fired by 07:00 after the step back, want 7 (00:30 to 06:30, once each)", got)
	}
	b.sim.Clock.Set(b.sim.Clock.Now().Add(3 * time.Hour))
	b.step(t, 10*time.Minute) // 10:00: 07:30, 08:30, 09:30 fire at once
	if got := b.sim.Server.Stats().Fired - fired0; got != 10 {
		t.Errorf("%d activations fired by 10:00 after the step forward, want 10", got)
	}
	for _, d := range []scope.DeviceID{"d00000", "d00001"} {
		seen := map[int64]int{}
		for _, r := range b.sim.Exec.Runs(tk.ID, d) {
			seen[r.At.UnixNano()]++
		}
		for h := 0; h < 10; h++ {
			act := t0.Add(time.Duration(h)*time.Hour + 30*time.Minute)
			want := 1
			if h == 7 || h == 8 {
				want = 0 // superseded by 09:30, the catch-up
			}
			if seen[act.UnixNano()] != want {
				t.Errorf("%s: activation %s ran %d times, want %d", d, act.Format("15:04"), seen[act.UnixNano()], want)
			}
		}
	}
}

// A start whose message was lost is resent within RetryInterval of the
// server's clock being set back two hours, not two hours later.
func TestResendsGoOnWhenTheClockIsSetBack(t *testing.T) {
	t.Parallel()
	var lose atomic.Bool
	lose.Store(true)
	b := setup(t, 1, func(cfg *enginetest.Config) {
		cfg.Faults.Filter = func(m transport.Message, _ bool) inproc.Fate {
			if m.Kind == transport.StartRun && lose.Load() {
				return inproc.DropIt
			}
			return inproc.Pass
		}
	})
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, nil)})
	b.step(t, 3*time.Hour)
	_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	must(t, b.sim.Settle(b.ctx)) // sent, lost
	b.sim.Clock.Set(b.sim.Clock.Now().Add(-2 * time.Hour))
	lose.Store(false)
	b.stepFine(t, 5*time.Minute)
	if got := len(b.sim.Exec.Runs(tk.ID, "d00000")); got != 1 {
		t.Fatalf("%d runs within 5 minutes of the clock step, want the resent start's 1 (stats %+v, result %+v)", got, b.sim.Server.Stats(), b.result(t, tk.ID, "d00000"))
	}
}
