package engine_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/inproc"
)

// pauseFleet is a small fleet whose security application can pause runs
// (enginetest's executor cannot): a server, a Manager and one agent per
// device over the in-process transport, on a clock.Mock.
type pauseFleet struct {
	ctx    context.Context
	clk    *clock.Mock
	inv    *inmem.Inventory
	net    *inproc.Network
	srv    *engine.Server
	m      *task.Manager
	exec   *pausingExec
	devs   map[scope.DeviceID]scope.Device
	ids    []scope.DeviceID
	agents []*agent.Agent
	n      int
}

func newPauseFleet(t *testing.T, n int, runFor time.Duration, faults inproc.Faults) *pauseFleet {
	t.Helper()
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(t0)
	groups, devs := fleet(n)
	f := &pauseFleet{ctx: ctx, clk: clk, inv: inmem.New(), devs: map[scope.DeviceID]scope.Device{},
		exec: &pausingExec{clk: clk, runFor: runFor, runs: map[enginetest.RunKey][]*pausedRun{}}}
	must(t, f.inv.PutGroups(ctx, groups...))
	for i := range devs {
		devs[i].Connected = true
		f.devs[devs[i].ID] = devs[i]
		f.ids = append(f.ids, devs[i].ID)
	}
	must(t, f.inv.PutDevices(ctx, devs...))
	f.net = inproc.New(inproc.Config{Clock: clk, Faults: faults, Seed: 1})
	store := memstore.New()
	srv, err := engine.New(engine.Config{Store: store, Inventory: f.inv, Clock: clk, Location: time.UTC})
	must(t, err)
	f.m, err = task.New(task.Config{Store: store, Registry: registry(t), Inventory: f.inv, Clock: clk, Dispatcher: srv})
	must(t, err)
	must(t, srv.Open(ctx, f.m, f.net.Server(srv)))
	for _, id := range f.ids {
		a, err := agent.New(ctx, agent.Config{Device: id, Store: agent.NewMemStore(), Executor: f.exec.on(id), Clock: clk, Location: time.UTC})
		must(t, err)
		a.Attach(f.net.Device(id, a))
		f.net.Connect(id)
		f.agents = append(f.agents, a)
	}
	f.srv = srv
	must(t, f.settle())
	return f
}

func (f *pauseFleet) settle() error {
	for range 50 {
		if err := f.srv.Tick(f.ctx); err != nil {
			return err
		}
		for _, a := range f.agents {
			if err := a.Tick(f.ctx); err != nil {
				return err
			}
		}
		if f.net.Pump(f.ctx) == 0 {
			return nil
		}
	}
	return nil
}

// step advances the clock by d in 10-minute steps.
func (f *pauseFleet) step(t *testing.T, d time.Duration) {
	t.Helper()
	for end := f.clk.Now().Add(d); f.clk.Now().Before(end); {
		f.clk.Add(min(10*time.Minute, end.Sub(f.clk.Now())))
		must(t, f.settle())
	}
}

func (f *pauseFleet) create(t *testing.T, tk task.Task) *task.Task {
	t.Helper()
	tk.Application, tk.Type = appES, "virus_scan"
	f.n++
	tk.Name = "task " + pad5(f.n)
	out, err := f.m.Create(f.ctx, task.System, tk)
	must(t, err)
	must(t, f.settle())
	return out
}

func (f *pauseFleet) setConnected(id scope.DeviceID, on bool) {
	d := f.devs[id]
	d.Connected = on
	f.devs[id] = d
	_ = f.inv.PutDevices(context.Background(), d)
	if on {
		f.net.Connect(id)
	} else {
		f.net.Disconnect(id)
	}
}

func (f *pauseFleet) state(t *testing.T, id string, d scope.DeviceID) task.Result {
	t.Helper()
	r, err := f.m.Result(f.ctx, task.System, id, d)
	must(t, err)
	return r
}

// pausingExec is a security application whose runs take runFor of
// execution time and can be paused.
type pausingExec struct {
	mu     sync.Mutex
	clk    *clock.Mock
	runFor time.Duration
	runs   map[enginetest.RunKey][]*pausedRun
}

type pausedRun struct {
	id                      int64
	left                    time.Duration
	since                   time.Time
	timer                   *clock.Timer
	done                    func(agent.Outcome)
	pauses, resumes, stops  int
	paused, stopped, finish bool
}

type devPausingExec struct {
	x  *pausingExec
	id scope.DeviceID
}

var _ agent.Pauser = devPausingExec{}

func (x *pausingExec) on(id scope.DeviceID) devPausingExec { return devPausingExec{x, id} }

// runsOf returns copies of the runs of a task on a device.
func (x *pausingExec) runsOf(taskID string, d scope.DeviceID) []pausedRun {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []pausedRun
	for _, r := range x.runs[enginetest.RunKey{Task: taskID, Device: d}] {
		out = append(out, *r)
	}
	return out
}

func (e devPausingExec) AppRunning(context.Context, string) bool { return true }

func (e devPausingExec) Start(_ context.Context, r agent.Run, done func(agent.Outcome)) error {
	e.x.mu.Lock()
	defer e.x.mu.Unlock()
	run := &pausedRun{id: r.RunID, left: e.x.runFor, since: e.x.clk.Now(), done: done}
	k := enginetest.RunKey{Task: r.TaskID, Device: e.id}
	e.x.runs[k] = append(e.x.runs[k], run)
	e.x.arm(run)
	return nil
}

// arm starts the timer of a run's remaining execution time.
func (x *pausingExec) arm(run *pausedRun) {
	run.timer = x.clk.AfterFunc(run.left, func() {
		x.mu.Lock()
		run.finish = true
		x.mu.Unlock()
		run.done(agent.Outcome{State: transport.StateCompleted})
	})
}

func (e devPausingExec) find(taskID string, runID int64) *pausedRun {
	for _, r := range e.x.runs[enginetest.RunKey{Task: taskID, Device: e.id}] {
		if r.id == runID {
			return r
		}
	}
	return nil
}

func (e devPausingExec) Stop(_ context.Context, taskID string, runID int64) error {
	e.x.mu.Lock()
	defer e.x.mu.Unlock()
	if r := e.find(taskID, runID); r != nil {
		r.stops++
		r.stopped = true
		r.timer.Stop()
	}
	return nil
}

func (e devPausingExec) Pause(_ context.Context, taskID string, runID int64) error {
	e.x.mu.Lock()
	defer e.x.mu.Unlock()
	if r := e.find(taskID, runID); r != nil {
		r.pauses++
		r.paused = true
		r.timer.Stop()
		r.left -= e.x.clk.Now().Sub(r.since)
	}
	return nil
}

func (e devPausingExec) Resume(_ context.Context, taskID string, runID int64) error {
	e.x.mu.Lock()
	defer e.x.mu.Unlock()
	if r := e.find(taskID, runID); r != nil {
		r.resumes++
		r.paused = false
		r.since = e.x.clk.Now()
		e.x.arm(r)
	}
	return nil
}

// "Suspend" pauses the runs in progress on the devices and "Resume"
// continues them, for a task the devices run and for a task the server
// runs; "stop if the task runs longer than" counts execution time only.
func TestSuspendPausesRunsInProgressAndResumeContinuesThem(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		scope scope.Scope
	}{
		{"device task", groupScope("g-all")},
		{"device-selection task", winSelection()},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newPauseFleet(t, 3, 2*time.Hour, inproc.Faults{})
			// 3 hours at most: the run needs 2 hours of execution but is
			// suspended for 4 hours on the way.
			s := sched(schedule.Manual, func(s *schedule.Schedule) { s.StopAfter = schedule.Limit{Enabled: true, Minutes: 180} })
			tk := f.create(t, task.Task{Scope: c.scope, Schedule: s})
			_, err := f.m.Start(f.ctx, task.System, tk.ID)
			must(t, err)
			f.step(t, 10*time.Minute)
			_, err = f.m.Suspend(f.ctx, task.System, tk.ID)
			must(t, err)
			f.step(t, 10*time.Minute)
			for _, d := range f.ids {
				if st := f.state(t, tk.ID, d).State; st != task.Paused {
					t.Errorf("%s after suspend: %s, want paused", d, st)
				}
			}
			f.step(t, 4*time.Hour)
			_, err = f.m.Resume(f.ctx, task.System, tk.ID)
			must(t, err)
			f.step(t, 10*time.Minute)
			for _, d := range f.ids {
				if st := f.state(t, tk.ID, d).State; st != task.Running {
					t.Errorf("%s after resume: %s, want running", d, st)
				}
			}
			f.step(t, 2*time.Hour)
			for _, d := range f.ids {
				r := f.state(t, tk.ID, d)
				if r.State != task.Completed {
					t.Errorf("%s: %s (%s), want completed (paused time is not run time)", d, r.State, r.Message)
				}
				runs := f.exec.runsOf(tk.ID, d)
				if len(runs) != 1 || runs[0].pauses != 1 || runs[0].resumes != 1 || !runs[0].finish {
					t.Errorf("%s: runs %+v, want one run paused and resumed once, finished", d, runs)
				}
			}
		})
	}
}

// A device that is offline when the task is suspended keeps running and
// gets the pause when it becomes visible again, once.
func TestSuspendReachesAnOfflineDeviceWhenItBecomesVisible(t *testing.T) {
	t.Parallel()
	f := newPauseFleet(t, 2, 3*time.Hour, inproc.Faults{})
	tk := f.create(t, task.Task{Scope: groupScope("g-all")})
	_, err := f.m.Start(f.ctx, task.System, tk.ID)
	must(t, err)
	f.step(t, 10*time.Minute)
	f.setConnected("d00001", false)
	_, err = f.m.Suspend(f.ctx, task.System, tk.ID)
	must(t, err)
	f.step(t, time.Hour)
	if r := f.exec.runsOf(tk.ID, "d00000"); r[0].pauses != 1 {
		t.Fatalf("online device: %d pauses, want 1", r[0].pauses)
	}
	if r := f.exec.runsOf(tk.ID, "d00001"); r[0].pauses != 0 || r[0].finish {
		t.Fatalf("offline device: %+v, want still running", r[0])
	}
	f.setConnected("d00001", true)
	f.step(t, 20*time.Minute) // the heartbeat makes it visible
	if r := f.exec.runsOf(tk.ID, "d00001"); r[0].pauses != 1 {
		t.Fatalf("device back online: %d pauses, want 1", r[0].pauses)
	}
	if st := f.state(t, tk.ID, "d00001").State; st != task.Paused {
		t.Errorf("device back online: %s, want paused", st)
	}
	f.step(t, time.Hour) // no further pauses
	_, err = f.m.Resume(f.ctx, task.System, tk.ID)
	must(t, err)
	f.step(t, 3*time.Hour)
	for _, d := range f.ids {
		runs := f.exec.runsOf(tk.ID, d)
		if len(runs) != 1 || runs[0].pauses != 1 || runs[0].resumes != 1 || !runs[0].finish {
			t.Errorf("%s: runs %+v, want one run paused and resumed once, finished", d, runs)
		}
		if st := f.state(t, tk.ID, d).State; st != task.Completed {
			t.Errorf("%s: %s, want completed", d, st)
		}
	}
}

// PauseRun is resent every retry interval until the device acknowledges
// it: dropped orders are repaired, and the run is paused once.
func TestPauseIsResentUntilTheDeviceAcknowledgesIt(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	pauses, drops := 0, 0
	f := newPauseFleet(t, 1, 3*time.Hour, inproc.Faults{Filter: func(m transport.Message, toServer bool) inproc.Fate {
		mu.Lock()
		defer mu.Unlock()
		if m.Kind == transport.PauseRun {
			pauses++
			if pauses <= 2 {
				drops++
				return inproc.DropIt
			}
		}
		if toServer && m.Kind == transport.Ack && drops == 2 {
			drops++ // the first acknowledgement is lost too
			return inproc.DropIt
		}
		return inproc.Pass
	}})
	tk := f.create(t, task.Task{Scope: groupScope("g-all")})
	_, err := f.m.Start(f.ctx, task.System, tk.ID)
	must(t, err)
	f.step(t, 10*time.Minute)
	_, err = f.m.Suspend(f.ctx, task.System, tk.ID)
	must(t, err)
	f.step(t, time.Hour)
	runs := f.exec.runsOf(tk.ID, "d00000")
	if len(runs) != 1 || runs[0].pauses != 1 {
		t.Fatalf("runs %+v, want one run paused once", runs)
	}
	if st := f.state(t, tk.ID, "d00000").State; st != task.Paused {
		t.Errorf("state %s, want paused", st)
	}
	mu.Lock()
	sent := pauses
	mu.Unlock()
	if sent < 4 {
		t.Errorf("PauseRun sent %d times, want resends past the two drops and the lost acknowledgement", sent)
	}
	f.step(t, time.Hour)
	mu.Lock()
	defer mu.Unlock()
	if pauses != sent {
		t.Errorf("PauseRun sent %d more times after it was acknowledged", pauses-sent)
	}
}

// "Stop" while the run is paused stops it; a later resume does not bring
// it back.
func TestStopWhilePausedStopsTheRun(t *testing.T) {
	t.Parallel()
	f := newPauseFleet(t, 2, 2*time.Hour, inproc.Faults{})
	tk := f.create(t, task.Task{Scope: groupScope("g-all")})
	_, err := f.m.Start(f.ctx, task.System, tk.ID)
	must(t, err)
	f.step(t, 10*time.Minute)
	_, err = f.m.Suspend(f.ctx, task.System, tk.ID)
	must(t, err)
	f.step(t, 10*time.Minute)
	must(t, f.m.Stop(f.ctx, task.System, tk.ID))
	f.step(t, 10*time.Minute)
	_, err = f.m.Resume(f.ctx, task.System, tk.ID)
	must(t, err)
	f.step(t, 3*time.Hour)
	for _, d := range f.ids {
		if st := f.state(t, tk.ID, d).State; st != task.Stopped {
			t.Errorf("%s: %s, want stopped", d, st)
		}
		runs := f.exec.runsOf(tk.ID, d)
		if len(runs) != 1 || runs[0].stops != 1 || runs[0].resumes != 0 || runs[0].finish {
			t.Errorf("%s: runs %+v, want one run stopped while paused, never resumed", d, runs)
		}
	}
}

// With an executor that cannot pause runs (no agent.Pauser), a suspend
// leaves the run going and the device says so: the running result's
// message and a warning in the task history. The order is not resent
// once the device answered.
func TestSuspendWithAnExecutorThatCannotPauseReportsIt(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	pauses := 0
	b := setup(t, 1, func(c *enginetest.Config) {
		c.Behavior = func(agent.Run, scope.DeviceID) enginetest.Behavior {
			return enginetest.Behavior{Duration: 3 * time.Hour}
		}
		c.Faults.Filter = func(m transport.Message, _ bool) inproc.Fate {
			if m.Kind == transport.PauseRun {
				mu.Lock()
				pauses++
				mu.Unlock()
			}
			return inproc.Pass
		}
	})
	tk := b.create(t, task.Task{Scope: groupScope("g-all")})
	_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 10*time.Minute)
	_, err = b.sim.Manager.Suspend(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, time.Hour)
	r := b.result(t, tk.ID, "d00000")
	if r.State != task.Running || !strings.Contains(r.Message, "cannot be paused") {
		t.Errorf("result %s %q, want running with a message that the run cannot be paused", r.State, r.Message)
	}
	evs, err := b.sim.Manager.History(b.ctx, task.System, tk.ID, task.HistoryParams{Device: "d00000"})
	must(t, err)
	warned := 0
	for _, e := range evs {
		if e.Severity == task.SeverityWarning && strings.Contains(e.Message, "cannot be paused") {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings that the run cannot be paused in the history, want 1", warned)
	}
	mu.Lock()
	if pauses > 2 {
		t.Errorf("PauseRun sent %d times, want it settled by the device's answer", pauses)
	}
	mu.Unlock()
	b.step(t, 2*time.Hour+10*time.Minute)
	if st := b.result(t, tk.ID, "d00000").State; st != task.Completed {
		t.Errorf("state %s, want the run to complete", st)
	}
}
