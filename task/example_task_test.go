package task_test

import (
	"context"
	"fmt"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
)

// A host registers its task types, creates a group task, starts it and
// reads the per-device results the devices report.
func Example() {
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC))

	// The host's device inventory: one group with two devices.
	inv := inmem.New()
	_ = inv.PutGroups(ctx, scope.AdminGroup{ID: "office", Name: "Office"})
	_ = inv.PutDevices(ctx,
		scope.Device{ID: "pc-1", GroupID: "office", Connected: true, Server: scope.ServerRef{ID: "main", Role: scope.Primary}},
		scope.Device{ID: "pc-2", GroupID: "office", Connected: true, Server: scope.ServerRef{ID: "main", Role: scope.Primary}},
	)

	// Task types are registered per application, with their settings.
	type ScanSettings struct {
		ScanArchives bool `json:"scan_archives"`
		MaxFileMB    int  `json:"max_file_mb" validate:"min=1,max=4096"`
	}
	reg := task.NewRegistry()
	_ = reg.Register(task.TaskType{Application: "Endpoint Security", Name: "virus_scan", Settings: ScanSettings{MaxFileMB: 100}})

	m, _ := task.New(task.Config{Store: memstore.New(), Registry: reg, Inventory: inv, Clock: clk})
	admin := task.Actor{ID: "admin"}

	scan := task.Task{
		Name: "Friday scan", Application: "Endpoint Security", Type: "virus_scan",
		Scope:    scope.Scope{Kind: scope.Group, Group: "office"},
		Schedule: schedule.Default(schedule.Weekly, clk.Now(), time.UTC), // Fridays 18:00
	}
	created, err := m.Create(ctx, admin, scan)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("created:", created.Name, created.Kind(), "revision", created.Revision)

	run, _ := m.Start(ctx, admin, created.ID)
	fmt.Println("run", run.ID, "started on", run.Devices)

	// The engine (or the host's device channel) records what devices report.
	_, _ = m.Runtime().RecordResults(ctx, []task.Result{
		{TaskID: created.ID, DeviceID: "pc-1", RunID: run.ID, Seq: 1, State: task.Completed, Progress: 100},
		{TaskID: created.ID, DeviceID: "pc-2", RunID: run.ID, Seq: 1, State: task.Failed, Message: "disk unreadable"},
	})
	st, _ := m.Statistics(ctx, admin, created.ID)
	fmt.Printf("completed %d, failed %d, %.0f%% done\n", st.ByState[task.Completed], st.ByState[task.Failed], st.PercentComplete)

	// A settings value out of range is a typed error naming the field.
	bad := scan
	bad.Name = "Broken scan"
	bad.Settings = ScanSettings{MaxFileMB: 0}
	_, err = m.Create(ctx, admin, bad)
	fmt.Println(err)

	// Output:
	// created: Friday scan group revision 1
	// run 1 started on [pc-1 pc-2]
	// completed 1, failed 1, 100% done
	// invalid settings.max_file_mb "0": must be at least 1
}
