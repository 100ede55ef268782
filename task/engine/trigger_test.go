package engine_test

import (
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/inproc"
)

// "On completing another task: The current task starts after another task
// completes. This parameter only works if both tasks are assigned to the
// same devices", with the chosen status (Completed successfully or
// Failed).
func TestOnCompletingAnotherTaskRunsWhereTriggerEndedWithStatusInBothScopes(t *testing.T) {
	t.Parallel()
	// Devices d00000..d00023; g-0 holds d00000, d00012. The trigger fails
	// on d00000 and completes elsewhere.
	b := setup(t, 24, func(c *enginetest.Config) {
		c.Behavior = func(r agent.Run, d scope.DeviceID) enginetest.Behavior {
			if d == "d00000" && r.Type == "virus_scan" {
				return enginetest.Behavior{State: task.Failed}
			}
			return enginetest.Behavior{}
		}
	})
	trig := b.create(t, task.Task{Name: "scan", Scope: groupScope("g-all")})
	onFail := b.create(t, task.Task{Name: "after fail", Type: "update", Scope: groupScope("g-0"), Schedule: sched(schedule.OnTaskCompletion, func(s *schedule.Schedule) {
		s.TaskID, s.Status = trig.ID, schedule.Failed
	})})
	onOK := b.create(t, task.Task{Name: "after ok", Type: "update", Scope: groupScope("g-0"), Schedule: sched(schedule.OnTaskCompletion, func(s *schedule.Schedule) {
		s.TaskID, s.Status = trig.ID, schedule.Completed
	})})
	_, err := b.sim.Manager.Start(b.ctx, task.System, trig.ID)
	must(t, err)
	b.step(t, 30*time.Minute)
	for _, c := range []struct {
		task   string
		device scope.DeviceID
		want   int
	}{
		{onFail.ID, "d00000", 1}, {onFail.ID, "d00012", 0}, {onFail.ID, "d00001", 0},
		{onOK.ID, "d00000", 0}, {onOK.ID, "d00012", 1}, {onOK.ID, "d00001", 0}, // d00001 is not in g-0
	} {
		if got := len(b.sim.Exec.Runs(c.task, c.device)); got != c.want {
			t.Errorf("task %s on %s: %d runs, want %d", c.task, c.device, got, c.want)
		}
	}
}

// "On virus outbreak: The task runs after a Virus outbreak event occurs",
// for the selected application types only.
func TestOnVirusOutbreakStartsTasksWhoseAppTypesMatch(t *testing.T) {
	t.Parallel()
	b := setup(t, 4, nil)
	mail := b.create(t, task.Task{Name: "mail", Scope: groupScope("g-all"), Schedule: sched(schedule.OnVirusOutbreak, func(s *schedule.Schedule) { s.AppTypes = schedule.MailSystems })})
	all := b.create(t, task.Task{Name: "all", Scope: groupScope("g-all"), Schedule: sched(schedule.OnVirusOutbreak, nil)})
	sel := b.create(t, task.Task{Name: "sel", Scope: winSelection(), Schedule: sched(schedule.OnVirusOutbreak, func(s *schedule.Schedule) { s.AppTypes = schedule.WorkstationsFileServers })})
	must(t, b.sim.Agent("d00001").ReportVirusOutbreak(b.ctx, "o1", schedule.WorkstationsFileServers))
	b.step(t, 20*time.Minute)
	for i := range 4 {
		d := scope.DeviceID(fmtID(i))
		if got := len(b.sim.Exec.Runs(mail.ID, d)); got != 0 {
			t.Errorf("mail-systems task ran %d times on %s", got, d)
		}
		if got := len(b.sim.Exec.Runs(all.ID, d)); got != 1 {
			t.Errorf("all-types task: %d runs on %s, want 1", got, d)
		}
		if got := len(b.sim.Exec.Runs(sel.ID, d)); got != 1 {
			t.Errorf("selection task: %d runs on %s, want 1", got, d)
		}
	}
}

// "When new updates are downloaded to the distribution point
// repositories, ... runs all tasks that have this schedule."
func TestUpdatesDownloadedStartsAllSuchTasks(t *testing.T) {
	t.Parallel()
	b := setup(t, 4, nil)
	upd := b.create(t, task.Task{Type: "update", Scope: groupScope("g-all"), Schedule: sched(schedule.OnUpdates, nil)})
	b.step(t, time.Hour)
	must(t, b.sim.Server.UpdatesDownloaded(b.ctx, "repo-1"))
	must(t, b.sim.Server.UpdatesDownloaded(b.ctx, "repo-1")) // the same download reported twice
	b.step(t, 10*time.Minute)
	for i := range 4 {
		if got := len(b.sim.Exec.Runs(upd.ID, scope.DeviceID(fmtID(i)))); got != 1 {
			t.Errorf("device %d: %d runs, want 1", i, got)
		}
	}
}

// "If Network Agent on a managed device detects no new updates for 25
// hours or longer, then ... runs on this device all tasks that have this
// schedule. These tasks are run every hour until new updates are
// detected."
func TestNoNewUpdatesFor25HoursRunsUpdateTasksEveryHour(t *testing.T) {
	t.Parallel()
	b := setup(t, 1, nil)
	upd := b.create(t, task.Task{Type: "update", Scope: groupScope("g-all"), Schedule: sched(schedule.OnUpdates, nil)})
	b.step(t, 24*time.Hour+50*time.Minute)
	if got := len(b.sim.Exec.Runs(upd.ID, "d00000")); got != 0 {
		t.Fatalf("%d runs before 25 h", got)
	}
	b.step(t, 3*time.Hour+10*time.Minute) // 25 h, 26 h, 27 h, 28 h
	if got := len(b.sim.Exec.Runs(upd.ID, "d00000")); got != 4 {
		t.Fatalf("%d runs by 28 h, want 4 (hourly from 25 h)", got)
	}
	must(t, b.sim.Server.UpdatesDownloaded(b.ctx, "repo-2"))
	b.step(t, 10*time.Minute) // the download's run
	b.step(t, 5*time.Hour)    // no hourly runs after updates were detected
	if got := len(b.sim.Exec.Runs(upd.ID, "d00000")); got != 5 {
		t.Fatalf("%d runs, want 5", got)
	}
}

// "... also runs these tasks every hour if there is no connection between
// the managed device and the distribution point."
func TestDistributionPointUnreachableRunsUpdateTasksEveryHour(t *testing.T) {
	t.Parallel()
	b := setup(t, 1, nil)
	upd := b.create(t, task.Task{Type: "update", Scope: groupScope("g-all"), Schedule: sched(schedule.OnUpdates, nil)})
	b.sim.Agent("d00000").SetDistributionPointReachable(false)
	b.step(t, 3*time.Hour)
	if got := len(b.sim.Exec.Runs(upd.ID, "d00000")); got != 3 {
		t.Fatalf("%d runs in 3 h, want 3", got)
	}
	b.sim.Agent("d00000").SetDistributionPointReachable(true)
	b.step(t, 3*time.Hour)
	if got := len(b.sim.Exec.Runs(upd.ID, "d00000")); got != 3 {
		t.Fatalf("%d runs, want no more once reachable", got)
	}
}

// "Use automatically randomized delay for task starts within an interval
// of": each device starts at its deterministic offset in the interval.
func TestRandomizedDelaySpreadsStartsOverTheInterval(t *testing.T) {
	t.Parallel()
	b := setup(t, 12, nil)
	s := sched(schedule.EveryHours, func(s *schedule.Schedule) {
		s.Every = 24
		s.Start = t0.Add(time.Hour)
		s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayInterval, IntervalMinutes: 120}
	})
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: s})
	b.stepFine(t, 4*time.Hour)
	distinct := map[time.Time]bool{}
	for i := range 12 {
		d := scope.DeviceID(fmtID(i))
		runs := b.sim.Exec.Runs(tk.ID, d)
		if len(runs) != 1 {
			t.Fatalf("%s: %d runs", d, len(runs))
		}
		off := schedule.RandomOffset(2*time.Hour, tk.ID, string(d), tk.SettingsRevision)
		due := t0.Add(time.Hour + off)
		if runs[0].StartedAt.Before(due) || runs[0].StartedAt.Sub(due) >= time.Minute {
			t.Errorf("%s started %s, want at its offset %s", d, runs[0].StartedAt, due)
		}
		distinct[runs[0].StartedAt] = true
	}
	if len(distinct) < 6 {
		t.Errorf("starts not spread: %d distinct minutes", len(distinct))
	}
}

// "Turn on devices by using the Wake-on-LAN function before starting the
// task": the wake request goes out the chosen minutes before the start.
func TestWakeOnLANBeforeStart(t *testing.T) {
	t.Parallel()
	var wakes []time.Time
	var b *bundle
	b = setup(t, 1, func(c *enginetest.Config) {
		c.Faults.Filter = func(m transport.Message, toServer bool) inproc.Fate {
			if m.Kind == transport.Wake {
				wakes = append(wakes, b.sim.Clock.Now())
			}
			return inproc.Pass
		}
	})
	s := sched(schedule.Once, func(s *schedule.Schedule) {
		s.At = t0.Add(time.Hour)
		s.WakeOnLAN = schedule.Limit{Enabled: true, Minutes: 10}
	})
	tk := b.create(t, task.Task{Scope: winSelection(), Schedule: s})
	b.stepFine(t, 2*time.Hour)
	if len(wakes) != 1 || !wakes[0].Equal(t0.Add(50*time.Minute)) {
		t.Errorf("wake requests at %v, want one at 00:50", wakes)
	}
	if got := len(b.sim.Exec.Runs(tk.ID, "d00000")); got != 1 {
		t.Errorf("%d runs, want 1", got)
	}
}

// "Shut down the devices after completing the task."
func TestShutDownDevicesAfterCompletingTheTask(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, nil)
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, func(s *schedule.Schedule) { s.ShutdownAfter = true })})
	plain := b.create(t, task.Task{Scope: groupScope("g-all")})
	_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	_, err = b.sim.Manager.Start(b.ctx, task.System, plain.ID)
	must(t, err)
	b.step(t, 10*time.Minute)
	if got := b.sim.Shutdowns("d00000"); got != 1 {
		t.Errorf("%d shutdowns, want 1 (only after the task that asks for it)", got)
	}
}

// "A task is started on a device only if the application for which the
// task was created is running."
func TestTaskStartsOnlyWhereTheApplicationIsRunning(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, nil)
	b.sim.Exec.SetAppRunning("d00001", false)
	tk := b.create(t, task.Task{Scope: groupScope("g-all")})
	_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 10*time.Minute)
	if got := len(b.sim.Exec.Runs(tk.ID, "d00001")); got != 0 {
		t.Errorf("ran %d times where the application is not running", got)
	}
	if st := b.result(t, tk.ID, "d00001").State; st != task.AppNotRunning {
		t.Errorf("state %s, want application_not_running", st)
	}
	if st := b.result(t, tk.ID, "d00000").State; st != task.Completed {
		t.Errorf("state %s, want completed", st)
	}
}

// Wake-on-LAN for a task the devices run: each device is woken the chosen
// minutes before its own local start.
func TestWakeOnLANBeforeDeviceLocalStart(t *testing.T) {
	t.Parallel()
	type wake struct {
		d  scope.DeviceID
		at time.Time
	}
	var wakes []wake
	var b *bundle
	b = setup(t, 3, func(c *enginetest.Config) {
		c.Faults.Filter = func(m transport.Message, toServer bool) inproc.Fate {
			if m.Kind == transport.Wake {
				wakes = append(wakes, wake{m.Device, b.sim.Clock.Now()})
			}
			return inproc.Pass
		}
	})
	s := sched(schedule.EveryDays, func(s *schedule.Schedule) {
		s.Time = schedule.Clock(6, 0, 0)
		s.StartDate = schedule.DateOf(t0)
		s.WakeOnLAN = schedule.Limit{Enabled: true, Minutes: 15}
	})
	b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: s})
	b.stepFine(t, 30*time.Hour)
	got := map[scope.DeviceID]int{}
	for _, w := range wakes {
		l := loc(t, zones[map[scope.DeviceID]int{"d00000": 0, "d00001": 1, "d00002": 2}[w.d]])
		if lt := w.at.In(l); lt.Hour() != 5 || lt.Minute() != 45 {
			t.Errorf("%s woken at %s local, want 05:45", w.d, lt)
		}
		got[w.d]++
	}
	if len(got) != 3 {
		t.Errorf("woken devices %v, want all three", got)
	}
}

// Deleting a task withdraws it from its devices: no more runs.
func TestDeletedTaskIsWithdrawnFromDevices(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, nil)
	s := sched(schedule.EveryHours, func(s *schedule.Schedule) { s.Every = 1; s.Start = t0.Add(30 * time.Minute) })
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: s})
	b.step(t, time.Hour)
	must(t, b.sim.Manager.Delete(b.ctx, task.System, tk.ID, 0))
	b.step(t, 3*time.Hour)
	for i := range 2 {
		d := scope.DeviceID(fmtID(i))
		if got := len(b.sim.Exec.Runs(tk.ID, d)); got != 1 {
			t.Errorf("%s: %d runs, want 1 (none after the delete)", d, got)
		}
		if n := len(b.sim.Agent(d).Tasks()); n != 0 {
			t.Errorf("%s still holds %d tasks", d, n)
		}
	}
}
