package agent_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

type eventLog struct {
	mu      sync.Mutex
	entries []agent.LogEntry
}

func (l *eventLog) Write(_ context.Context, e agent.LogEntry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, e)
	return nil
}

// "Store in the OS event log on device": events of a run go to the
// device's event log when the task asks for it, as its history level says.
func TestTaskEventsGoToTheDeviceEventLogWhenEnabled(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		n      transport.NotificationsSpec
		states []transport.State
	}{
		{"off (the default)", transport.NotificationsSpec{}, nil},
		{"on, progress events", transport.NotificationsSpec{DeviceEventLog: true}, []transport.State{transport.StateRunning, transport.StateFailed}},
		{"on, results only", transport.NotificationsSpec{DeviceEventLog: true, History: transport.HistoryResults}, []transport.State{transport.StateFailed}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			clk := clock.NewMock()
			clk.Set(t0)
			log := &eventLog{}
			x := &exec{out: agent.Outcome{State: transport.StateFailed, Message: "disk unreadable"}, running: true}
			a, err := agent.New(context.Background(), agent.Config{Device: "d1", Store: agent.NewMemStore(), Executor: x, Clock: clk, EventLog: log})
			if err != nil {
				t.Fatal(err)
			}
			a.Attach(&endpoint{})
			d := manualDef(restart.Default())
			d.Task.Notifications = c.n
			start(a, d, 7)
			for range 3 {
				if err := a.Tick(context.Background()); err != nil {
					t.Fatal(err)
				}
				clk.Add(time.Minute)
			}
			log.mu.Lock()
			defer log.mu.Unlock()
			if len(log.entries) != len(c.states) {
				t.Fatalf("event log has %d entries, want %d: %+v", len(log.entries), len(c.states), log.entries)
			}
			for i, e := range log.entries {
				if e.State != c.states[i] || e.RunID != 7 || e.TaskID != d.Task.ID {
					t.Fatalf("entry %d = %+v, want state %s of run 7", i, e, c.states[i])
				}
			}
			if n := len(log.entries); n > 0 {
				last := log.entries[n-1]
				if last.Severity != transport.SeverityError || last.Level != transport.EventResult || last.Message != "disk unreadable" {
					t.Fatalf("final entry = %+v", last)
				}
			}
		})
	}
}
