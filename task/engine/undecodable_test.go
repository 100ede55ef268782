package engine_test

import (
	"context"
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

// A task whose stored settings no longer decode (the host changed its
// settings type) does not keep the server from opening: it is skipped,
// logged and counted, and every other task runs.
func TestOpenSkipsUndecodableTask(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	type v1 struct {
		Level string `json:"level"`
	}
	type v2 struct {
		Level int `json:"level"`
	}
	inv := inmem.New()
	must(t, inv.PutGroups(context.Background(), scope.AdminGroup{ID: "g", Name: "g"}))
	must(t, inv.PutDevices(context.Background(), scope.Device{ID: "d1", GroupID: "g", Connected: true}))
	clk := clock.NewMock()
	clk.Set(t0)
	store := memstore.New()
	regOld := registry(t)
	must(t, regOld.Register(task.TaskType{Application: appES, Name: "tune", Settings: v1{}}))
	old, err := task.New(task.Config{Store: store, Registry: regOld, Inventory: inv, Clock: clk})
	must(t, err)
	_, err = old.Create(ctx, task.System, task.Task{Name: "tune", Application: appES, Type: "tune", Scope: scope.Scope{Kind: scope.Group, Group: "g"}, Settings: v1{Level: "high"}})
	must(t, err)
	good, err := old.Create(ctx, task.System, task.Task{Name: "scan", Application: appES, Type: "virus_scan", Scope: scope.Scope{Kind: scope.Group, Group: "g"}})
	must(t, err)

	reg := registry(t)
	must(t, reg.Register(task.TaskType{Application: appES, Name: "tune", Settings: v2{}}))
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, Location: time.UTC})
	must(t, err)
	m, err := task.New(task.Config{Store: store, Registry: reg, Inventory: inv, Clock: clk, Location: time.UTC, Dispatcher: srv})
	must(t, err)
	rec := &recorder{}
	must(t, srv.Open(ctx, m, rec))
	if n := srv.Stats().Undecodable; n != 1 {
		t.Fatalf("Stats().Undecodable = %d, want 1", n)
	}
	run, err := m.Start(ctx, task.System, good.ID)
	must(t, err)
	must(t, srv.Tick(ctx))
	started := false
	for _, x := range rec.take() {
		if x.Kind == transport.StartRun && x.Device == "d1" && x.Start != nil && x.Start.TaskID == good.ID && x.Start.RunID == run.ID {
			started = true
		}
	}
	if !started {
		t.Fatal("the decodable task was not started on d1")
	}
}
