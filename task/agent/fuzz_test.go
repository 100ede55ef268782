package agent_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

// FuzzHandle feeds the agent arbitrary sequences of server messages (the
// agent's outside input) and checks that it never panics, never runs a
// (task, run id) twice, and keeps its outbox consistent.
func FuzzHandle(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{2, 2, 2, 3, 1, 0, 2, 9})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 512 {
			return
		}
		x := &countingExec{runs: map[string]int{}}
		clk := newClock()
		a, err := agent.New(context.Background(), agent.Config{Device: "d1", Store: agent.NewMemStore(), Executor: x, Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		ep := &endpoint{}
		a.Attach(ep)
		ctx := context.Background()
		kinds := []transport.Kind{transport.Deliver, transport.Withdraw, transport.StartRun, transport.StopRun, transport.Sync, transport.Ack, transport.Wake, transport.Shutdown}
		for i, op := range ops {
			d := def("t" + string(rune('a'+op%3)))
			d.Task.Schedule = schedule.Default(schedule.EveryMinutes, t0, time.UTC)
			d.Task.Schedule.Every = 1 + int(op%7)
			d.Task.Restart = restart.Default()
			d.Task.Revision = int64(op % 4)
			m := transport.Message{Kind: kinds[int(op>>3)%len(kinds)], Device: "d1", TaskID: d.Task.ID, Definition: &d,
				Start: &transport.Start{TaskID: d.Task.ID, RunID: int64(op % 5), At: t0}, SyncInfo: &transport.SyncInfo{UpdatesGeneration: int64(i)},
				Acks: []string{"nope"}}
			if op%11 == 0 {
				m.Definition, m.Start, m.SyncInfo = nil, nil, nil
			}
			a.Handle(ctx, m)
			clk.add(time.Duration(op) * time.Second)
			if err := a.Tick(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for id, n := range x.runs {
			if n > 1 {
				t.Fatalf("run %s ran %d times", id, n)
			}
		}
	})
}

type countingExec struct{ runs map[string]int }

func (x *countingExec) AppRunning(context.Context, string) bool { return true }
func (x *countingExec) Start(_ context.Context, r agent.Run, done func(agent.Outcome)) error {
	x.runs[r.TaskID+"/"+strconv.FormatInt(r.RunID, 10)]++
	done(agent.Outcome{State: transport.StateCompleted})
	return nil
}
func (x *countingExec) Stop(context.Context, string, int64) error { return nil }
