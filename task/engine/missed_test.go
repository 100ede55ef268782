package engine_test

import (
	"context"
	"encoding/json"
	"strings"
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

// "If the task schedule is Manually, Once or Immediately, the task is
// started immediately after the device becomes visible on the network"
// (run missed tasks on), and "tasks run only on those client devices that
// are visible on the network" (off).
func TestRunMissedManualTaskStartsWhenDeviceBecomesVisible(t *testing.T) {
	t.Parallel()
	for _, runMissed := range []bool{true, false} {
		b := setup(t, 2, nil)
		tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, func(s *schedule.Schedule) { s.RunMissed = runMissed })})
		b.sim.Disconnect("d00001")
		_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
		must(t, err)
		b.step(t, 2*time.Hour)
		if got := len(b.sim.Exec.Runs(tk.ID, "d00001")); got != 0 {
			t.Fatalf("run missed %v: ran %d times while disconnected", runMissed, got)
		}
		b.sim.Reconnect("d00001")
		b.step(t, 20*time.Minute)
		want, wantState := 0, task.Missed
		if runMissed {
			want, wantState = 1, task.Completed
		}
		if got := len(b.sim.Exec.Runs(tk.ID, "d00001")); got != want {
			t.Errorf("run missed %v: %d runs after becoming visible, want %d", runMissed, got, want)
		}
		if st := b.result(t, tk.ID, "d00001").State; st != wantState {
			t.Errorf("run missed %v: state %s, want %s", runMissed, st, wantState)
		}
		if got := len(b.sim.Exec.Runs(tk.ID, "d00000")); got != 1 {
			t.Errorf("visible device: %d runs", got)
		}
	}
}

// "... or immediately after the device is included in the task scope."
func TestRunMissedOnceTaskStartsWhenDeviceJoinsTheScope(t *testing.T) {
	t.Parallel()
	b := setup(t, 3, nil)
	s := sched(schedule.Once, func(s *schedule.Schedule) { s.At = t0.Add(time.Hour); s.RunMissed = true })
	tk := b.create(t, task.Task{Scope: scope.Scope{Kind: scope.Devices, Devices: []scope.DeviceID{"d00000"}}, Schedule: s})
	b.step(t, 3*time.Hour)
	tk.Scope.Devices = []scope.DeviceID{"d00000", "d00002"}
	_, err := b.sim.Manager.Update(b.ctx, task.System, *tk)
	must(t, err)
	b.step(t, 20*time.Minute)
	for d, want := range map[scope.DeviceID]int{"d00000": 1, "d00002": 1, "d00001": 0} {
		if got := len(b.sim.Exec.Runs(tk.ID, d)); got != want {
			t.Errorf("%s: %d runs, want %d", d, got, want)
		}
	}
}

// "If this option is enabled, the system attempts to start the task the
// next time the Kaspersky application is run on the client device"; off,
// the device skips it and the miss is recorded.
func TestRunMissedScheduledTaskAfterDeviceWasTurnedOff(t *testing.T) {
	t.Parallel()
	for _, runMissed := range []bool{true, false} {
		b := setup(t, 1, nil)
		s := sched(schedule.Weekly, func(s *schedule.Schedule) {
			s.Weekdays = schedule.AllWeekdays
			s.Time = schedule.Clock(19, 0, 0)
			s.RunMissed = runMissed
		})
		tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: s})
		b.step(t, 20*time.Hour) // 19:00 on day 1 runs
		b.sim.PowerOff("d00000")
		b.step(t, 3*24*time.Hour) // three evenings missed
		must(t, b.sim.PowerOn(b.ctx, "d00000"))
		b.step(t, 20*time.Minute)
		want, wantState := 1, task.Missed
		if runMissed {
			want, wantState = 2, task.Completed
		}
		if got := len(b.sim.Exec.Runs(tk.ID, "d00000")); got != want {
			t.Errorf("run missed %v: %d runs, want %d (the missed evenings run once)", runMissed, got, want)
		}
		if st := b.result(t, tk.ID, "d00000").State; st != wantState {
			t.Errorf("run missed %v: state %s, want %s", runMissed, st, wantState)
		}
	}
}

// "Tasks whose scope is specified by using other methods are run directly
// on devices and therefore do not depend on the device connection": a
// device offline for days runs every activation, and the results reach
// storage when it reconnects.
func TestDeviceTaskRunsWhileOfflineAndReportsLater(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, nil)
	s := sched(schedule.EveryHours, func(s *schedule.Schedule) { s.Every = 6; s.Start = t0.Add(time.Hour) })
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: s})
	from := b.sim.Clock.Now()
	b.sim.Disconnect("d00001")
	b.step(t, 3*24*time.Hour)
	to := b.sim.Clock.Now()
	want := expect(s, from, to, time.UTC)
	if got := len(b.sim.Exec.Runs(tk.ID, "d00001")); got != want {
		t.Fatalf("offline device ran %d times, want %d", got, want)
	}
	if n := b.sim.Agent("d00001").OutboxLen(b.ctx); n == 0 {
		t.Fatal("offline results are not waiting in the outbox")
	}
	b.sim.Reconnect("d00001")
	b.step(t, 20*time.Minute)
	if n := b.sim.Agent("d00001").OutboxLen(b.ctx); n != 0 {
		t.Errorf("%d messages still in the outbox", n)
	}
	r := b.result(t, tk.ID, "d00001")
	if r.State != task.Completed {
		t.Errorf("state %s", r.State)
	}
	var last time.Time
	for a := range s.Between(from, to, time.UTC) {
		last = a
	}
	if !r.DueAt.Equal(last) {
		t.Errorf("result of run due %s, want the last activation %s", r.DueAt, last)
	}
}

// Administration Server tasks run on the server, on its local time.
func TestAdministrationServerTaskRunsOnTheServer(t *testing.T) {
	t.Parallel()
	b := setup(t, 1, nil)
	s := sched(schedule.EveryDays, func(s *schedule.Schedule) { s.Time = schedule.Clock(3, 0, 0) })
	tk := b.create(t, task.Task{Application: appServer, Type: "backup", Scope: scope.Scope{Kind: scope.Server}, Schedule: s})
	from := b.sim.Clock.Now()
	b.step(t, 7*24*time.Hour)
	berlin := loc(t, "Europe/Berlin")
	runs := b.sim.Exec.Runs(tk.ID, task.ServerDevice)
	if want := expect(s, from, b.sim.Clock.Now(), berlin); len(runs) != want {
		t.Fatalf("%d runs, want %d", len(runs), want)
	}
	for _, r := range runs {
		if lt := r.At.In(berlin); lt.Hour() != 3 {
			t.Errorf("run at %s, want 03:00 server time", lt)
		}
	}
}

// "If a local task has been modified simultaneously by the administrator
// and the user of a managed device, the changes made by the administrator
// will take effect."
func TestLocalTaskUserEditIsMergedWithAdministratorPriority(t *testing.T) {
	t.Parallel()
	b := setup(t, 1, nil)
	tk := b.create(t, task.Task{Scope: scope.Scope{Kind: scope.Local, Device: "d00000"}, Description: "v1"})
	defs := b.sim.Agent("d00000").Tasks()
	if len(defs) != 1 {
		t.Fatalf("device holds %d tasks", len(defs))
	}
	// The administrator changes the description; the user, from the old
	// revision, changes the description and the settings.
	admin := *tk
	admin.Description = "admin"
	_, err := b.sim.Manager.Update(b.ctx, task.System, admin)
	must(t, err)
	user := defs[0].Task
	user.Description = "user"
	user.Settings = json.RawMessage(`{"action":"report"}`)
	must(t, b.sim.Agent("d00000").EditLocalTask(b.ctx, "alice", user))
	b.step(t, 20*time.Minute)
	got, err := b.sim.Manager.Get(b.ctx, task.System, tk.ID)
	must(t, err)
	if got.Description != "admin" {
		t.Errorf("description %q, want the administrator's", got.Description)
	}
	if st, ok := got.Settings.(ScanSettings); !ok || st.Action != "report" {
		t.Errorf("settings %#v, want the user's non-conflicting change", got.Settings)
	}
	defs = b.sim.Agent("d00000").Tasks()
	if defs[0].Task.Revision != got.Revision {
		t.Errorf("device holds revision %d, want the merged %d", defs[0].Task.Revision, got.Revision)
	}
}

// "Store in the Administration Server database for (days)": a built-in
// server duty deletes older history.
func TestHistoryOlderThanRetentionIsPurgedByTheServer(t *testing.T) {
	t.Parallel()
	b := setup(t, 1, nil)
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Notifications: task.Notifications{RetentionDays: 1}})
	_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 10*time.Minute)
	count := func() int {
		evs, err := b.sim.Store.ListEvents(context.Background(), storage.ListEventsParams{TaskID: tk.ID, Limit: 1000})
		must(t, err)
		return len(evs)
	}
	if count() == 0 {
		t.Fatal("no history recorded")
	}
	b.step(t, 3*24*time.Hour)
	if n := count(); n != 0 {
		t.Errorf("%d events older than the 1-day retention remain", n)
	}
}

// "Application events related to execution of the task on all client
// devices ... are stored on the Administration Server": device events
// reach the history once, even when redelivered.
func TestDeviceEventsReachTheHistoryOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 1, func(c *enginetest.Config) { c.Faults = inproc.Faults{Duplicate: 1} })
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Notifications: task.Notifications{History: task.HistoryAll}})
	must(t, b.sim.Agent("d00000").ReportEvent(b.ctx, "e1", agent.Event{TaskID: tk.ID, Level: transport.EventInfo, Severity: transport.SeverityWarning, Message: "low disk space"}))
	b.step(t, 10*time.Minute)
	evs, err := b.sim.Manager.History(b.ctx, task.System, tk.ID, task.HistoryParams{Device: "d00000"})
	must(t, err)
	n := 0
	for _, e := range evs {
		if e.Message == "low disk space" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("event stored %d times, want 1", n)
	}
	if err := b.sim.Agent("d00000").ReportEvent(b.ctx, "e2", agent.Event{TaskID: "nope", Level: transport.EventInfo, Severity: transport.SeverityInfo}); err == nil {
		t.Error("event of an unknown task accepted")
	}
}

// A device not visible when a run starts is recorded missed with a
// message that says why.
func TestMissedMessageSaysTheDeviceWasNotVisible(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, nil)
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, nil)})
	b.sim.Disconnect("d00001")
	_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 10*time.Minute)
	r := b.result(t, tk.ID, "d00001")
	if r.State != task.Missed || !strings.Contains(r.Message, "not visible") {
		t.Fatalf("result %s %q, want missed saying the device was not visible", r.State, r.Message)
	}
}

// "If this option is enabled, the system attempts to start the task the
// next time the Kaspersky application is run on the client device": a
// device that comes back after missing the task, with the application
// not running yet, runs it once when the application runs (pending until
// then); without the option it is recorded missed.
func TestRunMissedWaitsForTheApplicationToRun(t *testing.T) {
	t.Parallel()
	for _, runMissed := range []bool{true, false} {
		b := setup(t, 1, nil)
		s := sched(schedule.Weekly, func(s *schedule.Schedule) {
			s.Weekdays = schedule.AllWeekdays
			s.Time = schedule.Clock(19, 0, 0)
			s.RunMissed = runMissed
		})
		tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: s})
		b.sim.PowerOff("d00000")
		b.step(t, 20*time.Hour) // 19:00 missed
		b.sim.Exec.SetAppRunning("d00000", false)
		must(t, b.sim.PowerOn(b.ctx, "d00000"))
		b.step(t, time.Hour)
		if got := len(b.sim.Exec.Runs(tk.ID, "d00000")); got != 0 {
			t.Fatalf("run missed %v: %d runs while the application is not running", runMissed, got)
		}
		wantWaiting := map[bool]task.State{true: task.Pending, false: task.Missed}[runMissed]
		if st := b.result(t, tk.ID, "d00000").State; st != wantWaiting {
			t.Errorf("run missed %v: state %s while the application is not running, want %s", runMissed, st, wantWaiting)
		}
		b.sim.Exec.SetAppRunning("d00000", true)
		b.step(t, 20*time.Minute)
		want, wantState := 0, task.Missed
		if runMissed {
			want, wantState = 1, task.Completed
		}
		if got := len(b.sim.Exec.Runs(tk.ID, "d00000")); got != want {
			t.Errorf("run missed %v: %d runs once the application runs, want %d", runMissed, got, want)
		}
		if st := b.result(t, tk.ID, "d00000").State; st != wantState {
			t.Errorf("run missed %v: state %s, want %s", runMissed, st, wantState)
		}
	}
}

// A Once start at the exact instant of saving runs on a device task, as
// on a selection task.
func TestOnceStartAtTheInstantOfSavingRuns(t *testing.T) {
	t.Parallel()
	for _, sc := range []scope.Scope{groupScope("g-all"), winSelection()} {
		b := setup(t, 2, nil)
		b.step(t, time.Hour)
		now := b.sim.Clock.Now()
		tk := b.create(t, task.Task{Scope: sc, Schedule: sched(schedule.Once, func(s *schedule.Schedule) { s.At = now })})
		b.step(t, 30*time.Minute)
		for _, d := range []scope.DeviceID{"d00000", "d00001"} {
			if got := len(b.sim.Exec.Runs(tk.ID, d)); got != 1 {
				t.Errorf("%s scope, %s: %d runs, want 1", sc.Kind, d, got)
			}
		}
	}
}
