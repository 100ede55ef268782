package hierarchy_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/hierarchy"
)

const appES = "Endpoint Security"

var t0 = time.Date(2026, 3, 23, 9, 0, 0, 0, time.UTC)

type Scan struct {
	Action string `json:"action"`
}

type server struct {
	node *hierarchy.Node
	m    *task.Manager
	inv  *inmem.Inventory
	clk  *clock.Mock
	cfg  hierarchy.Config
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newServer builds a server with its own store, inventory (groups), clock
// and a Manager whose Authorizer keeps inherited copies read-only. The
// Node uses cfg.Link when set (a wrapper around link), else link.
func newServer(t *testing.T, link *hierarchy.InProc, cfg hierarchy.Config, groups ...scope.AdminGroup) server {
	t.Helper()
	reg := task.NewRegistry()
	must(t, reg.Register(task.TaskType{Application: appES, Name: "virus_scan", Settings: Scan{Action: "disinfect"}}))
	inv := inmem.New()
	must(t, inv.PutGroups(context.Background(), groups...))
	clk := clock.NewMock()
	clk.Set(t0)
	m, err := task.New(task.Config{Store: memstore.New(), Registry: reg, Inventory: inv, Clock: clk, Authorizer: hierarchy.ReadOnly(nil)})
	must(t, err)
	cfg.Manager, cfg.Inventory, cfg.Clock = m, inv, clk
	if cfg.Link == nil {
		cfg.Link = link
	}
	n, err := openNode(cfg)
	must(t, err)
	link.Register(n)
	return server{node: n, m: m, inv: inv, clk: clk, cfg: cfg}
}

// restart replaces s's Node by a new one on the same Manager (its tasks
// survive, its in-memory roll-up table does not), a minute later on its
// clock; change edits the configuration first.
func restart(t *testing.T, link *hierarchy.InProc, s server, change func(*hierarchy.Config)) server {
	t.Helper()
	s.clk.Add(time.Minute)
	cfg := s.cfg
	if change != nil {
		change(&cfg)
	}
	n, err := openNode(cfg)
	must(t, err)
	link.Register(n)
	s.node, s.cfg = n, cfg
	return s
}

// openNode opens a durable Node when cfg has a Store, else a Node in
// memory.
func openNode(cfg hierarchy.Config) (*hierarchy.Node, error) {
	if cfg.Store != nil {
		return hierarchy.Open(context.Background(), cfg)
	}
	return hierarchy.New(cfg)
}

func groupTask(name string, g scope.GroupID, distribute bool) task.Task {
	return task.Task{Name: name, Application: appES, Type: "virus_scan",
		Scope:    scope.Scope{Kind: scope.Group, Group: g, DistributeToServers: distribute},
		Schedule: schedule.Default(schedule.Manual, t0, time.UTC)}
}

// record stores results for a task: n devices in each state.
func record(t *testing.T, m *task.Manager, id string, states map[task.State]int) {
	t.Helper()
	var rs []task.Result
	i := 0
	for st, n := range states {
		for range n {
			rs = append(rs, task.Result{TaskID: id, DeviceID: scope.DeviceID(fmt.Sprintf("dev%03d", i)), RunID: 1, Seq: 2, State: st, UpdatedAt: t0, FinishedAt: t0})
			i++
		}
	}
	_, err := m.Runtime().RecordResults(context.Background(), rs)
	must(t, err)
}

// inherited returns the copy of parent task id on a server.
func inherited(t testing.TB, s server, id string) *hierarchy.View {
	t.Helper()
	vs, err := s.node.Tasks(context.Background())
	must(t, err)
	for i := range vs {
		if vs[i].Inherited && vs[i].ParentTaskID == id {
			return &vs[i]
		}
	}
	return nil
}

// TestHierarchy: a primary with two secondary servers and one virtual
// server. Distributed group tasks are inherited by the servers under their
// group (read-only there), a same-type local task on a secondary runs
// beside its inherited one, changes and deletions follow, and results roll
// up to the primary per server.
func TestHierarchy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	link := hierarchy.NewInProc()
	primaryGroups := []scope.AdminGroup{{ID: "g-root", Name: "root"}, {ID: "g-eu", Parent: "g-root", Name: "eu"}, {ID: "g-de", Parent: "g-eu", Name: "de"}, {ID: "g-us", Parent: "g-root", Name: "us"}}
	children := []hierarchy.Child{{ID: "s-de", Role: scope.Secondary, Group: "g-de"}, {ID: "s-us", Role: scope.Secondary, Group: "g-us"}, {ID: "v-eu", Role: scope.Virtual, Group: "g-eu"}}
	p := newServer(t, link, hierarchy.Config{ID: "primary", Role: scope.Primary, Children: children}, primaryGroups...)
	root := []scope.AdminGroup{{ID: "managed", Name: "Managed devices"}}
	sDE := newServer(t, link, hierarchy.Config{ID: "s-de", Role: scope.Secondary, Parent: "primary", Root: "managed"}, root...)
	sUS := newServer(t, link, hierarchy.Config{ID: "s-us", Role: scope.Secondary, Parent: "primary", Root: "managed"}, root...)
	vEU := newServer(t, link, hierarchy.Config{ID: "v-eu", Role: scope.Virtual, Parent: "primary", Root: "managed"}, root...)

	all, err := p.m.Create(ctx, task.System, groupTask("scan all", "g-root", true))
	must(t, err)
	eu, err := p.m.Create(ctx, task.System, groupTask("scan eu", "g-eu", true))
	must(t, err)
	_, err = p.m.Create(ctx, task.System, groupTask("primary only", "g-root", false))
	must(t, err)
	local, err := sDE.m.Create(ctx, task.System, groupTask("local scan", "managed", false))
	must(t, err)

	must(t, p.node.Distribute(ctx))
	want := map[string][]string{"s-de": {all.ID, eu.ID}, "s-us": {all.ID}, "v-eu": {all.ID, eu.ID}}
	for name, s := range map[string]server{"s-de": sDE, "s-us": sUS, "v-eu": vEU} {
		var got []string
		for _, id := range []string{all.ID, eu.ID} {
			if v := inherited(t, s, id); v != nil {
				got = append(got, id)
				if v.From != "primary" || v.Task.Scope.Group != "managed" || v.Task.Type != "virus_scan" {
					t.Errorf("%s: inherited copy %+v", name, v)
				}
			}
		}
		if d := cmp.Diff(want[name], got); d != "" {
			t.Errorf("%s inherits (-want +got):\n%s", name, d)
		}
	}
	// The same-type local task exists beside the inherited ones: both run.
	vs, err := sDE.node.Tasks(ctx)
	must(t, err)
	if len(vs) != 3 {
		t.Fatalf("s-de has %d tasks, want 3 (local + 2 inherited): %+v", len(vs), vs)
	}
	if _, err := sDE.m.Get(ctx, task.System, local.ID); err != nil {
		t.Fatalf("local task: %v", err)
	}

	// Inherited copies are read-only on the secondary; local tasks are not.
	cp := inherited(t, sDE, all.ID).Task
	edit := *cp
	edit.Name = "renamed"
	if _, err := sDE.m.Update(ctx, task.Actor{ID: "admin"}, edit); !errors.Is(err, task.ErrPermission) {
		t.Fatalf("update of an inherited task: %v, want ErrPermission", err)
	}
	if err := sDE.m.Delete(ctx, task.Actor{ID: "admin"}, cp.ID, 0); !errors.Is(err, task.ErrPermission) {
		t.Fatalf("delete of an inherited task: %v, want ErrPermission", err)
	}
	le := *local
	le.Name = "local scan 2"
	if _, err := sDE.m.Update(ctx, task.Actor{ID: "admin"}, le); err != nil {
		t.Fatalf("update of a local task: %v", err)
	}

	// A change on the primary reaches the copies; a deleted task is
	// withdrawn; distributing again without changes changes nothing.
	ch := *all
	ch.Settings = Scan{Action: "report"}
	_, err = p.m.Update(ctx, task.System, ch)
	must(t, err)
	must(t, p.m.Delete(ctx, task.System, eu.ID, 0))
	must(t, p.node.Distribute(ctx))
	must(t, p.node.Distribute(ctx))
	for name, s := range map[string]server{"s-de": sDE, "s-us": sUS, "v-eu": vEU} {
		v := inherited(t, s, all.ID)
		if v == nil || v.Task.Revision != 2 {
			t.Fatalf("%s: copy after the primary's change: %+v", name, v)
		}
		if got, _ := v.Task.Settings.(Scan); got.Action != "report" {
			t.Errorf("%s: copied settings %#v, want action report", name, v.Task.Settings)
		}
		if inherited(t, s, eu.ID) != nil {
			t.Errorf("%s still has the deleted task", name)
		}
	}

	// Results roll up: each server reports its copy's statistics.
	record(t, p.m, all.ID, map[task.State]int{task.Completed: 5})
	record(t, sDE.m, inherited(t, sDE, all.ID).Task.ID, map[task.State]int{task.Completed: 3, task.Failed: 1})
	record(t, sUS.m, inherited(t, sUS, all.ID).Task.ID, map[task.State]int{task.Completed: 2})
	record(t, vEU.m, inherited(t, vEU, all.ID).Task.ID, map[task.State]int{task.Running: 1})
	record(t, sDE.m, local.ID, map[task.State]int{task.Completed: 7}) // local: not rolled up
	for _, s := range []server{sDE, sUS, vEU} {
		must(t, s.node.Report(ctx))
	}
	if d := cmp.Diff([]string{"s-de", "s-us", "v-eu"}, p.node.SecondaryServers(all.ID)); d != "" {
		t.Errorf("servers with statistics (-want +got):\n%s", d)
	}
	for _, tc := range []struct {
		server string
		want   map[task.State]int
		total  int
		role   scope.ServerRole
	}{
		{"s-de", map[task.State]int{task.Completed: 3, task.Failed: 1}, 4, scope.Secondary},
		{"s-us", map[task.State]int{task.Completed: 2}, 2, scope.Secondary},
		{"v-eu", map[task.State]int{task.Running: 1}, 1, scope.Virtual},
	} {
		st, err := p.node.SecondaryStatistics(all.ID, tc.server)
		must(t, err)
		if st.Statistics.Total != tc.total || st.Role != tc.role || st.Server != tc.server {
			t.Errorf("%s: %+v", tc.server, st)
		}
		for k, v := range tc.want {
			if st.Statistics.ByState[k] != v {
				t.Errorf("%s: %s = %d, want %d", tc.server, k, st.Statistics.ByState[k], v)
			}
		}
	}
	sum, err := p.node.RolledUp(ctx, all.ID)
	must(t, err)
	if sum.Total != 12 || sum.ByState[task.Completed] != 10 || sum.ByState[task.Failed] != 1 || sum.ByState[task.Running] != 1 || sum.Finished != 11 {
		t.Fatalf("rolled-up statistics %+v; want 12 devices: 10 completed, 1 failed, 1 running", sum)
	}
	if _, err := p.node.SecondaryStatistics(all.ID, "nobody"); !errors.Is(err, hierarchy.ErrNotFound) {
		t.Fatalf("unknown server: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := hierarchy.New(hierarchy.Config{Role: "tertiary", Children: []hierarchy.Child{{Role: scope.Primary}}})
	var ve hierarchy.ValidationErrors
	if !errors.As(err, &ve) || !errors.Is(err, hierarchy.ErrInvalid) {
		t.Fatalf("New: %v", err)
	}
	var fields []string
	for _, e := range ve {
		fields = append(fields, e.Field)
	}
	want := []string{"id", "role", "manager", "inventory", "link", "children[0].id", "children[0].role", "children[0].group"}
	if d := cmp.Diff(want, fields); d != "" {
		t.Fatalf("fields (-want +got):\n%s", d)
	}
}
