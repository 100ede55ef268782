package engine_test

import (
	"sync"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/inproc"
)

// stopFaults drops the first drops StopRun messages to the devices and
// the first lostResults results messages that report a run stopped, and
// counts the StopRun messages sent.
type stopFaults struct {
	mu                 sync.Mutex
	drops, lostResults int
	stops              int
}

func (f *stopFaults) filter(m transport.Message, toServer bool) inproc.Fate {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m.Kind == transport.StopRun {
		f.stops++
		if f.drops > 0 {
			f.drops--
			return inproc.DropIt
		}
	}
	if toServer && m.Kind == transport.Results && f.lostResults > 0 {
		for _, r := range m.Results {
			if r.State == string(task.Stopped) {
				f.lostResults--
				return inproc.DropIt
			}
		}
	}
	return inproc.Pass
}

func (f *stopFaults) sent() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stops
}

// "Stop": StopRun is resent every retry interval until the device reports
// a final state for the run, so a device that missed it (dropped
// messages) still stops; a device whose "stopped" report was lost gets
// it again and ignores it (its run is stopped once, its result stored
// once).
func TestStopRunIsResentUntilTheDeviceReportsAFinalState(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name              string
		drops, lostResult int
	}{
		{"StopRun dropped twice", 2, 0},
		{"stopped report lost twice", 0, 2},
		{"both", 1, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := &stopFaults{drops: c.drops, lostResults: c.lostResult}
			b := setup(t, 2, func(cfg *enginetest.Config) {
				cfg.Behavior = func(agent.Run, scope.DeviceID) enginetest.Behavior {
					return enginetest.Behavior{Duration: 3 * time.Hour}
				}
				cfg.Faults.Filter = f.filter
			})
			tk := b.create(t, task.Task{Scope: groupScope("g-all")})
			_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
			must(t, err)
			b.step(t, 10*time.Minute)
			must(t, b.sim.Manager.Stop(b.ctx, task.System, tk.ID))
			b.stepFine(t, 10*time.Minute)
			for i := range 2 {
				d := scope.DeviceID(fmtID(i))
				if st := b.result(t, tk.ID, d).State; st != task.Stopped {
					t.Errorf("%s: %s, want stopped", d, st)
				}
				if runs := b.sim.Exec.Runs(tk.ID, d); len(runs) != 1 || !runs[0].Stopped {
					t.Errorf("%s: runs %+v, want one stopped run", d, runs)
				}
			}
			if n := f.sent(); n < 2+c.drops+c.lostResult {
				t.Errorf("StopRun sent %d times, want resends past the faults", n)
			}
			sent := f.sent()
			b.step(t, 4*time.Hour) // past the run's natural end
			if n := f.sent(); n != sent {
				t.Errorf("StopRun sent %d more times after the devices reported stopped", n-sent)
			}
			ev := resultEvents(t, b, tk.ID)
			for i := range 2 {
				d := scope.DeviceID(fmtID(i))
				if st := b.result(t, tk.ID, d).State; st != task.Stopped {
					t.Errorf("%s after the run's natural end: %s, want stopped", d, st)
				}
				if ev[d] != 1 {
					t.Errorf("%s: %d results stored, want 1", d, ev[d])
				}
			}
		})
	}
}

// A StopRun for a start the device never received (its StartRun was
// lost) is answered "stopped" by the device, and the start never runs.
func TestStopRunForAStartTheDeviceNeverReceived(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	lose := true
	b := setup(t, 1, func(cfg *enginetest.Config) {
		cfg.Faults.Filter = func(m transport.Message, _ bool) inproc.Fate {
			mu.Lock()
			defer mu.Unlock()
			if m.Kind == transport.StartRun && lose {
				return inproc.DropIt
			}
			return inproc.Pass
		}
	})
	tk := b.create(t, task.Task{Scope: winSelection()})
	_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.stepFine(t, 3*time.Minute) // sent and resent, lost
	must(t, b.sim.Manager.Stop(b.ctx, task.System, tk.ID))
	mu.Lock()
	lose = false
	mu.Unlock()
	b.step(t, time.Hour)
	if st := b.result(t, tk.ID, "d00000").State; st != task.Stopped {
		t.Errorf("state %s, want stopped", st)
	}
	if runs := b.sim.Exec.Runs(tk.ID, "d00000"); len(runs) != 0 {
		t.Errorf("runs %+v, want none", runs)
	}
}

// A stop survives a server restart: every StopRun is lost until the server
// restarts; the new server finds the stop marker and keeps telling the
// devices to stop, so both runs end stopped, once. A run started after
// the stop is not stopped by it.
func TestStopSurvivesAServerRestart(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	lose := true
	b := setup(t, 2, func(cfg *enginetest.Config) {
		cfg.Behavior = func(agent.Run, scope.DeviceID) enginetest.Behavior {
			return enginetest.Behavior{Duration: 3 * time.Hour}
		}
		cfg.Faults.Filter = func(m transport.Message, _ bool) inproc.Fate {
			mu.Lock()
			defer mu.Unlock()
			if m.Kind == transport.StopRun && lose {
				return inproc.DropIt
			}
			return inproc.Pass
		}
	})
	tk := b.create(t, task.Task{Scope: groupScope("g-all")})
	_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 10*time.Minute)
	must(t, b.sim.Manager.Stop(b.ctx, task.System, tk.ID))
	b.stepFine(t, 5*time.Minute) // StopRun sent and resent, all lost
	for i := range 2 {
		if st := b.result(t, tk.ID, scope.DeviceID(fmtID(i))).State; st != task.Running {
			t.Fatalf("%s before the restart: %s, want still running (its stops were lost)", fmtID(i), st)
		}
	}
	must(t, b.sim.RestartServer(b.ctx))
	mu.Lock()
	lose = false
	mu.Unlock()
	b.stepFine(t, 5*time.Minute)
	for i := range 2 {
		d := scope.DeviceID(fmtID(i))
		if st := b.result(t, tk.ID, d).State; st != task.Stopped {
			t.Errorf("%s after the restart: %s, want stopped", d, st)
		}
		if runs := b.sim.Exec.Runs(tk.ID, d); len(runs) != 1 || !runs[0].Stopped {
			t.Errorf("%s: runs %+v, want one stopped run", d, runs)
		}
	}
	// A new run after the stop is not covered by it, also across a
	// second restart.
	b.step(t, time.Minute)
	_, err = b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 10*time.Minute)
	must(t, b.sim.RestartServer(b.ctx))
	b.step(t, 10*time.Minute)
	for i := range 2 {
		d := scope.DeviceID(fmtID(i))
		if st := b.result(t, tk.ID, d).State; st != task.Running {
			t.Errorf("%s in its second run: %s, want running", d, st)
		}
	}
}
