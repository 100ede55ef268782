package engine_test

import (
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

// The 25-hour fallback ("no new updates for 25 hours: run every hour until
// new updates are detected") applies to update tasks for device
// selections too: the server fires them hourly on the selection's
// connected devices.
func TestNoNewUpdatesFor25HoursRunsSelectionUpdateTasksEveryHour(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, nil)
	upd := b.create(t, task.Task{Type: "update", Scope: winSelection(), Schedule: sched(schedule.OnUpdates, nil)})
	b.step(t, 24*time.Hour+50*time.Minute)
	for _, d := range []scope.DeviceID{"d00000", "d00001"} {
		if got := len(b.sim.Exec.Runs(upd.ID, d)); got != 0 {
			t.Fatalf("%s: %d runs before 25 h", d, got)
		}
	}
	b.step(t, 3*time.Hour+10*time.Minute) // 25 h, 26 h, 27 h, 28 h
	for _, d := range []scope.DeviceID{"d00000", "d00001"} {
		if got := len(b.sim.Exec.Runs(upd.ID, d)); got != 4 {
			t.Fatalf("%s: %d runs by 28 h, want 4 (hourly from 25 h)", d, got)
		}
	}
	must(t, b.sim.Server.UpdatesDownloaded(b.ctx, "repo-2"))
	b.step(t, 10*time.Minute) // the download's run
	b.step(t, 5*time.Hour)    // no hourly runs after updates were detected
	for _, d := range []scope.DeviceID{"d00000", "d00001"} {
		if got := len(b.sim.Exec.Runs(upd.ID, d)); got != 5 {
			t.Fatalf("%s: %d runs, want 5", d, got)
		}
	}
}

// "... also runs these tasks every hour if there is no connection between
// the managed device and the distribution point": for a selection's update
// task, on the device whose distribution point is unreachable (only).
func TestDistributionPointUnreachableRunsSelectionUpdateTasksEveryHour(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, nil)
	upd := b.create(t, task.Task{Type: "update", Scope: winSelection(), Schedule: sched(schedule.OnUpdates, nil)})
	must(t, b.sim.Server.UpdatesDownloaded(b.ctx, "repo-1"))
	b.step(t, 10*time.Minute)
	b.sim.Agent("d00000").SetDistributionPointReachable(false)
	b.step(t, 3*time.Hour)
	if got := len(b.sim.Exec.Runs(upd.ID, "d00000")); got != 1+3 {
		t.Fatalf("unreachable: %d runs in 3 h, want 1 + 3", got)
	}
	if got := len(b.sim.Exec.Runs(upd.ID, "d00001")); got != 1 {
		t.Fatalf("reachable: %d runs, want the download's 1", got)
	}
	b.sim.Agent("d00000").SetDistributionPointReachable(true)
	b.step(t, 3*time.Hour)
	if got := len(b.sim.Exec.Runs(upd.ID, "d00000")); got != 4 {
		t.Fatalf("%d runs, want no more once reachable", got)
	}
}
