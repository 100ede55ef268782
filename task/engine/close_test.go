package engine_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Close records the results the intake buffered and acknowledges them,
// then sends nothing more; every later call fails with ErrClosed, and a
// second Close is a no-op.
func TestCloseFlushesThenRefuses(t *testing.T) {
	t.Parallel()
	f := newFleet3(t)
	key := fmt.Sprintf("r/d1/t4/%d/2", f.run)
	f.srv.Handle(f.ctx, transport.Message{Kind: transport.Results, Device: "d1", Key: key,
		Results: []transport.Result{{TaskID: "t4", RunID: f.run, Seq: 2, State: string(task.Completed), Progress: 100}}})
	must(t, f.srv.Close(f.ctx))
	r, err := f.m.Result(f.ctx, task.System, "t4", "d1")
	must(t, err)
	if r.State != task.Completed {
		t.Errorf("after Close the buffered result is %q, want completed", r.State)
	}
	acked := false
	for _, m := range f.rec.take() {
		if m.Kind == transport.Ack && len(m.Acks) == 1 && m.Acks[0] == key {
			acked = true
		}
	}
	if !acked {
		t.Error("Close did not acknowledge the result it recorded")
	}
	if err := f.srv.Close(f.ctx); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	tk, err := f.m.Get(f.ctx, task.System, "t4")
	must(t, err)
	for name, err := range map[string]error{
		"Tick":              f.srv.Tick(f.ctx),
		"StartRun":          f.srv.StartRun(f.ctx, tk, task.Run{}),
		"StopRun":           f.srv.StopRun(f.ctx, tk),
		"TaskSaved":         f.srv.TaskSaved(f.ctx, tk),
		"TaskDeleted":       f.srv.TaskDeleted(f.ctx, "t4"),
		"UpdatesDownloaded": f.srv.UpdatesDownloaded(f.ctx, "k"),
		"VirusOutbreak":     f.srv.VirusOutbreak(f.ctx, schedule.AppTypes(0), f.clk.Now()),
		"Open":              f.srv.Open(f.ctx, f.m, f.rec),
	} {
		if !errors.Is(err, engine.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	// A device message after Close is dropped and answered by nothing.
	f.srv.Handle(f.ctx, transport.Message{Kind: transport.Heartbeat, Device: "d2"})
	if got := f.rec.take(); len(got) != 0 {
		t.Errorf("the closed server sent %d messages, want none", len(got))
	}
}

// Close releases the leader lease: another replica on a store without
// storage.Claimer runs at once instead of being refused until LeaseTTL
// has passed.
func TestCloseReleasesTheLeaderLease(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	inv, clk, _ := replicaFleet(t, 1)
	st := memstore.NewWith(memstore.Config{Clock: clk})
	open := func(id string) (*engine.Server, error) {
		srv, err := engine.New(engine.Config{Store: st, Inventory: inv, Clock: clk, ReplicaID: id, LeaseTTL: time.Hour})
		must(t, err)
		m, err := task.New(task.Config{Store: st, Registry: registry(t), Inventory: inv, Clock: clk, Dispatcher: srv})
		must(t, err)
		return srv, srv.Open(ctx, m, &startLog{starts: map[string]int{}})
	}
	s0, err := open("r0")
	must(t, err)
	must(t, s0.Tick(ctx))
	must(t, s0.Close(ctx))
	clk.Add(time.Millisecond) // memstore's lease clock: past the released lease
	s1, err := open("r1")
	if err != nil {
		t.Fatalf("a replica opened after the leader's Close: %v, want it to lead", err)
	}
	must(t, s1.Tick(ctx))
}
