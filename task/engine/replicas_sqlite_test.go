package engine_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

// startLog records the StartRun messages of one replica.
type startLog struct {
	mu     sync.Mutex
	starts map[string]int
	stops  int
	acked  []string // device/key of every acknowledgement
}

// acks returns and forgets the acknowledgements sent.
func (l *startLog) acks() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.acked
	l.acked = nil
	return out
}

func (l *startLog) Send(_ context.Context, m transport.Message) error {
	if m.Kind == transport.Ack {
		l.mu.Lock()
		for _, k := range m.Acks {
			l.acked = append(l.acked, string(m.Device)+"/"+k)
		}
		l.mu.Unlock()
	}
	if m.Kind == transport.StartRun {
		l.mu.Lock()
		l.starts[fmt.Sprintf("%s/%s/%d", m.Start.TaskID, m.Device, m.Start.RunID)]++
		l.mu.Unlock()
	}
	if m.Kind == transport.StopRun {
		l.mu.Lock()
		l.stops++
		l.mu.Unlock()
	}
	return nil
}

// replicaFleet returns an inventory of n connected devices in group
// g-all except those listed offline, and a fake clock at 09:00.
func replicaFleet(t *testing.T, n int, offline ...int) (*inmem.Inventory, *clock.Mock, []scope.Device) {
	t.Helper()
	clk := clock.NewMock()
	clk.Set(t0.Add(9 * time.Hour))
	groups, devs := fleet(n)
	inv := inmem.New()
	must(t, inv.PutGroups(context.Background(), groups...))
	for i := range devs {
		devs[i].Connected = !slices.Contains(offline, i)
	}
	must(t, inv.PutDevices(context.Background(), devs...))
	return inv, clk, devs
}

// sqliteReplicas opens n replicas on one SQLite file, each with its own
// store, Manager and start log; cfg adjusts replica i's engine config.
func sqliteReplicas(t *testing.T, path string, n int, inv *inmem.Inventory, clk clock.Clock, cfg func(i int, c *engine.Config)) ([]*task.Manager, []*engine.Server, []*startLog, *sqlstore.Store) {
	t.Helper()
	ctx := context.Background()
	var ms []*task.Manager
	var srvs []*engine.Server
	var logs []*startLog
	var last *sqlstore.Store
	for i := range n {
		st, err := sqlstore.OpenSQLite(ctx, path)
		must(t, err)
		t.Cleanup(func() { st.Close() })
		last = st
		c := engine.Config{Store: st, Inventory: inv, Clock: clk, ReplicaID: fmt.Sprintf("r%d", i)}
		if cfg != nil {
			cfg(i, &c)
		}
		srv, err := engine.New(c)
		must(t, err)
		m, err := task.New(task.Config{Store: st, Registry: registry(t), Inventory: inv, Clock: clk, Dispatcher: srv})
		must(t, err)
		l := &startLog{starts: map[string]int{}}
		must(t, srv.Open(ctx, m, l))
		ms, srvs, logs = append(ms, m), append(srvs, srv), append(logs, l)
	}
	return ms, srvs, logs, last
}

// TestReplicasShareOneStore: two Servers on one SQLite file (the claim
// layer without PostgreSQL): a manual start on one replica is dispatched
// once per device by whichever replica claims it (SQLite serializes the
// claims, so one replica may take them all); nothing is fired twice.
func TestReplicasShareOneStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "replicas.db")
	inv, clk, _ := replicaFleet(t, 300)
	type rep struct {
		m   *task.Manager
		srv *engine.Server
		log *startLog
	}
	ms, srvs, logs, _ := sqliteReplicas(t, path, 2, inv, clk, func(_ int, c *engine.Config) { c.ClaimBatch = 50 })
	var reps []rep
	for i := range ms {
		reps = append(reps, rep{ms[i], srvs[i], logs[i]})
	}
	tk, err := reps[0].m.Create(ctx, task.System, task.Task{Name: "scan", Application: appES, Type: "virus_scan", Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, nil)})
	must(t, err)
	run, err := reps[0].m.Start(ctx, task.System, tk.ID)
	must(t, err)
	if len(run.Devices) != 300 {
		t.Fatalf("run for %d devices, want 300", len(run.Devices))
	}
	for range 3 {
		var wg sync.WaitGroup
		for _, r := range reps {
			wg.Go(func() { must(t, r.srv.Tick(ctx)) })
		}
		wg.Wait()
	}
	all := map[string]int{}
	for _, r := range reps {
		for k, n := range r.log.starts {
			all[k] += n
		}
	}
	if len(all) != 300 {
		t.Fatalf("%d devices got a start, want 300", len(all))
	}
	for k, n := range all {
		if n != 1 {
			t.Fatalf("%s sent %d times", k, n)
		}
	}
	st, err := reps[1].m.Statistics(ctx, task.System, tk.ID)
	must(t, err)
	if st.ByState[task.Pending] != 300 {
		t.Fatalf("statistics %+v, want 300 pending", st.ByState)
	}
	// Stopping on the replica that did not start the task tells every
	// device to stop, also those the other replica dispatched (none is
	// recorded "stopped before it started": they all got their start).
	must(t, reps[1].m.Stop(ctx, task.System, tk.ID))
	if reps[1].log.stops != 300 {
		t.Fatalf("replica 1 sent %d StopRun, want 300", reps[1].log.stops)
	}
	st, err = reps[0].m.Statistics(ctx, task.System, tk.ID)
	must(t, err)
	if st.ByState[task.Stopped] != 0 {
		t.Fatalf("statistics after stop %+v: dispatched starts recorded stopped", st.ByState)
	}
	fired := reps[0].srv.Stats().Fired + reps[1].srv.Stats().Fired
	if fired != 0 {
		t.Fatalf("fired %d server activations without server tasks", fired)
	}
}

func TestReplicaConfigValidation(t *testing.T) {
	t.Parallel()
	st, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "v.db"))
	must(t, err)
	defer st.Close()
	_, err = engine.New(engine.Config{Store: st, Inventory: inmem.New(), ClaimBatch: -1, LeaseTTL: -time.Second, DispatchWorkers: engine.MaxDispatchWorkers + 1})
	var ve engine.ValidationErrors
	if !errors.As(err, &ve) || !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("New: %v", err)
	}
	got := map[string]bool{}
	for _, e := range ve {
		got[e.Field] = true
	}
	if !got["ClaimBatch"] || !got["LeaseTTL"] || !got["DispatchWorkers"] {
		t.Fatalf("fields %v, want ClaimBatch, LeaseTTL and DispatchWorkers", got)
	}
}

// TestReplicasFireServerScheduleOnce: two replicas tick a daily
// Administration Server task (fired by the server) for three simulated days with a
// leader lease so short that leadership changes hands between ticks; each
// activation is fired and dispatched once.
func TestReplicasFireServerScheduleOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "leader.db")
	clk := clock.NewMock()
	clk.Set(t0.Add(9 * time.Hour))
	groups, devs := fleet(5)
	inv := inmem.New()
	must(t, inv.PutGroups(ctx, groups...))
	for i := range devs {
		devs[i].Connected = true
	}
	must(t, inv.PutDevices(ctx, devs...))
	var srvs []*engine.Server
	var logs []*startLog
	var m0 *task.Manager
	var db0 *sqlstore.Store
	for i := range 2 {
		st, err := sqlstore.OpenSQLite(ctx, path)
		must(t, err)
		t.Cleanup(func() { st.Close() })
		srv, err := engine.New(engine.Config{Store: st, Inventory: inv, Clock: clk, Location: time.UTC, ReplicaID: fmt.Sprintf("r%d", i), LeaseTTL: time.Microsecond})
		must(t, err)
		m, err := task.New(task.Config{Store: st, Registry: registry(t), Inventory: inv, Clock: clk, Dispatcher: srv})
		must(t, err)
		if m0 == nil {
			m0, db0 = m, st
		}
		l := &startLog{starts: map[string]int{}}
		must(t, srv.Open(ctx, m, l))
		srvs, logs = append(srvs, srv), append(logs, l)
	}
	s := sched(schedule.EveryDays, nil)
	from := clk.Now()
	tk, err := m0.Create(ctx, task.System, task.Task{Name: "daily backup", Application: appServer, Type: "backup",
		Scope: scope.Scope{Kind: scope.Server}, Schedule: s})
	must(t, err)
	for _, srv := range srvs { // the other replica learns of the task too
		must(t, srv.TaskSaved(ctx, tk))
	}
	for range 3 * 24 {
		clk.Add(time.Hour)
		var wg sync.WaitGroup
		for _, srv := range srvs {
			wg.Go(func() { must(t, srv.Tick(ctx)) })
		}
		wg.Wait()
	}
	want := expect(tk.Schedule, from, clk.Now(), time.UTC)
	if want < 3 {
		t.Fatalf("oracle: %d activations in 3 days", want)
	}
	fired := srvs[0].Stats().Fired + srvs[1].Stats().Fired
	if fired != int64(want) {
		t.Fatalf("fired %d activations, want %d", fired, want)
	}
	all := map[string]int{}
	for _, l := range logs {
		for k, n := range l.starts {
			all[k] += n
		}
	}
	if len(all) != want {
		t.Fatalf("%d (device, run) starts, want %d", len(all), want)
	}
	// Unanswered starts are resent (agents run a run id once); the
	// dispatch ledger has one row per dispatched (task, device, run).
	var rows, keys int
	must(t, db0.DB().QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT device_id || '/' || run_id) FROM dispatch_log`).Scan(&rows, &keys))
	if rows != want || keys != want {
		t.Fatalf("dispatch ledger: %d rows, %d distinct runs; want %d", rows, keys, want)
	}
}

// TestReplicaTakesOverExpiredDispatch: replica r0 dispatches a run and
// then goes silent (its starts never reach a device). Once the dispatch
// lease expired (on the injected clock), r1 takes the starts over and resends
// them; when r0 wakes up its lease renewal is rejected by the epoch, so it
// does not resend. The ledger still has one dispatch per device.
func TestReplicaTakesOverExpiredDispatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "takeover.db")
	inv, clk, _ := replicaFleet(t, 300)
	ms, srvs, logs, db := sqliteReplicas(t, path, 2, inv, clk, func(_ int, c *engine.Config) {
		c.LeaseTTL, c.RetryInterval = time.Second, time.Second
		c.EngineClockLeases = true // leases on the mock clock: no test waits for one
	})
	tk, err := ms[0].Create(ctx, task.System, task.Task{Name: "scan", Application: appES, Type: "virus_scan", Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, nil)})
	must(t, err)
	_, err = ms[0].Start(ctx, task.System, tk.ID)
	must(t, err)
	must(t, srvs[0].Tick(ctx))
	if got := srvs[0].Stats().Dispatched; got != 300 {
		t.Fatalf("r0 dispatched %d, want 300", got)
	}
	// r0 goes silent for longer than the dispatch lease
	// (RetryInterval + LeaseTTL, on the injected clock).
	clk.Add(2*time.Second + time.Millisecond)
	must(t, srvs[1].Tick(ctx))
	if got := srvs[1].Stats().TakenOver; got != 300 {
		t.Fatalf("r1 took over %d starts, want 300", got)
	}
	if len(logs[1].starts) != 300 {
		t.Fatalf("r1 resent %d starts, want 300", len(logs[1].starts))
	}
	before := len(logs[0].starts)
	must(t, srvs[0].Tick(ctx)) // its resends are due: the renewal fails
	st0 := srvs[0].Stats()
	if st0.Fenced != 300 || st0.Resent != 0 || st0.TakenOver != 0 {
		t.Fatalf("r0 stats %+v: want its 300 dispatches fenced, nothing resent or taken back", st0)
	}
	n := 0
	for _, k := range logs[0].starts {
		n += k
	}
	if n != before {
		t.Fatalf("r0 sent %d more starts after losing its leases", n-before)
	}
	var ledger, distinct int
	must(t, db.DB().QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT device_id) FROM dispatch_log`).Scan(&ledger, &distinct))
	if ledger != 300 || distinct != 300 {
		t.Fatalf("dispatch ledger %d rows for %d devices, want 300 each", ledger, distinct)
	}
}

// TestReplicaDispatchesAnOfflineDevicesMissedStart: with replicas, the
// start of a device that was offline when a "run missed tasks" run began
// is not kept in the planning replica's memory: any replica dispatches it
// (here r1, while r0, which planned it, never ticks), once, and keeps
// sending it until the device answers.
func TestReplicaDispatchesAnOfflineDevicesMissedStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "offline.db")
	inv, clk, devs := replicaFleet(t, 3, 2)
	ms, srvs, logs, _ := sqliteReplicas(t, path, 2, inv, clk, nil)
	tk, err := ms[0].Create(ctx, task.System, task.Task{Name: "scan", Application: appES, Type: "virus_scan", Scope: groupScope("g-all"),
		Schedule: sched(schedule.Manual, func(s *schedule.Schedule) { s.RunMissed = true })})
	must(t, err)
	run, err := ms[0].Start(ctx, task.System, tk.ID)
	must(t, err)
	must(t, srvs[1].Tick(ctx))
	if got := srvs[1].Stats().Dispatched; got != 3 {
		t.Fatalf("r1 dispatched %d starts, want 3 (the offline device's too)", got)
	}
	offline := fmt.Sprintf("%s/%s/%d", tk.ID, devs[2].ID, run.ID)
	if logs[1].starts[offline] != 1 || len(logs[0].starts) != 0 {
		t.Fatalf("starts r0 %v, r1 %v: want the offline device's start sent by r1", logs[0].starts, logs[1].starts)
	}
	r, err := ms[1].Result(ctx, task.System, tk.ID, devs[2].ID)
	must(t, err)
	if r.State != task.Pending || r.Message != "waiting for the device to become visible" {
		t.Fatalf("offline device's result %+v, want pending and waiting", r)
	}
	// Unanswered, it is resent each RetryInterval by r1 alone.
	clk.Add(engine.DefaultRetryInterval)
	must(t, srvs[0].Tick(ctx))
	must(t, srvs[1].Tick(ctx))
	if logs[1].starts[offline] != 2 || len(logs[0].starts) != 0 {
		t.Fatalf("after a retry interval: r0 %v, r1 %v", logs[0].starts, logs[1].starts)
	}
}

// TestLeaderReconcilesAStopWhoseReplicaDied: replica r0 takes a stop and
// dies before its devices answer; the leader (r1) rebuilds the order from
// the stored states and the stop marker at its next reconciliation
// (every ScopeRefresh) and tells the devices still running to stop. A
// task nobody stopped is left running.
func TestLeaderReconcilesAStopWhoseReplicaDied(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inv, clk, devs := replicaFleet(t, 5)
	ms, srvs, logs, _ := sqliteReplicas(t, filepath.Join(t.TempDir(), "reconcile.db"), 2, inv, clk, nil)
	var ids []string
	for i := range 2 {
		tk, err := ms[0].Create(ctx, task.System, task.Task{Name: fmt.Sprintf("scan %d", i), Application: appES, Type: "virus_scan", Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, nil)})
		must(t, err)
		run, err := ms[0].Start(ctx, task.System, tk.ID)
		must(t, err)
		ids = append(ids, tk.ID)
		must(t, srvs[1].Tick(ctx)) // r1 leads and dispatches
		var rs []task.Result
		for _, d := range devs {
			rs = append(rs, task.Result{TaskID: tk.ID, DeviceID: d.ID, RunID: run.ID, Seq: transport.SeqDevice, State: task.Running, DueAt: clk.Now(), StartedAt: clk.Now(), UpdatedAt: clk.Now()})
		}
		_, err = ms[1].Runtime().RecordResults(ctx, rs)
		must(t, err)
	}
	must(t, ms[0].Stop(ctx, task.System, ids[0])) // r0 sends StopRun, then dies
	if logs[0].stops != 5 || logs[1].stops != 0 {
		t.Fatalf("StopRun sent by r0 %d, r1 %d; want 5 and 0", logs[0].stops, logs[1].stops)
	}
	clk.Add(engine.DefaultScopeRefresh)
	must(t, srvs[1].Tick(ctx))
	if logs[1].stops != 5 {
		t.Fatalf("the leader sent %d StopRun, want 5 (the stopped task's running devices only)", logs[1].stops)
	}
}

// TestLaggingReplicaKeepsItsOwnDispatches: a replica whose Tick lags past
// its dispatch leases (here: the clock jumps while the Tick's claim is
// being sent, as a fan-out of 100,000 starts under load does) finds its
// own expired claims in its stale sweep. They are its own: it keeps them
// (a new epoch, a fresh lease) without counting them taken over or
// sending them again, and a second replica finds nothing to take over.
// A replica that really stops still has its starts taken over after the
// lease.
func TestLaggingReplicaKeepsItsOwnDispatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lag.db")
	inv, clk, _ := replicaFleet(t, 300)
	ms, srvs, logs, _ := sqliteReplicas(t, path, 2, inv, clk, func(_ int, c *engine.Config) {
		c.LeaseTTL, c.RetryInterval = time.Second, time.Second
		c.EngineClockLeases = true
	})
	tk, err := ms[0].Create(ctx, task.System, task.Task{Name: "scan", Application: appES, Type: "virus_scan", Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, nil)})
	must(t, err)
	_, err = ms[0].Start(ctx, task.System, tk.ID)
	must(t, err)
	lagged := false
	engine.SetAfterClaim(srvs[0], func() {
		if !lagged {
			lagged = true
			clk.Add(2*time.Second + time.Millisecond) // past RetryInterval + LeaseTTL
		}
	})
	must(t, srvs[0].Tick(ctx))
	st := srvs[0].Stats()
	if st.Dispatched != 300 || st.TakenOver != 0 || st.Reclaimed != 300 {
		t.Fatalf("r0 stats %+v: want 300 dispatched, its own 300 expired claims reclaimed, none taken over", st)
	}
	for k, n := range logs[0].starts {
		if n != 1 {
			t.Fatalf("start %s sent %d times in one Tick, want once", k, n)
		}
	}
	// r0's leader lease has expired: r1 leads and sweeps, but r0's
	// dispatch leases were renewed by its reclaim.
	clk.Add(1500 * time.Millisecond)
	must(t, srvs[1].Tick(ctx))
	if got := srvs[1].Stats().TakenOver; got != 0 {
		t.Fatalf("r1 took over %d of r0's reclaimed starts, want 0", got)
	}
	// r0 stops for good: its starts are taken over after the lease.
	clk.Add(time.Second)
	must(t, srvs[1].Tick(ctx))
	if got := srvs[1].Stats().TakenOver; got != 300 {
		t.Fatalf("r1 took over %d starts of the stopped r0, want 300", got)
	}
}
