package engine_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

// readFailStore is a memstore whose result reads fail while fail is set
// (a busy or unreachable database).
type readFailStore struct {
	*memstore.Store
	fail atomic.Bool
}

func (s *readFailStore) GetResult(ctx context.Context, taskID, deviceID string) (storage.ResultRecord, error) {
	if s.fail.Load() {
		return storage.ResultRecord{}, errors.New("database is busy")
	}
	return s.Store.GetResult(ctx, taskID, deviceID)
}

// A device's result that the intake cannot check because the store failed
// to answer is neither rejected nor acknowledged: the device resends it
// and it is recorded once the store answers. Before, a store error while
// checking the run counted as "not the device's run": the result was
// rejected, acknowledged and lost (seen after a server kill in the HTTPS
// channel's 100,000-agent load test: 536 results).
func TestStoreErrorWhileCheckingARunLosesNoResult(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inv := inmem.New()
	must(t, inv.PutGroups(ctx, scope.AdminGroup{ID: "g", Name: "g"}, scope.AdminGroup{ID: "h", Name: "h"}))
	must(t, inv.PutDevices(ctx, scope.Device{ID: "d1", GroupID: "g", Connected: true}))
	clk := clock.NewMock()
	clk.Set(t0)
	store := &readFailStore{Store: memstore.New()}
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, Location: time.UTC, ReplicaID: "server-1"})
	must(t, err)
	m, err := task.New(task.Config{Store: store, Registry: registry(t), Inventory: inv, Clock: clk, Location: time.UTC, Dispatcher: srv})
	must(t, err)
	rec := &recorder{}
	must(t, srv.Open(ctx, m, rec))
	tk, err := m.Create(ctx, task.System, task.Task{Name: "scan", Application: appES, Type: "virus_scan", Scope: scope.Scope{Kind: scope.Group, Group: "g"}})
	must(t, err)
	run, err := m.Start(ctx, task.System, tk.ID)
	must(t, err)
	must(t, srv.Tick(ctx))
	send := func(key string, seq int64, st task.State) {
		srv.Handle(ctx, transport.Message{Kind: transport.Results, Device: "d1", Key: key, Results: []transport.Result{{
			TaskID: tk.ID, RunID: run.ID, Seq: seq, State: string(st), StartedAt: clk.Now(), UpdatedAt: clk.Now(),
		}}})
		must(t, srv.Tick(ctx))
	}
	send("r-1", transport.SeqDevice+1, task.Running)
	if !rec.acked("d1", "r-1") {
		t.Fatal("the running report was not acknowledged")
	}
	// The device leaves the task's scope while its run goes on: its
	// report is now checked against its stored result.
	must(t, inv.PutDevices(ctx, scope.Device{ID: "d1", GroupID: "h", Connected: true}))
	clk.Add(16 * time.Minute)
	must(t, srv.Tick(ctx))
	rec.take()

	store.fail.Store(true)
	send("r-2", transport.SeqDevice+2, task.Completed)
	if rec.acked("d1", "r-2") {
		t.Fatal("a result the server could not check was acknowledged (the device will not resend it)")
	}
	if n := srv.Stats().Rejected; n != 0 {
		t.Fatalf("%d items rejected for a store error, want none", n)
	}
	store.fail.Store(false)
	send("r-2", transport.SeqDevice+2, task.Completed)
	if !rec.acked("d1", "r-2") {
		t.Fatal("the resent result was not acknowledged")
	}
	r, err := m.Result(ctx, task.System, tk.ID, "d1")
	must(t, err)
	if r.State != task.Completed {
		t.Fatalf("d1's result is %s, want completed", r.State)
	}
}
