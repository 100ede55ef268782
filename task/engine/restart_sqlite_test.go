package engine_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

// A server dies in the middle of dispatching a manual start (some starts
// sent, some claimed but not sent, the rest still scheduled) and a new
// process with another replica id opens the same SQLite file, as in the
// HTTPS channel's load test (SIGKILL and restart). Every device's report
// of the run is taken: those the dead server sent it to report before
// the new process took their starts over (the run must count as issued
// to them), the others after. Nothing is rejected, every device records
// the run once, and none gets a start of another run. The load test saw
// results of such a run rejected with the reason "run" (issue #16): the
// new process does not have the run in memory, so the check reads the
// device's stored result, and it read it with the device's request
// context, canceled when the request had timed out waiting for the busy
// server; the failed read counted as "not the device's run".
func TestRestartMidDispatchTakesEveryIssuedRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const n = 300
	path := filepath.Join(t.TempDir(), "restart.db")
	inv, clk, devs := replicaFleet(t, n)
	cfg := func(_ int, c *engine.Config) {
		c.LeaseTTL, c.RetryInterval, c.ClaimBatch, c.DispatchWorkers = time.Second, time.Second, 100, 1
		c.EngineClockLeases = true
	}
	ms, srvs, logs, _ := sqliteReplicas(t, path, 1, inv, clk, cfg)
	tk, err := ms[0].Create(ctx, task.System, task.Task{Name: "scan", Application: appES, Type: "virus_scan", Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, nil)})
	must(t, err)
	run, err := ms[0].Start(ctx, task.System, tk.ID)
	must(t, err)
	// The first process sends one batch, claims the next and dies there
	// (its goroutine stays blocked, holding nothing).
	claims := 0
	dead, never := make(chan struct{}), make(chan struct{})
	engine.SetAfterClaim(srvs[0], func() {
		if claims++; claims == 2 {
			close(dead)
			<-never
		}
	})
	go func() { _ = srvs[0].Tick(ctx) }()
	<-dead
	sentBefore := map[scope.DeviceID]bool{}
	for k := range logs[0].starts {
		sentBefore[scope.DeviceID(strings.Split(k, "/")[1])] = true
	}
	if len(sentBefore) != 100 {
		t.Fatalf("the dead process sent %d starts, want its first batch of 100", len(sentBefore))
	}

	// The new process: another store handle, Manager and replica id.
	st, err := sqlstore.OpenSQLite(ctx, path)
	must(t, err)
	t.Cleanup(func() { st.Close() })
	c := engine.Config{Store: st, Inventory: inv, Clock: clk, ReplicaID: "after-restart"}
	cfg(0, &c)
	srv, err := engine.New(c)
	must(t, err)
	m, err := task.New(task.Config{Store: st, Registry: registry(t), Inventory: inv, Clock: clk, Dispatcher: srv})
	must(t, err)
	after := &startLog{starts: map[string]int{}}
	must(t, srv.Open(ctx, m, after))
	report := func(ctx context.Context, d scope.DeviceID) {
		srv.Handle(ctx, transport.Message{Kind: transport.Results, Device: d, Key: "r/" + string(d), Results: []transport.Result{{
			TaskID: tk.ID, RunID: run.ID, Seq: transport.SeqDevice, State: string(task.Completed), StartedAt: clk.Now(), FinishedAt: clk.Now(), UpdatedAt: clk.Now(), Progress: 100}}})
	}
	// Devices heartbeat to the new process, and those the dead one sent
	// the start to report it before any takeover.
	for _, d := range devs {
		srv.Handle(ctx, transport.Message{Kind: transport.Heartbeat, Device: d.ID, Heartbeat: &transport.HeartbeatInfo{}})
	}
	// Their requests are gone before the intake reads the store (the
	// device's HTTP request timed out while the busy server took other
	// messages: the request's context is canceled). Without the run in
	// memory (a manual task without "run missed tasks") the check needs
	// the stored result, read regardless of the request.
	gone, hangUp := context.WithCancel(ctx)
	hangUp()
	for d := range sentBefore {
		report(gone, d)
	}
	must(t, srv.Tick(ctx))
	if s := srv.Stats(); s.Rejected != 0 || s.ResultsApplied != int64(len(sentBefore)) {
		t.Fatalf("reports whose requests were gone: applied %d, rejected %d %v", s.ResultsApplied, s.Rejected, s.RejectedBy)
	}
	if a := after.acks(); len(a) != len(sentBefore) {
		t.Fatalf("%d of %d reports acknowledged", len(a), len(sentBefore))
	}
	// After the dead process's leases expire, the new one takes its
	// starts over; every device that got a start reports.
	clk.Add(3 * time.Second)
	must(t, srv.Tick(ctx))
	clk.Add(3 * time.Second)
	must(t, srv.Tick(ctx))
	got := map[scope.DeviceID]bool{}
	for k := range after.starts {
		parts := strings.Split(k, "/")
		if parts[2] != fmt.Sprint(run.ID) {
			t.Fatalf("a start of another run: %s", k)
		}
		got[scope.DeviceID(parts[1])] = true
	}
	for _, d := range devs {
		if !sentBefore[d.ID] && !got[d.ID] {
			t.Fatalf("%s never got the start", d.ID)
		}
		if !sentBefore[d.ID] {
			report(ctx, d.ID)
		}
	}
	must(t, srv.Tick(ctx))
	if s := srv.Stats(); s.Rejected != 0 || s.ResultsApplied != n {
		t.Fatalf("after the restart: applied %d of %d results, rejected %d %v", s.ResultsApplied, n, s.Rejected, s.RejectedBy)
	}
	stats, err := m.Statistics(ctx, task.System, tk.ID)
	must(t, err)
	if stats.ByState[task.Completed] != n {
		t.Fatalf("statistics %v, want %d completed", stats.ByState, n)
	}
}
