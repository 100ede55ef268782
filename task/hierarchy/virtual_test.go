package hierarchy_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/hierarchy"
)

// MaxVirtualServers is the documented number of virtual servers on one
// Administration Server.
const maxVirtualServers = 500

// snapshot is everything a virtual server shows: its tasks (with
// lineage), every task's results and statistics, its stored hierarchy
// state.
type snapshot struct {
	Tasks   []string
	Results map[string][]task.Result
	Stats   map[string]task.Statistics
	State   storage.HierarchyState
}

func snap(t *testing.T, s server, hs storage.HierarchyStore) snapshot {
	t.Helper()
	ctx := context.Background()
	vs, err := s.node.Tasks(ctx)
	must(t, err)
	out := snapshot{Results: map[string][]task.Result{}, Stats: map[string]task.Statistics{}}
	for _, v := range vs {
		out.Tasks = append(out.Tasks, fmt.Sprintf("%s %q rev %d lineage %v", v.Task.ID, v.Task.Name, v.Task.Revision, v.Lineage))
		rs, err := s.m.Results(ctx, task.System, v.Task.ID, task.ResultsParams{Limit: 1000})
		must(t, err)
		out.Results[v.Task.ID] = rs
		st, err := s.m.Statistics(ctx, task.System, v.Task.ID)
		must(t, err)
		out.Stats[v.Task.ID] = st
	}
	out.State, err = hs.GetHierarchyState(ctx, s.node.ID())
	must(t, err)
	return out
}

// TestFiveHundredVirtualServers: a secondary with 500 virtual servers,
// each with its own devices and tasks, all keeping their hierarchy state
// in one shared store. Each inherits the distributed tasks meant for its
// group, its results roll up to the secondary under its own id, its
// per-device results hold only its devices, and no call on one virtual
// server returns or changes another's tasks, results or stored state.
func TestFiveHundredVirtualServers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	link := hierarchy.NewInProc()
	shared := memstore.New() // one database for the physical server's virtual servers
	groups := []scope.AdminGroup{{ID: "managed", Name: "Managed devices"}}
	var children []hierarchy.Child
	for i := range maxVirtualServers {
		g := scope.GroupID(fmt.Sprintf("g-v%03d", i))
		groups = append(groups, scope.AdminGroup{ID: g, Parent: "managed", Name: string(g)})
		children = append(children, hierarchy.Child{ID: fmt.Sprintf("v%03d", i), Role: scope.Virtual, Group: g})
	}
	s := newServer(t, link, hierarchy.Config{ID: "s", Role: scope.Secondary, Parent: "primary", Root: "managed", Children: children, Store: memstore.New()}, groups...)
	vs := make([]server, maxVirtualServers)
	own := make([]string, maxVirtualServers)
	for i := range vs {
		vs[i] = newServer(t, link, hierarchy.Config{ID: fmt.Sprintf("v%03d", i), Role: scope.Virtual, Parent: "s", Root: "managed", Store: shared},
			scope.AdminGroup{ID: "managed", Name: "Managed devices"})
		tk, err := vs[i].m.Create(ctx, task.System, groupTask(fmt.Sprintf("own of v%03d", i), "managed", false))
		must(t, err)
		own[i] = tk.ID
		recordAs(t, vs[i].m, tk.ID, fmt.Sprintf("v%03d-own", i), 2, map[task.State]int{task.Completed: 1})
	}
	all, err := s.m.Create(ctx, task.System, groupTask("scan all", "managed", true))
	must(t, err)
	only7, err := s.m.Create(ctx, task.System, groupTask("scan v007", "g-v007", true))
	must(t, err)
	must(t, s.node.Distribute(ctx))

	for i, v := range vs {
		vt, err := v.node.Tasks(ctx)
		must(t, err)
		want := 2
		if i == 7 {
			want = 3
		}
		if len(vt) != want {
			t.Fatalf("v%03d has %d tasks, want %d", i, len(vt), want)
		}
		for _, x := range vt {
			if !x.Inherited && x.Task.ID != own[i] {
				t.Fatalf("v%03d shows a task of its own it did not create: %+v", i, x.Task)
			}
		}
		recordAs(t, v.m, copyID(t, v, all.ID), fmt.Sprintf("v%03d", i), 2, map[task.State]int{task.Completed: i%5 + 1, task.Failed: i % 3})
		must(t, v.node.Report(ctx))
	}
	figs := s.node.StatisticsFromSecondaries(all.ID)
	if len(figs) != maxVirtualServers {
		t.Fatalf("%d virtual servers reported, want %d", len(figs), maxVirtualServers)
	}
	for i, f := range figs {
		if f.Server != fmt.Sprintf("v%03d", i) || f.Role != scope.Virtual || f.Statistics.Total != i%5+1+i%3 {
			t.Fatalf("figure %d: %s total %d, want v%03d total %d", i, f.Server, f.Statistics.Total, i, i%5+1+i%3)
		}
	}
	if got := s.node.SecondaryServers(only7.ID); len(got) != 1 || got[0] != "v007" {
		t.Fatalf("servers reporting the task of v007's group: %v", got)
	}
	for _, i := range []int{0, 7, 499} {
		rs := pageAll(t, s.node, all.ID, fmt.Sprintf("v%03d", i), 2)
		if len(rs) != i%5+1+i%3 {
			t.Fatalf("v%03d: %d results, want %d", i, len(rs), i%5+1+i%3)
		}
		for _, r := range rs {
			if want := fmt.Sprintf("v%03d-", i); string(r.DeviceID[:len(want)]) != want {
				t.Fatalf("v%03d's results hold device %q", i, r.DeviceID)
			}
		}
	}

	// Every call on v000 leaves the other 499 as they were.
	before := make([]snapshot, maxVirtualServers)
	for i := 1; i < maxVirtualServers; i++ {
		before[i] = snap(t, vs[i], shared)
	}
	v0 := vs[0]
	tk, err := v0.m.Get(ctx, task.System, own[0])
	must(t, err)
	tk.Name = "renamed on v000"
	_, err = v0.m.Update(ctx, task.System, *tk)
	must(t, err)
	recordAs(t, v0.m, own[0], "v000-own", 3, map[task.State]int{task.Failed: 3})
	recordAs(t, v0.m, copyID(t, v0, all.ID), "v000", 3, map[task.State]int{task.Failed: 9})
	must(t, v0.node.Report(ctx))
	if _, err := v0.node.ServeResults(ctx, hierarchy.ResultsQuery{From: "v001", To: "v000", TaskID: all.ID, Server: "v000"}); !errors.As(err, new(*hierarchy.UnknownServerError)) {
		t.Fatalf("v001 asked v000 for results: %v", err)
	}
	if err := v0.node.ReceiveReport(ctx, hierarchy.Report{From: "v001", To: "v000"}); !errors.As(err, new(*hierarchy.UnknownServerError)) {
		t.Fatalf("v001 reported to v000: %v", err)
	}
	if err := v0.node.ReceiveTasks(ctx, hierarchy.TaskSet{From: "v001", To: "v000"}); !errors.As(err, new(*hierarchy.UnknownServerError)) {
		t.Fatalf("v001 sent tasks to v000: %v", err)
	}
	if err := v0.m.Delete(ctx, task.System, own[0], 0); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < maxVirtualServers; i++ {
		if d := cmp.Diff(before[i], snap(t, vs[i], shared)); d != "" {
			t.Fatalf("calls on v000 changed v%03d (-before +after):\n%s", i, d)
		}
	}
	if st, err := s.node.SecondaryStatistics(all.ID, "v000"); err != nil || st.Statistics.Total != 9 {
		t.Fatalf("v000's new figures on s: %+v, %v", st, err)
	}
	if st, err := s.node.SecondaryStatistics(all.ID, "v001"); err != nil || st.Statistics.Total != 1%5+1+1%3 {
		t.Fatalf("v001's figures on s: %+v, %v", st, err)
	}
}
