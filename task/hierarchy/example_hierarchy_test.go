package hierarchy_test

import (
	"context"
	"fmt"
	"strings"
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
		_ = inv.PutGroups(ctx, groups...)
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
		_, _ = bm.Runtime().RecordResults(ctx, []task.Result{{TaskID: v.Task.ID, DeviceID: "pc-1", RunID: 1, Seq: 2, State: task.Completed}})
	}
	_ = branch.Report(ctx)
	st, _ := primary.SecondaryStatistics(tk.ID, "branch")
	fmt.Printf("statistics from %s: %d completed\n", st.Server, st.Statistics.ByState[task.Completed])
	// Output:
	// weekly scan (primary): inherited=true from primary
	// statistics from branch: 1 completed
}

// A task of the primary reaches a secondary server's own secondary in one
// Distribute; the results of the bottom server roll up through the middle
// one to the primary, which shows them per server and per subtree.
func Example_multiLevel() {
	ctx := context.Background()
	link := hierarchy.NewInProc()
	build := func(cfg hierarchy.Config, groups ...scope.AdminGroup) (*hierarchy.Node, *task.Manager) {
		reg := task.NewRegistry()
		_ = reg.Register(task.TaskType{Application: "Endpoint Security", Name: "virus_scan"})
		inv := inmem.New()
		_ = inv.PutGroups(ctx, groups...)
		clk := clock.NewMock()
		clk.Set(time.Date(2026, 3, 23, 9, 0, 0, 0, time.UTC))
		m, _ := task.New(task.Config{Store: memstore.New(), Registry: reg, Inventory: inv, Clock: clk, Authorizer: hierarchy.ReadOnly(nil)})
		cfg.Manager, cfg.Inventory, cfg.Link, cfg.Clock = m, inv, link, clk
		n, err := hierarchy.New(cfg)
		if err != nil {
			panic(err)
		}
		link.Register(n)
		return n, m
	}
	managed := scope.AdminGroup{ID: "managed"}
	primary, pm := build(hierarchy.Config{ID: "primary", Role: scope.Primary,
		Children: []hierarchy.Child{{ID: "region", Role: scope.Secondary, Group: "g-root"}}}, scope.AdminGroup{ID: "g-root"})
	region, rm := build(hierarchy.Config{ID: "region", Role: scope.Secondary, Parent: "primary", Root: "managed",
		Children: []hierarchy.Child{{ID: "branch", Role: scope.Virtual, Group: "managed"}}}, managed)
	branch, bm := build(hierarchy.Config{ID: "branch", Role: scope.Virtual, Parent: "region", Root: "managed"}, managed)

	tk, _ := pm.Create(ctx, task.System, task.Task{Name: "weekly scan", Application: "Endpoint Security", Type: "virus_scan",
		Scope:    scope.Scope{Kind: scope.Group, Group: "g-root", DistributeToServers: true},
		Schedule: schedule.Default(schedule.Manual, time.Time{}, time.UTC)})
	if err := primary.Distribute(ctx); err != nil {
		panic(err)
	}
	record := func(n *hierarchy.Node, m *task.Manager, devices ...scope.DeviceID) {
		views, _ := n.Tasks(ctx)
		v := views[0]
		fmt.Printf("%s: %q inherited from %s, created on %s\n", n.ID(), v.Task.Name, v.From, v.Origin().Server)
		for _, d := range devices {
			_, _ = m.Runtime().RecordResults(ctx, []task.Result{{TaskID: v.Task.ID, DeviceID: d, RunID: 1, Seq: 2, State: task.Completed}})
		}
	}
	record(region, rm, "pc-1")
	record(branch, bm, "pc-2", "pc-3")
	_ = branch.Report(ctx) // to region
	_ = region.Report(ctx) // to primary, with branch's figures
	_ = region.Report(ctx) // relayed again: not counted twice

	for _, s := range primary.StatisticsFromSecondaries(tk.ID) {
		fmt.Printf("from %s (%s): %d completed\n", s.Server, strings.Join(s.Path, " > "), s.Statistics.ByState[task.Completed])
	}
	sum, _ := primary.RolledUp(ctx, tk.ID)
	fmt.Printf("rolled up on the primary: %d devices\n", sum.Total)
	// Output:
	// region: "weekly scan (primary)" inherited from primary, created on primary
	// branch: "weekly scan (primary)" inherited from region, created on primary
	// from region (region): 1 completed
	// from branch (region > branch): 2 completed
	// rolled up on the primary: 3 devices
}
