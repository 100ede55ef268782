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

// eventFailStore is a memstore whose history-event writes fail while fail
// is set (a full disk, a database killed mid-ingest).
type eventFailStore struct {
	*memstore.Store
	fail atomic.Bool
}

func (s *eventFailStore) AppendEvents(ctx context.Context, p storage.AppendEventsParams) (int, error) {
	if s.fail.Load() {
		return 0, errors.New("disk full")
	}
	return s.Store.AppendEvents(ctx, p)
}

// A Results message whose history events cannot be written is not
// acknowledged (today it was, and the events were lost); the device's
// resend, once the store works again, stores the result and its event.
func TestResultsNotAcknowledgedWhenEventWriteFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := &eventFailStore{Store: memstore.New()}
	srv, m, _, rec, tk, run := startedRun(t, store, "d1")
	msg := transport.Message{Kind: transport.Results, Device: "d1", Key: "r-1", Results: []transport.Result{{
		TaskID: tk.ID, RunID: run.ID, Seq: transport.SeqDevice + 1, State: string(task.Completed),
		StartedAt: t0, FinishedAt: t0, UpdatedAt: t0,
	}}}
	store.fail.Store(true)
	srv.Handle(ctx, msg)
	must(t, srv.Tick(ctx))
	if rec.acked("d1", "r-1") {
		t.Fatal("results whose history events were not stored were acknowledged")
	}
	store.fail.Store(false)
	srv.Handle(ctx, msg) // the agent resends what was not acknowledged
	must(t, srv.Tick(ctx))
	if !rec.acked("d1", "r-1") {
		t.Fatal("the resent results were not acknowledged")
	}
	if r := b2result(t, m, tk.ID, "d1"); r.State != task.Completed {
		t.Fatalf("d1 is %s, want completed", r.State)
	}
	evs, err := store.ListEvents(ctx, storage.ListEventsParams{TaskID: tk.ID, DeviceID: "d1"})
	must(t, err)
	n := 0
	for _, e := range evs {
		if e.Level == string(task.EventResult) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d result events stored for d1, want 1: %+v", n, evs)
	}

	// An Events message is not acknowledged either while its write fails.
	ev := transport.Message{Kind: transport.Events, Device: "d1", Key: "e-1", Events: []transport.Event{{
		TaskID: tk.ID, RunID: run.ID, Level: string(task.EventProgress), Severity: string(task.SeverityInfo), Message: "50%", Key: "d1/progress/1",
	}}}
	store.fail.Store(true)
	srv.Handle(ctx, ev)
	if rec.acked("d1", "e-1") {
		t.Fatal("events that were not stored were acknowledged")
	}
	store.fail.Store(false)
	srv.Handle(ctx, ev)
	if !rec.acked("d1", "e-1") {
		t.Fatal("the resent events were not acknowledged")
	}
}

func b2result(t *testing.T, m *task.Manager, id string, d scope.DeviceID) task.Result {
	t.Helper()
	r, err := m.Result(context.Background(), task.System, id, d)
	must(t, err)
	return r
}

// startedRun opens a server on store over connected devices of group "g"
// and starts a manual run of a group task, dispatched at t0; the
// recorder holds what the server sends after that.
func startedRun(t *testing.T, store storage.Store, devices ...scope.DeviceID) (*engine.Server, *task.Manager, *clock.Mock, *recorder, *task.Task, task.Run) {
	t.Helper()
	ctx := context.Background()
	inv := inmem.New()
	must(t, inv.PutGroups(ctx, scope.AdminGroup{ID: "g", Name: "g"}))
	for _, d := range devices {
		must(t, inv.PutDevices(ctx, scope.Device{ID: d, GroupID: "g", Connected: true}))
	}
	clk := clock.NewMock()
	clk.Set(t0)
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, Location: time.UTC})
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
	rec.take()
	return srv, m, clk, rec, tk, run
}
