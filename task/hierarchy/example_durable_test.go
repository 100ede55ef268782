package hierarchy_test

import (
	"context"
	"fmt"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/hierarchy"
)

// Servers opened on a durable store run with one sync round each (what
// Node.Start does on every interval); the primary pages through the
// secondary's failed devices on demand, and after a restart it serves the
// same figures before anyone reports again.
func ExampleOpen() {
	ctx := context.Background()
	link := hierarchy.NewInProc()
	open := func(cfg hierarchy.Config, st storage.Store, groups ...scope.AdminGroup) (*hierarchy.Node, *task.Manager) {
		reg := task.NewRegistry()
		_ = reg.Register(task.TaskType{Application: "Endpoint Security", Name: "virus_scan"})
		inv := inmem.New()
		_ = inv.PutGroups(ctx, groups...)
		m, _ := task.New(task.Config{Store: st, Registry: reg, Inventory: inv, Authorizer: hierarchy.ReadOnly(nil)})
		cfg.Manager, cfg.Inventory, cfg.Link, cfg.Store = m, inv, link, st.(storage.HierarchyStore)
		n, err := hierarchy.Open(ctx, cfg)
		if err != nil {
			panic(err)
		}
		link.Register(n)
		return n, m
	}
	pStore := memstore.New() // sqlstore in production
	pcfg := hierarchy.Config{ID: "primary", Role: scope.Primary, Children: []hierarchy.Child{{ID: "branch", Role: scope.Secondary, Group: "g-root"}}}
	primary, pm := open(pcfg, pStore, scope.AdminGroup{ID: "g-root"})
	branch, bm := open(hierarchy.Config{ID: "branch", Role: scope.Secondary, Parent: "primary", Root: "managed"}, memstore.New(), scope.AdminGroup{ID: "managed"})

	tk, _ := pm.Create(ctx, task.System, task.Task{Name: "weekly scan", Application: "Endpoint Security", Type: "virus_scan",
		Scope:    scope.Scope{Kind: scope.Group, Group: "g-root", DistributeToServers: true},
		Schedule: schedule.Default(schedule.Manual, time.Time{}, time.UTC)})
	_ = primary.Round(ctx) // distributes the task
	views, _ := branch.Tasks(ctx)
	_, _ = bm.Runtime().RecordResults(ctx, []task.Result{
		{TaskID: views[0].Task.ID, DeviceID: "pc-1", RunID: 1, Seq: 2, State: task.Completed},
		{TaskID: views[0].Task.ID, DeviceID: "pc-2", RunID: 1, Seq: 2, State: task.Failed},
	})
	_ = branch.Round(ctx) // reports

	page, _ := primary.DeviceResults(ctx, hierarchy.DeviceResultsParams{TaskID: tk.ID, Server: "branch", States: []task.State{task.Failed}})
	for _, r := range page.Results {
		fmt.Println("failed on branch:", r.DeviceID)
	}
	restarted, _ := open(pcfg, pStore, scope.AdminGroup{ID: "g-root"})
	st, _ := restarted.RolledUp(ctx, tk.ID)
	fmt.Printf("after a restart: %d devices, %.0f%% complete\n", st.Total, st.PercentComplete)
	// Output:
	// failed on branch: pc-2
	// after a restart: 2 devices, 100% complete
}
