package hierarchy_test

import (
	"context"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
	"github.com/taskfleet/taskfleet/task/hierarchy"
)

// fleetServer is one Administration Server of the distributed tests: a
// simulated fleet (store, engine, agents) with its hierarchy Node.
type fleetServer struct {
	sim  *enginetest.Sim
	node *hierarchy.Node
}

func newFleetServer(t *testing.T, link *hierarchy.InProc, cfg hierarchy.Config, groups []scope.AdminGroup, devs []scope.Device) fleetServer {
	t.Helper()
	ctx := context.Background()
	reg := task.NewRegistry()
	must(t, reg.Register(task.TaskType{Application: appES, Name: "virus_scan", Settings: Scan{Action: "disinfect"}}))
	sim, err := enginetest.New(ctx, enginetest.Config{Start: t0.Truncate(24 * time.Hour), Registry: reg, Groups: groups, Devices: devs, ServerLocation: time.UTC, Seed: 1})
	must(t, err)
	must(t, sim.Settle(ctx))
	cfg.Manager, cfg.Inventory, cfg.Clock, cfg.Link = sim.Manager, sim.Inv, sim.Clock, link
	n, err := hierarchy.New(cfg)
	must(t, err)
	link.Register(n)
	return fleetServer{sim: sim, node: n}
}

func device(id scope.DeviceID, g scope.GroupID, server scope.ServerRef) scope.Device {
	return scope.Device{ID: id, GroupID: g, TimeZone: "UTC", Tags: []string{}, Server: server,
		Applications: map[string]scope.AppState{appES: {Installed: true, Running: true}}}
}

// With "Distribute to secondary and virtual Administration Servers" on,
// the primary's scope includes the secondary's devices (the primary's
// inventory lists them, managed by s-de) while s-de runs its inherited
// copy on them. Each device runs each activation once, and the primary's
// rolled-up statistics count every device once.
func TestDistributedTaskRunsOnceAndCountsOncePerDevice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	link := hierarchy.NewInProc()
	sde := scope.ServerRef{ID: "s-de", Role: scope.Secondary}
	primary := newFleetServer(t, link, hierarchy.Config{ID: "primary", Role: scope.Primary, Children: []hierarchy.Child{{ID: "s-de", Role: scope.Secondary, Group: "g-de"}}},
		[]scope.AdminGroup{{ID: "g-root", Name: "root"}, {ID: "g-de", Parent: "g-root", Name: "de"}},
		[]scope.Device{device("p0", "g-root", scope.ServerRef{}), device("p1", "g-de", scope.ServerRef{}), device("s0", "g-de", sde), device("s1", "g-de", sde)})
	secondary := newFleetServer(t, link, hierarchy.Config{ID: "s-de", Role: scope.Secondary, Parent: "primary", Root: "s-root"},
		[]scope.AdminGroup{{ID: "s-root", Name: "s-de root"}},
		[]scope.Device{device("s0", "s-root", scope.ServerRef{}), device("s1", "s-root", scope.ServerRef{})})
	start := primary.sim.Clock.Now()
	s := schedule.Default(schedule.EveryDays, start.Add(9*time.Hour), time.UTC)
	tk, err := primary.sim.Manager.Create(ctx, task.System, task.Task{Name: "daily scan", Application: appES, Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Group, Group: "g-root", DistributeToServers: true}, Schedule: s})
	must(t, err)
	must(t, primary.node.Distribute(ctx))
	copyView := inherited(t, server{node: secondary.node}, tk.ID)
	if copyView == nil {
		t.Fatal("s-de did not inherit the task")
	}
	copyID := copyView.Task.ID
	for range 2 * 24 * 2 { // two days in 30-minute steps, both servers in step
		must(t, primary.sim.Step(ctx, 30*time.Minute, 30*time.Minute))
		must(t, secondary.sim.Step(ctx, 30*time.Minute, 30*time.Minute))
	}
	want := len(collect(s.Between(start, primary.sim.Clock.Now(), time.UTC)))
	if want != 2 {
		t.Fatalf("%d activations in two days", want)
	}
	for _, d := range []scope.DeviceID{"p0", "p1", "s0", "s1"} {
		runs := len(primary.sim.Exec.Runs(tk.ID, d)) + len(secondary.sim.Exec.Runs(copyID, d))
		if runs != want {
			t.Errorf("%s ran %d times (primary's task %d, s-de's copy %d), want %d", d, runs,
				len(primary.sim.Exec.Runs(tk.ID, d)), len(secondary.sim.Exec.Runs(copyID, d)), want)
		}
	}
	must(t, secondary.node.Report(ctx))
	st, err := primary.node.RolledUp(ctx, tk.ID)
	must(t, err)
	if st.Total != 4 || st.ByState[task.Completed] != 4 {
		t.Errorf("rolled up: total %d, completed %d (%v); want 4 devices, each once", st.Total, st.ByState[task.Completed], st.ByState)
	}

	// A manual start on the primary runs on the primary's own devices;
	// s-de's devices are its copy's.
	_, err = primary.sim.Manager.Start(ctx, task.System, tk.ID)
	must(t, err)
	must(t, primary.sim.Step(ctx, 30*time.Minute, 30*time.Minute))
	for d, n := range map[scope.DeviceID]int{"p0": want + 1, "p1": want + 1, "s0": 0, "s1": 0} {
		if got := len(primary.sim.Exec.Runs(tk.ID, d)); got != n {
			t.Errorf("%s: %d runs of the primary's task after a manual start, want %d", d, got, n)
		}
	}
	own, err := primary.sim.Manager.Statistics(ctx, task.System, tk.ID)
	must(t, err)
	if own.Total != 2 {
		t.Errorf("the primary's own statistics count %d devices (%v), want its 2", own.Total, own.ByState)
	}
}

func collect[T any](seq func(func(T) bool)) []T {
	var out []T
	for v := range seq {
		out = append(out, v)
	}
	return out
}
