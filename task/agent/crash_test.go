package agent_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

// crashStore is a Store whose process dies after a number of writes: the
// writes after them are not made (they fail), as when the device's agent
// is killed between two of its writes. The MemStore beneath is what the
// restarted agent finds.
type crashStore struct {
	*agent.MemStore
	mu     sync.Mutex
	armed  bool
	left   int // writes still made once armed
	writes int // writes made since armed
}

var errDead = errors.New("the process died")

// arm lets n more writes through and fails every later one.
func (s *crashStore) arm(n int) {
	s.mu.Lock()
	s.armed, s.left, s.writes = true, n, 0
	s.mu.Unlock()
}

func (s *crashStore) write() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.armed {
		return nil
	}
	if s.left == 0 {
		return errDead
	}
	s.left--
	s.writes++
	return nil
}

func (s *crashStore) PutTask(ctx context.Context, t agent.LocalTask) error {
	if err := s.write(); err != nil {
		return err
	}
	return s.MemStore.PutTask(ctx, t)
}

func (s *crashStore) DeleteTask(ctx context.Context, id string) error {
	if err := s.write(); err != nil {
		return err
	}
	return s.MemStore.DeleteTask(ctx, id)
}

func (s *crashStore) Enqueue(ctx context.Context, m transport.Message) error {
	if err := s.write(); err != nil {
		return err
	}
	return s.MemStore.Enqueue(ctx, m)
}

func (s *crashStore) Remove(ctx context.Context, keys []string) error {
	if err := s.write(); err != nil {
		return err
	}
	return s.MemStore.Remove(ctx, keys)
}

func (s *crashStore) SetMeta(ctx context.Context, name string, at time.Time, n int64) error {
	if err := s.write(); err != nil {
		return err
	}
	return s.MemStore.SetMeta(ctx, name, at, n)
}

// A run's end is never lost when the agent is killed while it records
// it: whichever of its writes the process dies after, the restarted agent
// has a final result of the run in its outbox (the server did not
// acknowledge any: it was down), and does not run it again. (The demo of
// examples/httptransport lost the result of a run killed between storing
// the task without its run and queueing the result.)
func TestRunEndSurvivesAKillBetweenItsWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := manualDef(restart.Default())
	startTick := func(t *testing.T, a *agent.Agent, clk *clock.Mock) {
		start(a, m, 7)
		tick(t, a, clk, time.Minute)
	}
	for _, c := range []struct {
		name   string
		appOff bool // the application is not running
		// before runs before the kill is armed, end after.
		before func(t *testing.T, a *agent.Agent, clk *clock.Mock)
		end    func(t *testing.T, a *agent.Agent, clk *clock.Mock, x *slowExec)
		starts int // executor starts before the kill
		want   transport.State
		// again is what the server sends again to the restarted agent
		// (nil: the start).
		again func(a *agent.Agent)
	}{
		{name: "completed", before: startTick, end: func(_ *testing.T, _ *agent.Agent, _ *clock.Mock, x *slowExec) {
			x.mu.Lock()
			done := x.done[7]
			x.mu.Unlock()
			done(agent.Outcome{State: transport.StateCompleted})
		}, starts: 1, want: transport.StateCompleted},
		{name: "stopped by the server", before: startTick, end: func(_ *testing.T, a *agent.Agent, _ *clock.Mock, _ *slowExec) { stopRun(a, "m", 7) },
			starts: 1, want: transport.StateStopped},
		{name: "stopped before it started", before: func(t *testing.T, a *agent.Agent, clk *clock.Mock) {
			a.Handle(ctx, transport.Message{Kind: transport.Deliver, Definition: m})
			tick(t, a, clk, time.Minute)
		}, end: func(_ *testing.T, a *agent.Agent, _ *clock.Mock, _ *slowExec) { stopRun(a, "m", 7) }, want: transport.StateStopped,
			// The server dropped the start and resends StopRun until the
			// device reports a final state.
			again: func(a *agent.Agent) { stopRun(a, "m", 7) }},
		{name: "application not running", appOff: true, before: func(*testing.T, *agent.Agent, *clock.Mock) {},
			end: func(_ *testing.T, a *agent.Agent, _ *clock.Mock, _ *slowExec) { start(a, m, 7) }, want: transport.StateAppNotRunning},
	} {
		// The writes the end makes, counted on a run that is not killed.
		total := -1
		for n := 0; total < 0 || n <= total; n++ {
			clk := clock.NewMock()
			clk.Set(t0)
			mem := agent.NewMemStore()
			st := &crashStore{MemStore: mem}
			x := &slowExec{}
			var ex agent.Executor = x
			if c.appOff {
				ex = appOffExec{x}
			}
			a, err := agent.New(ctx, agent.Config{Device: "d1", Store: st, Executor: ex, Clock: clk})
			if err != nil {
				t.Fatal(err)
			}
			a.Attach(&endpoint{down: true}) // the server is down: nothing is acknowledged
			c.before(t, a, clk)
			if len(x.starts) != c.starts {
				t.Fatalf("%s: starts %v, want %d", c.name, x.starts, c.starts)
			}
			if total < 0 {
				st.arm(1 << 30)
			} else {
				st.arm(n)
			}
			c.end(t, a, clk, x)
			if err := a.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			if total < 0 {
				total, n = st.writes, -1
				if total == 0 {
					t.Fatalf("%s: the end of the run wrote nothing", c.name)
				}
				continue
			}
			// Killed after n of the end's writes; a new agent on the
			// same store.
			x2 := &slowExec{}
			ex = x2
			if c.appOff {
				ex = appOffExec{x2}
			}
			a2, err := agent.New(ctx, agent.Config{Device: "d1", Store: mem, Executor: ex, Clock: clk})
			if err != nil {
				t.Fatal(err)
			}
			a2.Attach(&endpoint{down: true})
			if c.again != nil {
				c.again(a2)
			} else {
				start(a2, m, 7) // the server resends the start
			}
			tick(t, a2, clk, time.Minute)
			if !c.appOff && len(x2.starts) != 0 {
				t.Errorf("%s, killed after %d of %d writes: run 7 started again after the restart", c.name, n, total)
			}
			ms, err := mem.Outbox(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var finals []transport.State
			for _, m := range ms {
				for _, r := range m.Results {
					if r.RunID == 7 && transport.State(r.State).Final() {
						finals = append(finals, transport.State(r.State))
					}
				}
			}
			// Killed before the end was recorded, the restarted agent
			// reports the run failed (it ended with the agent); after,
			// the recorded end goes out.
			if len(finals) != 1 || (finals[0] != c.want && finals[0] != transport.StateFailed) {
				t.Errorf("%s, killed after %d of %d writes: final results of run 7 in the outbox %v, want one (%s or failed)", c.name, n, total, finals, c.want)
			}
		}
	}
}

// appOffExec is a slowExec whose application is not running.
type appOffExec struct{ *slowExec }

func (appOffExec) AppRunning(context.Context, string) bool { return false }

// A scheduled activation is never lost nor run twice when the agent is
// killed while it starts the run: whichever of the activation's writes
// the process dies after, the agent restarted a minute later has exactly
// one final result of the activation in its outbox (the run's end, failed
// when it was executing when the agent died, or missed when its start was
// not recorded), and starts it at most once, only when no earlier start
// of it was recorded.
func TestScheduledStartSurvivesAKillBetweenItsWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	act := t0.Add(10 * time.Minute)
	run := transport.RunID(act, transport.Scheduled)
	for _, c := range []struct {
		name      string
		appOff    bool
		runMissed bool
	}{{"completed", false, false}, {"completed, runs missed tasks", false, true}, {"application not running", true, false}} {
		total := -1
		for n := 0; total < 0 || n <= total; n++ {
			clk := clock.NewMock()
			clk.Set(t0)
			mem := agent.NewMemStore()
			st := &crashStore{MemStore: mem}
			x := &exec{running: !c.appOff, out: agent.Outcome{State: transport.StateCompleted}}
			a, err := agent.New(ctx, agent.Config{Device: "d1", Store: st, Executor: x, Clock: clk})
			if err != nil {
				t.Fatal(err)
			}
			a.Attach(&endpoint{down: true}) // nothing is acknowledged
			d := def("p")
			d.Task.Schedule = schedule.Default(schedule.EveryMinutes, act, time.UTC)
			d.Task.Schedule.Every = 60
			d.Task.Schedule.RunMissed = c.runMissed
			d.LastManual = nil
			a.Handle(ctx, transport.Message{Kind: transport.Deliver, Definition: &d})
			tick(t, a, clk, 9*time.Minute)
			clk.Set(act)
			if total < 0 {
				st.arm(1 << 30)
			} else {
				st.arm(n)
			}
			if err := a.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			if total < 0 {
				total, n = st.writes, -1
				if total == 0 {
					t.Fatalf("%s: the activation wrote nothing", c.name)
				}
				continue
			}
			// Killed after n of the activation's writes; a new agent on
			// the same store a minute later.
			clk.Set(act.Add(time.Minute))
			x2 := &exec{running: !c.appOff, out: agent.Outcome{State: transport.StateCompleted}}
			a2, err := agent.New(ctx, agent.Config{Device: "d1", Store: mem, Executor: x2, Clock: clk})
			if err != nil {
				t.Fatal(err)
			}
			a2.Attach(&endpoint{down: true})
			if err := a2.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			ms, err := mem.Outbox(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var finals []transport.State
			for _, m := range ms {
				for _, r := range m.Results {
					if r.RunID == run && transport.State(r.State).Final() {
						finals = append(finals, transport.State(r.State))
					}
				}
			}
			if len(finals) != 1 {
				t.Errorf("%s, killed after %d of %d writes: final results of the activation in the outbox %v, want one", c.name, n, total, finals)
			}
			if x2.starts > 1 || x2.starts == 1 && len(finals) == 1 && finals[0] != transport.StateCompleted {
				t.Errorf("%s, killed after %d of %d writes: the restarted agent started the activation %d times (finals %v)", c.name, n, total, x2.starts, finals)
			}
		}
	}
}
