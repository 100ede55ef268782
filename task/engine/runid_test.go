package engine_test

import (
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task"
)

// The run a manual start returns is the run the devices report: the
// Manager takes its id from the engine (task.RunPlanner).
func TestManualStartRunIDIsTheReportedRun(t *testing.T) {
	t.Parallel()
	b := setup(t, 3, nil)
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, nil)})
	run, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 30*time.Minute)
	for _, d := range run.Devices {
		r := b.result(t, tk.ID, d)
		if r.RunID != run.ID || r.State != task.Completed {
			t.Fatalf("device %s: result run %d state %s; Start returned run %d", d, r.RunID, r.State, run.ID)
		}
	}
	if len(run.Devices) != 3 {
		t.Fatalf("run started on %d devices, want 3", len(run.Devices))
	}
}
