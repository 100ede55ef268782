package agent_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

// appExec is an executor whose application can be stopped and started;
// it records the run ids it started.
type appExec struct {
	down bool
	runs []int64
}

func (x *appExec) AppRunning(context.Context, string) bool { return !x.down }
func (x *appExec) Start(_ context.Context, r agent.Run, done func(agent.Outcome)) error {
	x.runs = append(x.runs, r.RunID)
	done(agent.Outcome{State: transport.StateCompleted})
	return nil
}
func (x *appExec) Stop(context.Context, string, int64) error { return nil }

type missedRig struct {
	t     *testing.T
	ctx   context.Context
	clk   *clock.Mock
	store agent.Store
	x     *appExec
	cfg   agent.Config
	a     *agent.Agent
	ep    *endpoint
}

func newMissedRig(t *testing.T, cfg agent.Config) *missedRig {
	t.Helper()
	clk := clock.NewMock()
	clk.Set(t0)
	r := &missedRig{t: t, ctx: context.Background(), clk: clk, store: agent.NewMemStore(), x: &appExec{}, cfg: cfg}
	r.boot()
	return r
}

// boot starts an agent on the rig's store at the clock's time (a device
// powered on).
func (r *missedRig) boot() {
	r.t.Helper()
	if r.a != nil {
		_ = r.a.Close()
	}
	cfg := r.cfg
	cfg.Device, cfg.Store, cfg.Executor, cfg.Clock = "d1", r.store, r.x, r.clk
	a, err := agent.New(r.ctx, cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.a, r.ep = a, &endpoint{}
	a.Attach(r.ep)
}

func (r *missedRig) tick() {
	r.t.Helper()
	if err := r.a.Tick(r.ctx); err != nil {
		r.t.Fatal(err)
	}
}

// advance moves the clock by d, ticking every 5 minutes (an awake
// device).
func (r *missedRig) advance(d time.Duration) {
	r.t.Helper()
	for end := r.clk.Now().Add(d); r.clk.Now().Before(end); {
		step := min(5*time.Minute, end.Sub(r.clk.Now()))
		r.clk.Add(step)
		r.tick()
	}
}

// deliver hands the agent d in a Deliver message the server sent at sent.
func (r *missedRig) deliver(d transport.Definition, sent time.Time) {
	r.a.Handle(r.ctx, transport.Message{Kind: transport.Deliver, Definition: &d, SentAt: sent})
}

// states returns the final states reported by the current agent, by run
// id order of reporting, with the messages of missed ones.
func (r *missedRig) states() (states []transport.State, msgs []string) {
	for _, res := range r.ep.results() {
		states = append(states, res.State)
		if res.State == transport.StateMissed {
			msgs = append(msgs, res.Message)
		}
	}
	return states, msgs
}

func onceDef(id string, saved, at time.Time, runMissed bool) transport.Definition {
	d := def(id)
	d.Task.Schedule = schedule.Default(schedule.Once, at, time.UTC)
	d.Task.Schedule.RunMissed = runMissed
	d.Since, d.LastManual = saved, nil
	return d
}

func dailyDef(id string, runMissed bool) transport.Definition {
	d := def(id)
	d.Task.Schedule = schedule.Default(schedule.EveryDays, t0.Add(9*time.Hour), time.UTC)
	d.Task.Schedule.RunMissed = runMissed
	d.LastManual = nil
	return d
}

// "Run missed tasks" off is strict: a start due before the device was
// visible (the agent booted a minute later; the task reached the device
// only after its start) is missed, with a message saying why; only a
// start due while the device was visible (the definition was in flight)
// runs. An explicit MissedTolerance lets a slow boot through.
func TestRunMissedOffIsStrict(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		tolerance time.Duration
		run       func(r *missedRig)
		starts    int
		why       string
	}{
		{"due a minute before the agent started", 0, func(r *missedRig) {
			r.deliver(onceDef("o", t0, t0.Add(10*time.Minute), false), t0)
			r.tick()
			r.clk.Add(11 * time.Minute) // off from t0+1s to t0+11m
			r.boot()
			r.tick()
		}, 0, "the agent was not running"},
		{"tolerance lets a slow boot through", 5 * time.Minute, func(r *missedRig) {
			r.deliver(onceDef("o", t0, t0.Add(10*time.Minute), false), t0)
			r.tick()
			r.clk.Add(11 * time.Minute)
			r.boot()
			r.tick()
		}, 1, ""},
		{"reached the device half an hour late", 0, func(r *missedRig) {
			r.advance(30 * time.Minute)
			r.deliver(onceDef("o", t0, t0.Add(time.Minute), false), r.clk.Now()) // sent with a heartbeat answer
			r.tick()
		}, 0, "reached the device only after it"},
		{"in flight when due: the device was visible", 0, func(r *missedRig) {
			r.clk.Add(2 * time.Second)
			r.deliver(onceDef("o", t0, t0.Add(time.Second), false), t0) // pushed at the save
			r.tick()
		}, 1, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := newMissedRig(t, agent.Config{MissedTolerance: c.tolerance})
			c.run(r)
			if len(r.x.runs) != c.starts {
				t.Fatalf("%d starts, want %d", len(r.x.runs), c.starts)
			}
			states, msgs := r.states()
			if c.starts == 0 {
				if len(states) != 1 || states[0] != transport.StateMissed || !strings.Contains(msgs[0], "not visible") || !strings.Contains(msgs[0], c.why) {
					t.Fatalf("results %v %q, want one missed saying the device was not visible (%s)", states, msgs, c.why)
				}
			}
		})
	}
}

// A device that wakes after a week of sleep (the agent keeps running,
// its ticks stop) runs a daily task once with "run missed tasks" (the
// latest activation) and records the six others missed; without it it
// runs none and records all seven missed.
func TestWakeAfterAWeekRunsOneCatchUp(t *testing.T) {
	t.Parallel()
	for _, runMissed := range []bool{true, false} {
		r := newMissedRig(t, agent.Config{})
		d := dailyDef("daily", runMissed)
		d.Task.Schedule.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayOff}
		r.deliver(d, t0)
		r.tick()
		r.clk.Add(7*24*time.Hour - time.Hour) // asleep until 08:00 a week later
		r.tick()
		states, msgs := r.states()
		missed, completed := 0, 0
		for _, s := range states {
			switch s {
			case transport.StateMissed:
				missed++
			case transport.StateCompleted:
				completed++
			}
		}
		want := map[bool][2]int{true: {6, 1}, false: {7, 0}}[runMissed]
		if missed != want[0] || completed != want[1] || len(r.x.runs) != want[1] {
			t.Fatalf("run missed %v: %d missed, %d completed, %d starts; want %v", runMissed, missed, completed, len(r.x.runs), want)
		}
		if runMissed {
			latest := transport.RunID(t0.Add(6*24*time.Hour+9*time.Hour), transport.Scheduled)
			if d := cmp.Diff([]int64{latest}, r.x.runs); d != "" {
				t.Errorf("catch-up is not the latest activation (-want +got):\n%s", d)
			}
		}
		for _, m := range msgs {
			if !strings.Contains(m, "asleep") {
				t.Errorf("missed message %q does not say the device was asleep", m)
			}
		}
		// Awake again: the next activation runs on time.
		r.advance(10 * time.Hour)
		if len(r.x.runs) != want[1]+1 {
			t.Errorf("run missed %v: the next day's activation did not run (%d starts)", runMissed, len(r.x.runs))
		}
	}
}

// With "run missed tasks", a missed start that finds the application not
// running waits for the application and runs the next time it runs
// (checked every RetryInterval, at once after ApplicationStarted); a
// newer start replaces a waiting one, which is recorded missed.
func TestMissedRunWaitsForTheApplication(t *testing.T) {
	t.Parallel()
	r := newMissedRig(t, agent.Config{})
	d := dailyDef("daily", true)
	d.Task.Schedule.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayOff}
	r.deliver(d, t0)
	r.tick()
	r.clk.Add(10 * time.Hour) // powered off over 09:00
	r.x.down = true
	r.boot()
	r.tick()
	if len(r.x.runs) != 0 {
		t.Fatalf("started %d runs while the application is not running", len(r.x.runs))
	}
	if states, _ := r.states(); len(states) != 0 {
		t.Fatalf("final results %v while waiting for the application", states)
	}
	r.advance(time.Hour) // checked again: still not running
	r.x.down = false
	r.a.ApplicationStarted("ES")
	if w := r.a.NextWake(); !w.IsZero() {
		t.Fatalf("NextWake %v after ApplicationStarted, want at once", w)
	}
	r.tick()
	want := transport.RunID(t0.Add(9*time.Hour), transport.Scheduled)
	if d := cmp.Diff([]int64{want}, r.x.runs); d != "" {
		t.Fatalf("runs (-want +got):\n%s", d)
	}
	if states, _ := r.states(); len(states) != 1 || states[0] != transport.StateCompleted {
		t.Fatalf("results %v, want one completed", states)
	}

	// Not running again at the next day's 09:00: the start waits; the
	// day after's replaces it; the application comes back and the check
	// every RetryInterval finds it.
	r.x.down = true
	r.advance(22 * time.Hour) // 09:00 the next day
	r.advance(24 * time.Hour)
	r.x.down = false
	r.advance(5 * time.Minute)
	day3 := transport.RunID(t0.Add(2*24*time.Hour+9*time.Hour), transport.Scheduled)
	if d := cmp.Diff([]int64{want, day3}, r.x.runs); d != "" {
		t.Fatalf("runs (-want +got):\n%s", d)
	}
	states, msgs := r.states()
	if d := cmp.Diff([]transport.State{transport.StateCompleted, transport.StateMissed, transport.StateCompleted}, states); d != "" || !strings.Contains(msgs[0], "application ES was not running") {
		t.Fatalf("results (-want +got):\n%s\nmissed: %q", d, msgs)
	}
}

// A Once start at the exact instant of saving runs on a device-run task.
func TestOnceAtTheInstantOfSavingRuns(t *testing.T) {
	t.Parallel()
	r := newMissedRig(t, agent.Config{})
	r.deliver(onceDef("o", t0, t0, false), t0)
	r.tick()
	if len(r.x.runs) != 1 {
		t.Fatalf("%d runs, want 1", len(r.x.runs))
	}
	r.clk.Add(time.Hour)
	r.tick()
	if len(r.x.runs) != 1 {
		t.Fatalf("%d runs after an hour, want still 1", len(r.x.runs))
	}
}

// The device's clock steps back two hours after a daily activation ran:
// the activation is not run again when the clock passes it a second time,
// and the next day's runs. A forward step under SleepGap runs the
// activation stepped over, late.
func TestDeviceClockStepsNeitherRepeatNorSkip(t *testing.T) {
	t.Parallel()
	r := newMissedRig(t, agent.Config{})
	d := dailyDef("daily", false)
	d.Task.Schedule.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayOff}
	r.deliver(d, t0)
	r.advance(10 * time.Hour) // 09:00 ran
	r.clk.Set(r.clk.Now().Add(-2 * time.Hour))
	r.tick()
	r.advance(3 * time.Hour) // 08:00 to 11:00 again
	if len(r.x.runs) != 1 {
		t.Fatalf("%d runs after the step back, want the one 09:00 run", len(r.x.runs))
	}
	r.advance(22*time.Hour - 10*time.Minute) // 08:50 the next day
	r.clk.Set(r.clk.Now().Add(12 * time.Minute))
	r.tick()
	if len(r.x.runs) != 2 {
		t.Fatalf("%d runs after a 12-minute step over 09:00, want 2", len(r.x.runs))
	}
}

// Run refuses an interval that would make every tick look like a sleep.
func TestRunRefusesAnIntervalOverSleepGap(t *testing.T) {
	t.Parallel()
	r := newMissedRig(t, agent.Config{Heartbeat: time.Minute, SleepGap: time.Minute})
	for _, iv := range []time.Duration{0, -time.Second, 2 * time.Minute} {
		if err := r.a.Run(r.ctx, iv); !errors.Is(err, agent.ErrInvalid) {
			t.Errorf("Run(%v) = %v, want ErrInvalid", iv, err)
		}
	}
}

// A SleepGap shorter than the heartbeat is refused: the agent wakes only
// every heartbeat when idle, and would count itself asleep in between.
func TestNewRefusesASleepGapUnderTheHeartbeat(t *testing.T) {
	t.Parallel()
	_, err := agent.New(context.Background(), agent.Config{Device: "d1", Store: agent.NewMemStore(), Executor: &appExec{}, SleepGap: time.Minute})
	var ve agent.ValidationErrors
	var one *agent.ValidationError
	if !errors.Is(err, agent.ErrInvalid) || (!errors.As(err, &ve) && !errors.As(err, &one)) {
		t.Fatalf("err %v, want a SleepGap validation error", err)
	}
	if !strings.Contains(err.Error(), "SleepGap") {
		t.Errorf("err %v does not name SleepGap", err)
	}
}

// When the device's clock steps back two hours, heartbeats go on every
// Heartbeat (the server would count the device invisible otherwise).
func TestHeartbeatsGoOnWhenTheDeviceClockStepsBack(t *testing.T) {
	t.Parallel()
	r := newMissedRig(t, agent.Config{})
	r.advance(time.Hour)
	r.clk.Set(r.clk.Now().Add(-2 * time.Hour))
	before := beats(r.ep)
	r.advance(15 * time.Minute)
	if got := beats(r.ep) - before; got < 3 {
		t.Fatalf("%d heartbeats in the 15 minutes after the step back, want 3 or more", got)
	}
}

func beats(e *endpoint) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, m := range e.sent {
		if m.Kind == transport.Heartbeat {
			n++
		}
	}
	return n
}

// A device that starts exactly at an activation runs that one; the
// activation it missed before is not caught up as well (one run, not two).
func TestNoCatchUpWhenTheNextActivationRunsAtBoot(t *testing.T) {
	t.Parallel()
	r := newMissedRig(t, agent.Config{})
	d := def("hourly")
	d.Task.Schedule = schedule.Default(schedule.EveryHours, t0, time.UTC)
	d.Task.Schedule.Every = 1
	d.Task.Schedule.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayOff}
	d.Task.Schedule.RunMissed = true
	d.LastManual = nil
	r.deliver(d, t0)
	r.advance(30 * time.Minute) // saved at 00:00: the first activation is 01:00
	r.clk.Add(90 * time.Minute) // off over 01:00, boots at 02:00 sharp
	r.boot()
	r.tick()
	want := []int64{transport.RunID(t0.Add(2*time.Hour), transport.Scheduled)}
	if d := cmp.Diff(want, r.x.runs); d != "" {
		t.Fatalf("runs (-want +got):\n%s", d)
	}
	states, msgs := r.states()
	if len(msgs) != 1 || !strings.Contains(msgs[0], "a later activation runs instead") {
		t.Fatalf("results %v %q, want 01:00 missed, noting the later run", states, msgs)
	}
}
