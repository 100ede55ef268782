package hierarchy_test

import (
	"context"
	"errors"
	"testing"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/hierarchy"
)

// pageAll pages through a server's results of a task on the primary.
func pageAll(t *testing.T, n *hierarchy.Node, id, server string, limit int, states ...task.State) []task.Result {
	t.Helper()
	var out []task.Result
	p := hierarchy.DeviceResultsParams{TaskID: id, Server: server, States: states, Limit: limit}
	for range 1000 {
		page, err := n.DeviceResults(context.Background(), p)
		must(t, err)
		if page.Server != server {
			t.Fatalf("page from %q, want %q", page.Server, server)
		}
		out = append(out, page.Results...)
		if page.Next == "" {
			return out
		}
		p.After = page.Next
	}
	t.Fatal("no last page")
	return nil
}

// TestDeviceResultsOnDemand: the primary pages through the failed devices
// of a secondary and of a virtual server under it (relayed by the
// secondary), filtered by state; the pages add up to the rolled-up
// figures, each device once, with the primary's task id.
func TestDeviceResultsOnDemand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dt := newDurableTree(t)
	recordAs(t, dt.sDE.m, dt.sdeAllCopy, "many", 2, map[task.State]int{task.Failed: 230, task.Completed: 40})
	must(t, dt.sDE.node.Report(ctx))

	failed := pageAll(t, dt.primary.node, dt.all, "s-de", 100, task.Failed)
	st, err := dt.primary.node.SecondaryStatistics(dt.all, "s-de")
	must(t, err)
	if len(failed) != st.Statistics.ByState[task.Failed] || len(failed) != 231 {
		t.Fatalf("%d failed devices paged, figures say %d (want 231)", len(failed), st.Statistics.ByState[task.Failed])
	}
	seen := map[scope.DeviceID]bool{}
	for _, r := range failed {
		if r.State != task.Failed || r.TaskID != dt.all || seen[r.DeviceID] {
			t.Fatalf("bad or repeated result %+v", r)
		}
		seen[r.DeviceID] = true
	}
	if all := pageAll(t, dt.primary.node, dt.all, "s-de", 0); len(all) != 274 {
		t.Fatalf("all states: %d results, want 274", len(all))
	}
	v := pageAll(t, dt.primary.node, dt.all, "v-de", 1, task.Failed)
	if len(v) != 2 || v[0].DeviceID != "vde-000" || v[1].TaskID != dt.all {
		t.Fatalf("v-de through s-de: %+v", v)
	}
}

// TestDeviceResultsRefused: bad pages, unknown servers and queries from a
// server that is not the parent are refused with typed errors.
func TestDeviceResultsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dt := newDurableTree(t)
	p := dt.primary.node
	for _, tc := range []struct {
		name string
		q    hierarchy.DeviceResultsParams
		want error
	}{
		{"limit too large", hierarchy.DeviceResultsParams{TaskID: dt.all, Server: "s-de", Limit: 10001}, hierarchy.ErrInvalid},
		{"negative limit", hierarchy.DeviceResultsParams{TaskID: dt.all, Server: "s-de", Limit: -1}, hierarchy.ErrInvalid},
		{"bad state", hierarchy.DeviceResultsParams{TaskID: dt.all, Server: "s-de", States: []task.State{"exploded"}}, hierarchy.ErrInvalid},
		{"unknown server", hierarchy.DeviceResultsParams{TaskID: dt.all, Server: "s-us"}, hierarchy.ErrNotFound},
		{"unknown task", hierarchy.DeviceResultsParams{TaskID: "nope", Server: "s-de"}, hierarchy.ErrNotFound},
	} {
		if _, err := p.DeviceResults(ctx, tc.q); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// v-de answers only its parent s-de.
	if _, err := dt.vDE.node.ServeResults(ctx, hierarchy.ResultsQuery{From: "primary", To: "v-de", TaskID: dt.all, Server: "v-de"}); !errors.As(err, new(*hierarchy.UnknownServerError)) {
		t.Errorf("query from a server that is not the parent: %v", err)
	}
	// s-de answers only about its copy of a task of the primary.
	local, err := dt.sDE.m.Create(ctx, task.System, groupTask("own", "managed", false))
	must(t, err)
	if _, err := dt.sDE.node.ServeResults(ctx, hierarchy.ResultsQuery{From: "primary", To: "s-de", TaskID: local.ID, Server: "s-de"}); !errors.Is(err, hierarchy.ErrNotFound) {
		t.Errorf("query for a task that is not inherited: %v", err)
	}
	dt.link.Disconnect("primary", "s-de")
	if _, err := p.DeviceResults(ctx, hierarchy.DeviceResultsParams{TaskID: dt.all, Server: "s-de"}); !errors.Is(err, hierarchy.ErrUnreachable) {
		t.Errorf("link down: %v", err)
	}
}
