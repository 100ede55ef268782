package agent_test

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

type printExec struct{ zone *time.Location }

func (printExec) AppRunning(context.Context, string) bool { return true }
func (p printExec) Start(_ context.Context, r agent.Run, done func(agent.Outcome)) error {
	fmt.Println("run", r.TaskID, "at", r.At.In(p.zone).Format("Mon 15:04 MST"))
	done(agent.Outcome{State: transport.StateCompleted})
	return nil
}
func (printExec) Stop(context.Context, string, int64) error { return nil }

// server stands for the channel to the server: it prints each message
// once (the server de-duplicates by key) and keeps the keys to
// acknowledge.
type server struct{ keys []string }

func (s *server) Send(_ context.Context, m transport.Message) error {
	if m.Kind != transport.Results {
		return nil
	}
	for i, r := range m.Results {
		key := m.Merged[i] // results are sent merged, one key each
		if slices.Contains(s.keys, key) {
			continue // a resend: not acknowledged yet
		}
		s.keys = append(s.keys, key)
		fmt.Println("  report", r.State)
	}
	return nil
}

// An agent runs a delivered task on device-local time and reports
// through its outbox.
func Example() {
	ctx := context.Background()
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	a, err := agent.New(ctx, agent.Config{Device: "pc-1", Store: agent.NewMemStore(), Executor: printExec{tokyo}, Location: tokyo, Clock: clk, Heartbeat: 24 * time.Hour})
	if err != nil {
		panic(err)
	}
	srv := &server{}
	a.Attach(srv)
	s := schedule.Default(schedule.Weekly, clk.Now(), tokyo)
	s.Weekdays = schedule.NewWeekdays(time.Tuesday)
	s.Time = schedule.Clock(9, 0, 0)
	a.Handle(ctx, transport.Message{Kind: transport.Deliver, Definition: &transport.Definition{
		Task:  transport.TaskSpec{ID: "scan", Application: "ES", Type: "scan", Scope: transport.ScopeSpec{Kind: "group"}, Schedule: s, Revision: 1, SettingsRevision: 1},
		Since: clk.Now(),
	}})
	for range 48 {
		clk.Add(time.Hour)
		_ = a.Tick(ctx)
	}
	fmt.Println("waiting for acknowledgement:", a.OutboxLen(ctx))
	a.Handle(ctx, transport.Message{Kind: transport.Ack, Acks: srv.keys})
	fmt.Println("after the server's ack:", a.OutboxLen(ctx))
	// Output:
	// run scan at Tue 09:00 JST
	//   report running
	//   report completed
	// waiting for acknowledgement: 2
	// after the server's ack: 0
}
