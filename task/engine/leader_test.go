package engine_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
)

func sentStarts(l *startLog) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, k := range l.starts {
		n += k
	}
	return n
}

// On a store without storage.Claimer (memstore) only the leader
// dispatches: a second replica is refused with a typed error instead of
// dispatching the same starts from its own memory; once the first
// replica's lease expired (on the store's clock, here memstore's injected
// one: no test sleeps) another may take over, and the old one, waking up,
// fails its Tick and sends nothing.
func TestSecondReplicaOnAStoreWithoutClaimerIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inv, clk, _ := replicaFleet(t, 3)
	st := memstore.NewWith(memstore.Config{Clock: clk})
	open := func(id string) (*task.Manager, *engine.Server, *startLog, error) {
		srv, err := engine.New(engine.Config{Store: st, Inventory: inv, Clock: clk, ReplicaID: id, LeaseTTL: 10 * time.Second})
		must(t, err)
		m, err := task.New(task.Config{Store: st, Registry: registry(t), Inventory: inv, Clock: clk, Dispatcher: srv})
		must(t, err)
		l := &startLog{starts: map[string]int{}}
		return m, srv, l, srv.Open(ctx, m, l)
	}
	m0, s0, l0, err := open("r0")
	must(t, err)
	_, _, _, err = open("r1")
	var re *engine.ReplicaError
	if !errors.Is(err, engine.ErrOtherReplica) || !errors.As(err, &re) || re.Replica != "r1" || re.Leader != "r0" {
		t.Fatalf("second replica's Open: %v, want a *ReplicaError (r1 beside r0) matching ErrOtherReplica", err)
	}
	tk, err := m0.Create(ctx, task.System, task.Task{Name: "scan", Application: appES, Type: "virus_scan", Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, nil)})
	must(t, err)
	_, err = m0.Start(ctx, task.System, tk.ID)
	must(t, err)
	must(t, s0.Tick(ctx))
	if n := sentStarts(l0); n != 3 {
		t.Fatalf("the leader sent %d starts, want 3", n)
	}
	// r0 stalls past its lease; r1 may now run.
	clk.Add(11 * time.Second)
	_, s1, l1, err := open("r1")
	must(t, err)
	must(t, s1.Tick(ctx))
	// r0 wakes up with resends due: it no longer leads, so it refuses to
	// run and sends nothing, while r1 keeps its lease and resends.
	for range 3 {
		clk.Add(5 * time.Second)
		must(t, s1.Tick(ctx))
	}
	if err := s0.Tick(ctx); !errors.Is(err, engine.ErrOtherReplica) {
		t.Fatalf("the old leader's Tick: %v, want ErrOtherReplica", err)
	}
	if n := sentStarts(l0); n != 3 {
		t.Fatalf("the old leader sent %d starts after losing the lease, want none more", n-3)
	}
	clk.Add(engine.DefaultRetryInterval)
	must(t, s1.Tick(ctx))
	if sentStarts(l1) == 0 {
		t.Fatal("the new leader resent nothing of the unanswered starts")
	}
}

// A server restarted with the same ReplicaID takes its own lease back at
// once (enginetest restarts its server that way).
func TestRestartedReplicaTakesItsLeaseBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inv, clk, _ := replicaFleet(t, 1)
	st := memstore.NewWith(memstore.Config{Clock: clk})
	for range 2 {
		srv, err := engine.New(engine.Config{Store: st, Inventory: inv, Clock: clk, ReplicaID: "only"})
		must(t, err)
		m, err := task.New(task.Config{Store: st, Registry: registry(t), Inventory: inv, Clock: clk, Dispatcher: srv})
		must(t, err)
		must(t, srv.Open(ctx, m, &startLog{starts: map[string]int{}}))
		must(t, srv.Tick(ctx))
	}
}

// leaseCounter counts a store's AcquireLeader calls.
type leaseCounter struct {
	*memstore.Store
	calls atomic.Int64
}

func (c *leaseCounter) AcquireLeader(ctx context.Context, p storage.LeaderParams) (storage.Leadership, error) {
	c.calls.Add(1)
	return c.Store.AcquireLeader(ctx, p)
}

// TestLeaderRenewsItsLeaseEveryQuarterTTL: a leader ticking every 100 ms
// renews its lease every LeaseTTL/4, not at every Tick (each renewal is a
// write transaction: ten a second on the store a fan-out and the device
// results also need; 293 calls, 9.6 s during a 100,000-device start on
// PostgreSQL). A replica that does not lead still asks at every Tick.
func TestLeaderRenewsItsLeaseEveryQuarterTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inv, clk, _ := replicaFleet(t, 3)
	st := &leaseCounter{Store: memstore.NewWith(memstore.Config{Clock: clk})}
	open := func(id string) (*engine.Server, error) {
		srv, err := engine.New(engine.Config{Store: st, Inventory: inv, Clock: clk, ReplicaID: id, LeaseTTL: 10 * time.Second})
		must(t, err)
		m, err := task.New(task.Config{Store: st, Registry: registry(t), Inventory: inv, Clock: clk, Dispatcher: srv})
		must(t, err)
		return srv, srv.Open(ctx, m, &startLog{starts: map[string]int{}})
	}
	srv, err := open("r0")
	must(t, err)
	must(t, srv.Tick(ctx)) // takes the lease
	base := st.calls.Load()
	for range 24 { // 2.4 s
		clk.Add(100 * time.Millisecond)
		must(t, srv.Tick(ctx))
	}
	if n := st.calls.Load() - base; n != 0 {
		t.Fatalf("%d lease renewals within LeaseTTL/4 of taking it, want 0", n)
	}
	clk.Add(100 * time.Millisecond) // 2.5 s: a quarter of the lease
	must(t, srv.Tick(ctx))
	if n := st.calls.Load() - base; n != 1 {
		t.Fatalf("%d lease renewals at LeaseTTL/4, want 1", n)
	}
	// The lease is still held, whatever the renewals skipped: another
	// replica is refused (memstore has no storage.Claimer).
	clk.Add(7 * time.Second) // 9.5 s after the last renewal
	if _, err := open("r1"); !errors.Is(err, engine.ErrOtherReplica) {
		t.Fatalf("second replica's Open: %v, want ErrOtherReplica", err)
	}
}
