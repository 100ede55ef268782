package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
)

// "Tasks whose scope is specified by using other methods are run on the
// local time of a device" — in 12 zones at once, across the European and
// North American DST transitions.
func TestGroupTaskRunsOnDeviceLocalTimeIn12ZonesAcrossDST(t *testing.T) {
	t.Parallel()
	b := setup(t, 24, nil)
	s := sched(schedule.Weekly, func(s *schedule.Schedule) {
		s.Weekdays = schedule.AllWeekdays
		s.Time = schedule.Clock(2, 30, 0) // inside the spring-forward gap in Berlin
	})
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: s})
	from := b.sim.Clock.Now()
	b.step(t, 14*24*time.Hour)
	to := b.sim.Clock.Now()
	for i := range 24 {
		d := scope.DeviceID(fmtID(i))
		l := loc(t, zones[i%len(zones)])
		runs := b.sim.Exec.Runs(tk.ID, d)
		want := expect(s, from, to, l)
		if len(runs) != want {
			t.Errorf("%s (%s): %d runs, want %d", d, l, len(runs), want)
		}
		for _, r := range runs {
			lt := r.At.In(l)
			if (lt.Hour() != 2 || lt.Minute() != 30) && (lt.Hour() != 3 || lt.Minute() != 0) || r.StartedAt.Sub(r.At) >= 10*time.Minute {
				t.Errorf("%s: run at %s local, want 02:30 (03:00 on the spring-forward day)", d, lt)
			}
		}
		if got := b.result(t, tk.ID, d).State; got != task.Completed {
			t.Errorf("%s: state %s, want completed", d, got)
		}
	}
}

func fmtID(i int) string { return "d" + pad5(i) }

func pad5(i int) string {
	s := []byte("00000")
	for p := 4; p >= 0 && i > 0; p-- {
		s[p] = byte('0' + i%10)
		i /= 10
	}
	return string(s)
}

func winSelection() scope.Scope {
	return scope.Scope{Kind: scope.Selection, Selection: `device.os.name.startsWith("Windows")`}
}

// "Tasks for device selections are always run on a schedule by the
// Administration Server. These tasks cannot be run on devices that lack
// connection to the Administration Server" and "are run on the local time
// of the Administration Server".
func TestSelectionTaskRunsOnServerLocalTimeOnlyOnConnectedDevices(t *testing.T) {
	t.Parallel()
	b := setup(t, 12, nil)
	s := sched(schedule.Weekly, func(s *schedule.Schedule) {
		s.Weekdays = schedule.AllWeekdays
		s.Time = schedule.Clock(10, 0, 0)
	})
	tk := b.create(t, task.Task{Scope: winSelection(), Schedule: s})
	b.sim.Disconnect("d00003")
	from := b.sim.Clock.Now()
	b.step(t, 3*24*time.Hour)
	berlin := loc(t, "Europe/Berlin")
	want := expect(s, from, b.sim.Clock.Now(), berlin)
	for i := range 12 {
		d := scope.DeviceID(fmtID(i))
		runs := b.sim.Exec.Runs(tk.ID, d)
		if d == "d00003" {
			if len(runs) != 0 {
				t.Errorf("disconnected device ran %d times", len(runs))
			}
			if st := b.result(t, tk.ID, d).State; st != task.Missed {
				t.Errorf("disconnected device: state %s, want missed", st)
			}
			continue
		}
		if len(runs) != want {
			t.Errorf("%s: %d runs, want %d", d, len(runs), want)
		}
		for _, r := range runs {
			if lt := r.At.In(berlin); lt.Hour() != 10 || lt.Minute() != 0 {
				t.Errorf("%s: activation %s, want 10:00 server time", d, lt)
			}
		}
	}
}

// "You can start a task manually at any time from the task list."
func TestStartTaskManually(t *testing.T) {
	t.Parallel()
	b := setup(t, 6, nil)
	tk := b.create(t, task.Task{Scope: groupScope("g-all")})
	run, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 10*time.Minute)
	for _, d := range run.Devices {
		if runs := b.sim.Exec.Runs(tk.ID, d); len(runs) != 1 || !runs[0].Manual {
			t.Errorf("%s: runs %+v, want one manual run", d, runs)
		}
		if st := b.result(t, tk.ID, d).State; st != task.Completed {
			t.Errorf("%s: state %s", d, st)
		}
	}
	if len(run.Devices) != 6 {
		t.Fatalf("run on %d devices, want 6", len(run.Devices))
	}
}

// "The selected task is immediately started for the selected devices. The
// scheduled start settings in the task are not changed."
func TestStartTaskForSelectedDevices(t *testing.T) {
	t.Parallel()
	b := setup(t, 6, nil)
	tk := b.create(t, task.Task{Scope: scope.Scope{Kind: scope.Devices, Devices: []scope.DeviceID{"d00000", "d00001", "d00002"}}})
	_, err := b.sim.Manager.StartFor(b.ctx, task.System, tk.ID, tk.Revision, []scope.DeviceID{"d00001", "d00004"})
	must(t, err)
	b.step(t, 10*time.Minute)
	for i := range 6 {
		d := scope.DeviceID(fmtID(i))
		want := 0
		if d == "d00001" || d == "d00004" {
			want = 1
		}
		if got := len(b.sim.Exec.Runs(tk.ID, d)); got != want {
			t.Errorf("%s: %d runs, want %d", d, got, want)
		}
	}
}

// "After the specified time period expires, the task is stopped
// automatically, whether it is completed or not" (failed by timeout).
func TestStopTaskWhenItRunsLongerThanMaxTime(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, func(c *enginetest.Config) {
		c.Behavior = func(agent.Run, scope.DeviceID) enginetest.Behavior {
			return enginetest.Behavior{Duration: 3 * time.Hour}
		}
	})
	s := sched(schedule.Manual, func(s *schedule.Schedule) { s.StopAfter = schedule.Limit{Enabled: true, Minutes: 60} })
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: s})
	_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 50*time.Minute)
	if st := b.result(t, tk.ID, "d00000").State; st != task.Running {
		t.Fatalf("after 50 min: %s, want running", st)
	}
	b.step(t, 20*time.Minute)
	r := b.result(t, tk.ID, "d00000")
	if r.State != task.FailedTimeout {
		t.Fatalf("after 70 min: %s, want failed_timeout", r.State)
	}
	if runs := b.sim.Exec.Runs(tk.ID, "d00000"); len(runs) != 1 || !runs[0].Stopped {
		t.Errorf("runs %+v, want one stopped run", runs)
	}
}

// "Stop": runs in progress are stopped and report stopped.
func TestStopTask(t *testing.T) {
	t.Parallel()
	b := setup(t, 3, func(c *enginetest.Config) {
		c.Behavior = func(agent.Run, scope.DeviceID) enginetest.Behavior {
			return enginetest.Behavior{Duration: 3 * time.Hour}
		}
	})
	tk := b.create(t, task.Task{Scope: groupScope("g-all")})
	_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 10*time.Minute)
	must(t, b.sim.Manager.Stop(b.ctx, task.System, tk.ID))
	b.step(t, 10*time.Minute)
	for i := range 3 {
		d := scope.DeviceID(fmtID(i))
		if st := b.result(t, tk.ID, d).State; st != task.Stopped {
			t.Errorf("%s: %s, want stopped", d, st)
		}
	}
}

// Suspend holds scheduled starts; resume restores them.
func TestSuspendAndResumeTask(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, nil)
	s := sched(schedule.EveryHours, func(s *schedule.Schedule) { s.Every = 1; s.Start = t0.Add(30 * time.Minute) })
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: s})
	b.step(t, 2*time.Hour) // 00:30, 01:30
	_, err := b.sim.Manager.Suspend(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 3*time.Hour) // 02:30, 03:30, 04:30 held
	_, err = b.sim.Manager.Resume(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 2*time.Hour) // 05:30, 06:30
	for i := range 2 {
		d := scope.DeviceID(fmtID(i))
		if got := len(b.sim.Exec.Runs(tk.ID, d)); got != 4 {
			t.Errorf("%s: %d runs, want 4 (none while suspended)", d, got)
		}
	}
}

// "Immediately: The task runs immediately after its settings are saved."
func TestImmediatelyRunsWhenSettingsAreSaved(t *testing.T) {
	t.Parallel()
	b := setup(t, 3, nil)
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: sched(schedule.Immediately, nil)})
	b.step(t, 10*time.Minute)
	for i := range 3 {
		if got := len(b.sim.Exec.Runs(tk.ID, scope.DeviceID(fmtID(i)))); got != 1 {
			t.Errorf("device %d: %d runs, want 1", i, got)
		}
	}
	// Saving changed settings runs it again; a suspend does not.
	tk.Description = "changed"
	tk, err := b.sim.Manager.Update(b.ctx, task.System, *tk)
	must(t, err)
	b.step(t, 10*time.Minute)
	_, err = b.sim.Manager.Suspend(b.ctx, task.System, tk.ID)
	must(t, err)
	_, err = b.sim.Manager.Resume(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 10*time.Minute)
	if got := len(b.sim.Exec.Runs(tk.ID, "d00000")); got != 2 {
		t.Errorf("%d runs after an edit and a suspend/resume, want 2", got)
	}
}

type notes struct{ list []task.Notification }

func (n *notes) Notify(_ context.Context, x task.Notification) error {
	n.list = append(n.list, x)
	return nil
}

// "Notify of errors only": results reach the Notifier through the task
// manager, once each, and statistics stay current.
func TestNotificationsAndStatistics(t *testing.T) {
	t.Parallel()
	n := &notes{}
	b := setup(t, 4, func(c *enginetest.Config) {
		c.Notifier = n
		c.Faults.Duplicate = 0.5
		c.Behavior = func(_ agent.Run, d scope.DeviceID) enginetest.Behavior {
			if d == "d00001" {
				return enginetest.Behavior{State: task.Failed, Message: "scan engine error"}
			}
			return enginetest.Behavior{}
		}
	})
	errorsOnly := b.create(t, task.Task{Scope: groupScope("g-all"), Notifications: task.Notifications{ErrorsOnly: true}})
	all := b.create(t, task.Task{Scope: groupScope("g-all")})
	for _, id := range []string{errorsOnly.ID, all.ID} {
		_, err := b.sim.Manager.Start(b.ctx, task.System, id)
		must(t, err)
	}
	b.step(t, 20*time.Minute)
	count := map[string]int{}
	for _, x := range n.list {
		count[x.TaskID]++
	}
	if count[errorsOnly.ID] != 1 || count[all.ID] != 4 {
		t.Errorf("notifications: errors-only task %d (want 1), all-results task %d (want 4)", count[errorsOnly.ID], count[all.ID])
	}
	st, err := b.sim.Manager.Statistics(b.ctx, task.System, all.ID)
	must(t, err)
	if st.ByState[task.Completed] != 3 || st.ByState[task.Failed] != 1 || st.PercentComplete != 100 {
		t.Errorf("statistics %+v", st)
	}
}

// DST fall-back in device zones: a daily 02:30 task (inside the repeated
// hour) runs exactly once on the fall-back day in Europe and in North
// America, and every other day once.
func TestDailyTaskRunsOnceOnFallBackDayInDeviceZones(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 10, 24, 0, 0, 0, 0, time.UTC) // Europe falls back on Oct 25, the US on Nov 1
	b := setup(t, 12, func(c *enginetest.Config) { c.Start = start })
	s := schedule.Default(schedule.EveryDays, start, time.UTC)
	s.Time = schedule.Clock(2, 30, 0)
	s.StartDate = schedule.DateOf(start)
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: s})
	b.step(t, 10*24*time.Hour)
	for i := range 12 {
		d := scope.DeviceID(fmtID(i))
		l := loc(t, zones[i%len(zones)])
		perDay := map[string]int{}
		for _, r := range b.sim.Exec.Runs(tk.ID, d) {
			perDay[r.At.In(l).Format("2006-01-02")]++
		}
		for day, n := range perDay {
			if n != 1 {
				t.Errorf("%s (%s): %d runs on %s", d, l, n, day)
			}
		}
		if want := expect(s, start, b.sim.Clock.Now(), l); len(b.sim.Exec.Runs(tk.ID, d)) != want {
			t.Errorf("%s (%s): %d runs, want %d", d, l, len(b.sim.Exec.Runs(tk.ID, d)), want)
		}
	}
}
