package hierarchy_test

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
	"github.com/taskfleet/taskfleet/task/hierarchy"
)

// A primary server distributes a group task to the secondary server
// deployed in that group; the secondary shows it as inherited and reports
// its results back.
func Example() {
	ctx := context.Background()
	link := hierarchy.NewInProc()
	build := func(cfg hierarchy.Config, groups ...scope.AdminGroup) (*hierarchy.Node, *task.Manager) {
		reg := task.NewRegistry()
		_ = reg.Register(task.TaskType{Application: "Endpoint Security", Name: "virus_scan"})
		inv := inmem.New()
		_ = inv.PutGroups(groups...)
		clk := clock.NewMock()
		clk.Set(time.Date(2026, 3, 23, 9, 0, 0, 0, time.UTC))
		m, _ := task.New(task.Config{Store: memstore.New(), Registry: reg, Inventory: inv, Clock: clk, Authorizer: hierarchy.ReadOnly(nil)})
		cfg.Manager, cfg.Inventory, cfg.Link = m, inv, link
		n, err := hierarchy.New(cfg)
		if err != nil {
			panic(err)
		}
		link.Register(n)
		return n, m
	}
	primary, pm := build(hierarchy.Config{ID: "primary", Role: scope.Primary,
		Children: []hierarchy.Child{{ID: "branch", Role: scope.Secondary, Group: "g-branch"}}},
		scope.AdminGroup{ID: "g-root"}, scope.AdminGroup{ID: "g-branch", Parent: "g-root"})
	branch, bm := build(hierarchy.Config{ID: "branch", Role: scope.Secondary, Parent: "primary", Root: "managed"}, scope.AdminGroup{ID: "managed"})

	tk, err := pm.Create(ctx, task.System, task.Task{Name: "weekly scan", Application: "Endpoint Security", Type: "virus_scan",
		Scope:    scope.Scope{Kind: scope.Group, Group: "g-root", DistributeToServers: true},
		Schedule: schedule.Default(schedule.Manual, time.Time{}, time.UTC)})
	if err != nil {
		panic(err)
	}
	if err := primary.Distribute(ctx); err != nil {
		panic(err)
	}
	views, _ := branch.Tasks(ctx)
	for _, v := range views {
		fmt.Printf("%s: inherited=%v from %s\n", v.Task.Name, v.Inherited, v.From)
		_, _ = bm.RecordResults(ctx, []task.Result{{TaskID: v.Task.ID, DeviceID: "pc-1", RunID: 1, Seq: 2, State: task.Completed}})
	}
	_ = branch.Report(ctx)
	st, _ := primary.SecondaryStatistics(tk.ID, "branch")
	fmt.Printf("statistics from %s: %d completed\n", st.Server, st.Statistics.ByState[task.Completed])
	// Output:
	// weekly scan (primary): inherited=true from primary
	// statistics from branch: 1 completed
}
