package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

// A restarted server resends every start that no device answered, not
// only the first page of them: with more unanswered starts than one store
// page (storage.MaxListLimit, 10,000) Open recovered 10,000 and the
// other runs were lost (found by the HTTPS channel's 50,000-agent load
// test).
func TestOpenRecoversEveryUnansweredStart(t *testing.T) {
	t.Parallel()
	const n = 10_500
	ctx := context.Background()
	inv := inmem.New()
	must(t, inv.PutGroups(ctx, scope.AdminGroup{ID: "g", Name: "g"}))
	devs := make([]scope.Device, n)
	for i := range devs {
		devs[i] = scope.Device{ID: scope.DeviceID(fmt.Sprintf("d%05d", i)), GroupID: "g", Connected: true}
	}
	must(t, inv.PutDevices(ctx, devs...))
	clk := clock.NewMock()
	clk.Set(t0)
	store := memstore.New()
	open := func() (*engine.Server, *task.Manager, *recorder) {
		srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, Location: time.UTC, ReplicaID: "server-1"})
		must(t, err)
		m, err := task.New(task.Config{Store: store, Registry: registry(t), Inventory: inv, Clock: clk, Location: time.UTC, Dispatcher: srv})
		must(t, err)
		rec := &recorder{}
		must(t, srv.Open(ctx, m, rec))
		return srv, m, rec
	}
	srv, m, _ := open()
	tk, err := m.Create(ctx, task.System, task.Task{Name: "scan", Application: appES, Type: "virus_scan", Scope: scope.Scope{Kind: scope.Group, Group: "g"}})
	must(t, err)
	run, err := m.Start(ctx, task.System, tk.ID)
	must(t, err)
	must(t, srv.Tick(ctx)) // sent; no device answers
	must(t, srv.Close(ctx))

	clk.Add(time.Minute)
	srv, _, rec := open()
	clk.Add(2 * time.Minute)
	must(t, srv.Tick(ctx))
	got := map[scope.DeviceID]bool{}
	for _, msg := range rec.take() {
		if msg.Kind == transport.StartRun && msg.Start != nil && msg.Start.RunID == run.ID {
			got[msg.Device] = true
		}
	}
	if len(got) != n {
		t.Fatalf("the restarted server resent the start to %d devices, want all %d", len(got), n)
	}
}
