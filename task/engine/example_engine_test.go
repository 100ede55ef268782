package engine_test

import (
	"context"
	"fmt"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
)

// A week of a fleet in three zones, simulated in a moment: a group task
// runs every weekday at 09:00 device-local time, a device-selection task
// every day at 12:00 server time (only on connected devices).
func Example() {
	ctx := context.Background()
	reg := task.NewRegistry()
	_ = reg.Register(task.TaskType{Application: "Endpoint Security", Name: "scan"})
	start := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) // a Sunday
	berlin, _ := time.LoadLocation("Europe/Berlin")
	var devices []scope.Device
	for i, zone := range []string{"Europe/Berlin", "America/New_York", "Asia/Tokyo"} {
		devices = append(devices, scope.Device{ID: scope.DeviceID(fmt.Sprintf("pc-%d", i)), GroupID: "office", TimeZone: zone,
			Tags: []string{"lab"}, Applications: map[string]scope.AppState{"Endpoint Security": {Installed: true, Running: true}},
			Server: scope.ServerRef{ID: "main", Role: "primary"}})
	}
	sim, err := enginetest.New(ctx, enginetest.Config{Start: start, Registry: reg, ServerLocation: berlin, Devices: devices,
		Groups: []scope.AdminGroup{{ID: "office", Name: "Office"}}})
	if err != nil {
		panic(err)
	}
	weekdays := schedule.Default(schedule.Weekly, start, time.UTC)
	weekdays.Weekdays = schedule.NewWeekdays(time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday)
	weekdays.Time = schedule.Clock(9, 0, 0)
	group, err := sim.Manager.Create(ctx, task.System, task.Task{Name: "scan at nine", Application: "Endpoint Security", Type: "scan",
		Scope: scope.Scope{Kind: scope.Group, Group: "office"}, Schedule: weekdays})
	if err != nil {
		panic(err)
	}
	noon := schedule.Default(schedule.EveryDays, start, time.UTC)
	noon.Time = schedule.Clock(12, 0, 0)
	sel, err := sim.Manager.Create(ctx, task.System, task.Task{Name: "lab at noon", Application: "Endpoint Security", Type: "scan",
		Scope: scope.Scope{Kind: scope.Selection, Selection: `"lab" in device.tags`}, Schedule: noon})
	if err != nil {
		panic(err)
	}
	if err := sim.Settle(ctx); err != nil { // deliver the group task
		panic(err)
	}
	sim.Disconnect("pc-2") // selection tasks run only on connected devices
	if err := sim.Step(ctx, 7*24*time.Hour, 30*time.Minute); err != nil {
		panic(err)
	}
	for _, d := range devices {
		runs := sim.Exec.Runs(group.ID, d.ID)
		loc, _ := time.LoadLocation(d.TimeZone)
		fmt.Printf("%s: %d group runs, first at %s local; %d selection runs\n", d.ID, len(runs),
			runs[0].At.In(loc).Format("Mon 15:04"), len(sim.Exec.Runs(sel.ID, d.ID)))
	}
	// Output:
	// pc-0: 5 group runs, first at Mon 09:00 local; 7 selection runs
	// pc-1: 5 group runs, first at Mon 09:00 local; 7 selection runs
	// pc-2: 5 group runs, first at Mon 09:00 local; 0 selection runs
}
