package engine_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/inproc"
)

// dailyAt10 is a server-run schedule: every day at 10:00 server time.
func dailyAt10() schedule.Schedule {
	return sched(schedule.Weekly, func(s *schedule.Schedule) {
		s.Weekdays = schedule.AllWeekdays
		s.Time = schedule.Clock(10, 0, 0)
	})
}

func allEvents(t *testing.T, b *bundle, id string) []storage.EventRecord {
	t.Helper()
	evs, err := b.sim.Store.ListEvents(b.ctx, storage.ListEventsParams{TaskID: id, Limit: storage.MaxListLimit})
	must(t, err)
	return evs
}

// "Store task history in the server database" off: nothing of the task's
// history is written, not even by the engine (fired activations, stop
// orders), while the task still runs and stops.
func TestHistoryOffStoresNothingOfTheTask(t *testing.T) {
	t.Parallel()
	b := setup(t, 3, nil)
	tk := b.create(t, task.Task{Scope: winSelection(), Schedule: dailyAt10(), Notifications: task.Notifications{NoServerHistory: true}})
	b.step(t, 2*24*time.Hour)
	if runs := b.sim.Exec.Runs(tk.ID, "d00000"); len(runs) != 2 {
		t.Fatalf("d00000 ran %d times in two days, want 2", len(runs))
	}
	_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	must(t, b.sim.Manager.Stop(b.ctx, task.System, tk.ID))
	b.step(t, 30*time.Minute)
	if evs := allEvents(t, b, tk.ID); len(evs) != 0 {
		t.Fatalf("%d history events stored with history off, first %+v", len(evs), evs[0])
	}
	// The engine still remembers what it fired and the stop order.
	st, err := b.sim.Store.ListEngineState(b.ctx, storage.ListEngineStateParams{TaskID: tk.ID})
	must(t, err)
	kinds := map[string]int{}
	for _, r := range st {
		kinds[r.Kind]++
	}
	if kinds[storage.EngineStateFire] == 0 || kinds[storage.EngineStateStop] != 1 {
		t.Fatalf("engine state %v, want fire markers and one stop order", kinds)
	}
}

// "Save only task execution results": the engine's own events (fired
// activations) are not results and are not stored; the results are.
func TestHistoryResultsOnlyStoresOnlyResults(t *testing.T) {
	t.Parallel()
	b := setup(t, 3, nil)
	tk := b.create(t, task.Task{Scope: winSelection(), Schedule: dailyAt10(), Notifications: task.Notifications{History: task.HistoryResults}})
	b.step(t, 24*time.Hour)
	evs := allEvents(t, b, tk.ID)
	if len(evs) == 0 {
		t.Fatal("no result stored")
	}
	for _, e := range evs {
		if e.Level != string(task.EventResult) {
			t.Errorf("stored a %s event with history level results: %q", e.Level, e.Message)
		}
	}
}

// A device's event keyed like the engine's fire marker does not stop the
// activation from firing: engine state is out of devices' reach.
func TestDeviceEventCannotBlockAnActivation(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, nil)
	tk := b.create(t, task.Task{Scope: winSelection(), Schedule: dailyAt10(), Notifications: task.Notifications{History: task.HistoryAll}})
	act := time.Date(2026, 3, 23, 10, 0, 0, 0, loc(t, "Europe/Berlin"))
	key := fmt.Sprintf("fire/%d", transport.RunID(act, transport.Scheduled))
	b.sim.Server.Handle(b.ctx, transport.Message{Key: "hostile", Kind: transport.Events, Device: "d00001", Events: []transport.Event{{
		TaskID: tk.ID, Level: string(task.EventInfo), Severity: string(task.SeverityInfo), Message: "hello", Key: key,
	}}})
	if evs := allEvents(t, b, tk.ID); len(evs) != 1 || !strings.HasSuffix(evs[0].Key, "/"+key) {
		t.Fatalf("the device's event was not stored: %+v", evs)
	}
	b.step(t, 12*time.Hour)
	for _, d := range []scope.DeviceID{"d00000", "d00001"} {
		if runs := b.sim.Exec.Runs(tk.ID, d); len(runs) != 1 {
			t.Errorf("%s ran %d times, want 1 (the 10:00 activation)", d, len(runs))
		}
	}
}

// History retention does not erase a stop order: after the task's history
// is purged, a restarted server still stops the runs the order covers.
func TestStopOrderOutlivesHistoryRetention(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	lose := true
	b := setup(t, 1, func(cfg *enginetest.Config) {
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
	b.stepFine(t, 5*time.Minute) // every StopRun lost
	if _, err := b.sim.Store.PurgeEvents(b.ctx, storage.PurgeEventsParams{TaskID: tk.ID, Before: b.sim.Clock.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	must(t, b.sim.RestartServer(b.ctx))
	mu.Lock()
	lose = false
	mu.Unlock()
	b.stepFine(t, 5*time.Minute)
	if st := b.result(t, tk.ID, "d00000").State; st != task.Stopped {
		t.Fatalf("after a history purge and a restart: %s, want stopped", st)
	}
}

// Only the latest stop order is kept: a second stop replaces the first.
func TestOnlyTheLatestStopOrderIsKept(t *testing.T) {
	t.Parallel()
	b := setup(t, 1, nil)
	tk := b.create(t, task.Task{Scope: groupScope("g-all")})
	must(t, b.sim.Manager.Stop(b.ctx, task.System, tk.ID))
	b.step(t, time.Minute)
	must(t, b.sim.Manager.Stop(b.ctx, task.System, tk.ID))
	st, err := b.sim.Store.ListEngineState(b.ctx, storage.ListEngineStateParams{TaskID: tk.ID, Kind: storage.EngineStateStop})
	must(t, err)
	if len(st) != 1 || !st[0].At.Equal(b.sim.Clock.Now().UTC().Truncate(time.Microsecond)) {
		t.Fatalf("stop orders after a second stop: %+v, want the latest only", st)
	}
}
