package console_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/console"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/hierarchy"
)

type fakeEngine struct{ s engine.Stats }

func (f fakeEngine) Stats() engine.Stats { return f.s }

func TestListShowsEngineCounters(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{cfg: func(c *console.Config) {
		c.Engine = fakeEngine{engine.Stats{Fired: 7, Dispatched: 1234, Resent: 5, Heartbeats: 99, ResultsApplied: 1200}}
	}})
	r := f.client("admin").getURL("/")
	if !r.has("7 activations fired, 1234 dispatched, 5 resent, 99 heartbeats, 1200 results applied") {
		t.Errorf("the list does not show the runtime's counters:\n%s", r.body)
	}
}

// TestTaskPageShowsSecondaryServers: a primary distributes a group task to
// a secondary, the secondary reports a result, and the primary's console
// shows the secondary's statistics on the task page.
func TestTaskPageShowsSecondaryServers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	link := hierarchy.NewInProc()
	build := func(cfg hierarchy.Config, groups ...scope.AdminGroup) (*hierarchy.Node, *task.Manager) {
		reg := task.NewRegistry()
		must(t, reg.Register(task.TaskType{Application: appES, Name: "virus_scan"}))
		inv := inmem.New()
		must(t, inv.PutGroups(context.Background(), groups...))
		clk := clock.NewMock()
		clk.Set(start)
		m, err := task.New(task.Config{Store: memstore.New(), Registry: reg, Inventory: inv, Clock: clk, Authorizer: hierarchy.ReadOnly(nil)})
		must(t, err)
		cfg.Manager, cfg.Inventory, cfg.Link, cfg.Clock = m, inv, link, clk
		n, err := hierarchy.New(cfg)
		must(t, err)
		link.Register(n)
		return n, m
	}
	primary, pm := build(hierarchy.Config{ID: "primary", Role: scope.Primary,
		Children: []hierarchy.Child{{ID: "branch", Role: scope.Secondary, Group: "g-branch"}}},
		scope.AdminGroup{ID: "g-root"}, scope.AdminGroup{ID: "g-branch", Parent: "g-root"})
	branch, bm := build(hierarchy.Config{ID: "branch", Role: scope.Secondary, Parent: "primary", Root: "managed"}, scope.AdminGroup{ID: "managed"})
	tk, err := pm.Create(ctx, task.System, task.Task{Name: "Weekly scan", Application: appES, Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Group, Group: "g-root", DistributeToServers: true}, Schedule: schedule.Default(schedule.Manual, time.Time{}, time.UTC)})
	must(t, err)
	must(t, primary.Distribute(ctx))
	views, err := branch.Tasks(ctx)
	must(t, err)
	for _, v := range views {
		_, err := bm.Runtime().RecordResults(ctx, []task.Result{{TaskID: v.Task.ID, DeviceID: "pc-1", RunID: 1, Seq: 2, State: task.Completed}})
		must(t, err)
	}
	must(t, branch.Report(ctx))

	c, err := console.New(console.Config{Manager: pm, Hierarchy: primary, Actor: func(*http.Request) (task.Actor, error) { return task.Actor{ID: "admin"}, nil }})
	must(t, err)
	w := httptest.NewRecorder()
	c.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/tasks/"+tk.ID, nil))
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, "Statistics from secondary Administration Servers") ||
		!strings.Contains(body, "<td>branch</td>") || !strings.Contains(body, "100.0%") {
		t.Errorf("task page (%d) lacks the branch's statistics:\n%s", w.Code, body)
	}
}
