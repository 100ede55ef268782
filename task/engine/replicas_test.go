package engine_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/benbjohnson/clock"
	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

const pgEnv = "TASKFLEET_TEST_POSTGRES"

// pgSchemaDSN creates a schema of its own on the test server (dropped
// when the test ends) and returns a DSN whose search_path points into it.
func pgSchemaDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(pgEnv)
	if base == "" {
		t.Skip("the replica tests need PostgreSQL: set " + pgEnv + " to a DSN (.ci/run starts one and sets it)")
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema := "tf_engine_" + hex.EncodeToString(rnd[:])
	admin, err := sql.Open("pgx", base)
	must(t, err)
	defer admin.Close()
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			t.Error(err)
			return
		}
		defer db.Close()
		if _, err := db.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		must(t, err)
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return base + " search_path=" + schema
}

// replicaManager wires a Manager (and, with srv, its Dispatcher) on a
// PostgreSQL store, with an inventory holding group g-all.
func replicaManager(ctx context.Context, dsn string, reg *task.Registry, devices int, srv func(storage.Store, scope.Inventory) *engine.Server) (*sqlstore.Store, *task.Manager, *engine.Server, error) {
	st, err := sqlstore.Open(ctx, sqlstore.Config{Dialect: sqlstore.Postgres, DSN: dsn})
	if err != nil {
		return nil, nil, nil, err
	}
	inv := inmem.New()
	if err := inv.PutGroups(ctx, scope.AdminGroup{ID: "g-all", Name: "all"}); err != nil {
		return nil, nil, nil, err
	}
	devs := make([]scope.Device, devices)
	for i := range devs {
		devs[i] = scope.Device{ID: scope.DeviceID(fmt.Sprintf("d%05d", i)), GroupID: "g-all", Connected: true}
	}
	if err := inv.PutDevices(ctx, devs...); err != nil {
		return nil, nil, nil, err
	}
	var s *engine.Server
	cfg := task.Config{Store: st, Registry: reg, Inventory: inv}
	if srv != nil {
		s = srv(st, inv)
		cfg.Dispatcher = s
	}
	m, err := task.New(cfg)
	return st, m, s, err
}

func replicaRegistry() (*task.Registry, error) {
	r := task.NewRegistry()
	if err := r.Register(task.TaskType{Application: appES, Name: "virus_scan", Settings: ScanSettings{Action: "disinfect"}}); err != nil {
		return nil, err
	}
	return r, nil
}

// deviceSim stands in for the devices behind one replica: every StartRun
// it receives is recorded in the deliveries table and answered with a
// running result (as an agent does), in batches every 10 ms. Starts
// received but not yet recorded when the replica is killed are lost like
// messages in flight: their devices never answer, and the dispatch must be
// taken over and resent by another replica.
type deviceSim struct {
	mu      sync.Mutex
	starts  []transport.Start
	devices []scope.DeviceID
}

func (e *deviceSim) Send(_ context.Context, m transport.Message) error {
	if m.Kind == transport.StartRun && m.Start != nil {
		e.mu.Lock()
		e.starts = append(e.starts, *m.Start)
		e.devices = append(e.devices, m.Device)
		e.mu.Unlock()
	}
	return nil
}

func (e *deviceSim) loop(ctx context.Context, db *sql.DB, id string, srv *engine.Server) error {
	for {
		time.Sleep(10 * time.Millisecond)
		e.mu.Lock()
		starts, devs := e.starts, e.devices
		e.starts, e.devices = nil, nil
		e.mu.Unlock()
		if len(starts) == 0 {
			continue
		}
		tasks, dids, runs := make([]string, len(starts)), make([]string, len(starts)), make([]int64, len(starts))
		for i, st := range starts {
			tasks[i], dids[i], runs[i] = st.TaskID, string(devs[i]), st.RunID
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO deliveries (task_id, device_id, run_id, replica) SELECT t, d, r, $4 FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(t, d, r)`, tasks, dids, runs, id); err != nil {
			return err
		}
		now := time.Now().UTC()
		for i, st := range starts {
			srv.Handle(ctx, transport.Message{Kind: transport.Results, Device: devs[i], Key: fmt.Sprintf("r/%s/%d/%s", st.TaskID, st.RunID, devs[i]),
				Results: []transport.Result{{TaskID: st.TaskID, RunID: st.RunID, Seq: transport.SeqDevice, State: string(task.Running), DueAt: st.Due, StartedAt: now, UpdatedAt: now}}})
		}
	}
}

// skewedClock is the wall clock off by d.
type skewedClock struct {
	clock.Clock
	d time.Duration
}

func (c skewedClock) Now() time.Time { return c.Clock.Now().Add(c.d) }

// childReplica is one server replica process: it ticks for ever on the
// wall clock (the parent kills it).
func childReplica() int {
	ctx := context.Background()
	reg, err := replicaRegistry()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	id := os.Getenv(childIDEnv)
	st, m, srv, err := replicaManager(ctx, os.Getenv(childDSNEnv), reg, 0, func(st storage.Store, inv scope.Inventory) *engine.Server {
		// The replicas' clocks disagree by up to 4 s (r1 2 s behind, r2 2 s
		// ahead): the skew may move when a start is due, never how often
		// it is dispatched.
		skew := map[string]time.Duration{"r1": -2 * time.Second, "r2": 2 * time.Second}[id]
		s, err := engine.New(engine.Config{Clock: skewedClock{clock.New(), skew}, Logger: zerolog.New(os.Stderr), Store: st, Inventory: inv, ReplicaID: id, LeaseTTL: time.Second, RetryInterval: time.Second, ClaimBatch: 500})
		if err != nil {
			panic(err)
		}
		return s
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	// r0 stops for good after its 30th dispatch of 500 runs, before
	// sending them (the parent kills it then); r1 stalls there once, at
	// its 20th, for longer than the dispatch lease, so another replica
	// takes its dispatches over and r1's own lease renewal is rejected.
	batches := 0
	switch os.Getenv(childStallEnv) {
	case "hold":
		engine.SetAfterClaim(srv, func() {
			if batches++; batches == 30 {
				fmt.Println("holding")
				select {}
			}
		})
	case "stall":
		engine.SetAfterClaim(srv, func() {
			if batches++; batches == 20 {
				time.Sleep(4 * time.Second)
				fmt.Println("stalled")
			}
		})
	}
	ep := &deviceSim{}
	if err := srv.Open(ctx, m, ep); err != nil {
		fmt.Fprintln(os.Stderr, "engine open:", err)
		return 1
	}
	go func() {
		if err := ep.loop(ctx, st.DB().DB, id, srv); err != nil {
			fmt.Fprintln(os.Stderr, "devices:", err)
			os.Exit(1)
		}
	}()
	fmt.Println("ready")
	for {
		if err := srv.Tick(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "tick:", err)
			return 1
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type replicaProc struct {
	cmd   *exec.Cmd
	lines chan string
}

func startReplica(t *testing.T, dsn, id, stall string) *replicaProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=replica", childDSNEnv+"="+dsn, childIDEnv+"="+id, childStallEnv+"="+stall)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	p := &replicaProc{cmd: cmd, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	if l := <-p.lines; l != "ready" {
		p.kill()
		t.Fatalf("replica %s did not start: %q", id, l)
	}
	t.Cleanup(func() { p.kill() })
	return p
}

// wait returns when the replica prints line (false when it exits first).
func (p *replicaProc) wait(line string) bool {
	for l := range p.lines {
		if l == line {
			return true
		}
	}
	return false
}

func (p *replicaProc) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
}

// TestReplicasExactlyOnce is the scale-out bar: 100,000 device runs (10
// group tasks x 10,000 devices, started through Manager.Start on the
// inventory) are dispatched by 3 replica processes on one PostgreSQL; one
// replica is killed with SIGKILL in the middle (after a dispatch, before
// its sends) and restarted, another stalls past its lease. The database
// must show every run dispatched exactly once (one ledger row per (task,
// device, run)), and every run delivered and answered by its device
// (none lost), the killed and the stalled replica's starts through a
// takeover. The replicas' clocks are skewed by -2 s, 0 and +2 s.
func TestReplicasExactlyOnce(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("100,000 runs on PostgreSQL; skipped with -short")
	}
	ctx := context.Background()
	dsn := pgSchemaDSN(t)
	reg, err := replicaRegistry()
	must(t, err)
	const tasks, devices = 10, 10000
	var planner *engine.Server
	st, m, _, err := replicaManager(ctx, dsn, reg, devices, func(st storage.Store, inv scope.Inventory) *engine.Server {
		planner, err = engine.New(engine.Config{Store: st, Inventory: inv, ReplicaID: "planner"})
		must(t, err)
		return planner
	})
	must(t, err)
	defer st.Close()
	must(t, planner.Open(ctx, m, &deviceSim{})) // plans the runs; never ticks, so never dispatches
	db := st.DB()
	_, err = db.ExecContext(ctx, `CREATE TABLE deliveries (task_id text, device_id text, run_id bigint, replica text)`)
	must(t, err)
	// A takeover raises a lease row's epoch; the lease row is gone once
	// the device answers, so a trigger keeps a record of each.
	_, err = db.ExecContext(ctx, `CREATE TABLE takeovers (task_id text, device_id text, run_id bigint, epoch bigint);
CREATE FUNCTION record_takeover() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO takeovers VALUES (NEW.task_id, NEW.device_id, NEW.run_id, NEW.epoch); RETURN NULL; END $$;
CREATE TRIGGER lease_taken_over AFTER UPDATE ON result_leases FOR EACH ROW WHEN (NEW.epoch > OLD.epoch) EXECUTE FUNCTION record_takeover()`)
	must(t, err)
	for i := range tasks {
		tk, err := m.Create(ctx, task.System, task.Task{Name: fmt.Sprintf("scan %d", i), Application: appES, Type: "virus_scan", Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, nil)})
		must(t, err)
		run, err := m.Start(ctx, task.System, tk.ID)
		must(t, err)
		if len(run.Devices) != devices {
			t.Fatalf("run %+v has %d devices, want %d", run.ID, len(run.Devices), devices)
		}
	}
	count := func(q string) int {
		var n int
		must(t, db.QueryRowContext(ctx, q).Scan(&n))
		return n
	}
	if n := count(`SELECT COUNT(*) FROM results WHERE state = 'scheduled'`); n != tasks*devices {
		t.Fatalf("%d scheduled runs, want %d", n, tasks*devices)
	}
	procs := []*replicaProc{startReplica(t, dsn, "r0", "hold"), startReplica(t, dsn, "r1", "stall"), startReplica(t, dsn, "r2", "")}
	deadline := time.Now().Add(6 * time.Minute)
	// r0 holds its 30th dispatch unsent: SIGKILL it there, restart it.
	if !procs[0].wait("holding") {
		t.Fatal("r0 exited before holding a dispatch")
	}
	procs[0].kill()
	atKill := count(`SELECT COUNT(*) FROM dispatch_log`)
	held := count(fmt.Sprintf(`SELECT COUNT(*) FROM result_leases WHERE owner = 'r0' AND state = 'pending' AND seq = %d`, transport.SeqDispatched))
	procs[0] = startReplica(t, dsn, "r0", "")
	if !procs[1].wait("stalled") {
		t.Fatal("r1 exited before its stall ended")
	}
	answered := fmt.Sprintf(`SELECT COUNT(*) FROM results WHERE state = 'running' AND seq = %d`, transport.SeqDevice)
	for count(answered) < tasks*devices {
		if time.Now().After(deadline) {
			t.Fatalf("after 6 minutes %d of %d runs answered by their devices", count(answered), tasks*devices)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range procs {
		p.kill()
	}
	total := count(`SELECT COUNT(*) FROM dispatch_log`)
	distinct := count(`SELECT COUNT(*) FROM (SELECT DISTINCT task_id, device_id, run_id FROM dispatch_log) k`)
	delivered := count(`SELECT COUNT(*) FROM (SELECT DISTINCT task_id, device_id, run_id FROM deliveries) k`)
	deliveries := count(`SELECT COUNT(*) FROM deliveries`)
	takenOver := count(`SELECT COUNT(*) FROM (SELECT DISTINCT task_id, device_id, run_id FROM takeovers) k`)
	byOwner := count(`SELECT COUNT(DISTINCT owner) FROM dispatch_log`)
	orphans := count(`SELECT COUNT(*) FROM deliveries d WHERE NOT EXISTS (SELECT 1 FROM dispatch_log l WHERE l.task_id = d.task_id AND l.device_id = d.device_id AND l.run_id = d.run_id)`)
	t.Logf("killed r0 after %d of %d dispatches holding %d unanswered; %d runs taken over after their lease expired; %d deliveries for %d runs (redeliveries are de-duplicated by the device's idempotency key); %d replicas dispatched",
		atKill, tasks*devices, held, takenOver, deliveries, delivered, byOwner)
	if total != tasks*devices || distinct != tasks*devices {
		t.Fatalf("dispatch ledger %d rows for %d distinct runs; want %d each (zero duplicated dispatches)", total, distinct, tasks*devices)
	}
	if delivered != tasks*devices || orphans != 0 {
		t.Fatalf("%d distinct runs delivered (want %d: zero lost), %d deliveries of runs never dispatched", delivered, tasks*devices, orphans)
	}
	// The dead replica's last 500 dispatches never left it, and the stalled
	// replica's 500 were not sent before its lease expired: all of them
	// reached their devices through a takeover.
	if held < 500 || takenOver < 1000 {
		t.Fatalf("the killed replica held %d unanswered dispatches (want >= 500); %d runs taken over (want >= 1000)", held, takenOver)
	}
	if byOwner < 3 {
		t.Fatalf("%d replicas dispatched, want 3", byOwner)
	}
}
