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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

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
func replicaManager(ctx context.Context, dsn string, reg *task.Registry, srv func(storage.Store, scope.Inventory) *engine.Server) (*sqlstore.Store, *task.Manager, *engine.Server, error) {
	st, err := sqlstore.Open(ctx, sqlstore.Config{Dialect: sqlstore.Postgres, DSN: dsn})
	if err != nil {
		return nil, nil, nil, err
	}
	inv := inmem.New()
	if err := inv.PutGroups(scope.AdminGroup{ID: "g-all", Name: "all"}); err != nil {
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

// countingEndpoint counts the StartRun messages a replica sends.
type countingEndpoint struct{ starts atomic.Int64 }

func (e *countingEndpoint) Send(_ context.Context, m transport.Message) error {
	if m.Kind == transport.StartRun {
		e.starts.Add(1)
	}
	return nil
}

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
	_, m, srv, err := replicaManager(ctx, os.Getenv(childDSNEnv), reg, func(st storage.Store, inv scope.Inventory) *engine.Server {
		s, err := engine.New(engine.Config{Store: st, Inventory: inv, ReplicaID: id, LeaseTTL: 2 * time.Second, ClaimBatch: 500})
		if err != nil {
			panic(err)
		}
		return s
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	// r0 stops for good while holding its 30th claim of 500 runs (the
	// parent kills it then); r1 stalls past the lease TTL once, at its
	// 20th claim, so its late completion meets claims another replica
	// took over and is rejected by the epoch.
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
				time.Sleep(3 * time.Second)
				fmt.Println("stalled")
			}
		})
	}
	ep := &countingEndpoint{}
	if err := srv.Open(ctx, m, ep); err != nil {
		fmt.Fprintln(os.Stderr, "engine open:", err)
		return 1
	}
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

// TestReplicasExactlyOnce is the scale-out bar: 3 replica processes on one
// PostgreSQL dispatch 100,000 scheduled device runs (10 tasks x 10,000
// devices); one replica is killed with SIGKILL in the middle and
// restarted. The database must show every run dispatched (pending) and
// exactly one dispatch ledger row per (task, device, run).
func TestReplicasExactlyOnce(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("100,000 runs on PostgreSQL; skipped with -short")
	}
	ctx := context.Background()
	dsn := pgSchemaDSN(t)
	reg, err := replicaRegistry()
	must(t, err)
	st, m, _, err := replicaManager(ctx, dsn, reg, nil)
	must(t, err)
	defer st.Close()
	const tasks, devices = 10, 10000
	due := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	runID := transport.RunID(due, transport.Manual)
	for i := range tasks {
		tk, err := m.Create(ctx, task.System, task.Task{Name: fmt.Sprintf("scan %d", i), Application: appES, Type: "virus_scan", Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, nil)})
		must(t, err)
		rs := make([]storage.ResultRecord, devices)
		for d := range rs {
			rs[d] = storage.ResultRecord{TaskID: tk.ID, DeviceID: fmt.Sprintf("d%05d", d), RunID: runID, Seq: transport.SeqScheduled, State: string(task.Scheduled),
				DueAt: due.Add(time.Duration(d) * time.Millisecond), UpdatedAt: due}
		}
		n, err := st.UpsertResults(ctx, storage.UpsertResultsParams{Results: rs})
		must(t, err)
		if n != devices {
			t.Fatalf("seeded %d results, want %d", n, devices)
		}
	}
	db := st.DB()
	count := func(q string) int {
		var n int
		must(t, db.QueryRowContext(ctx, q).Scan(&n))
		return n
	}
	procs := []*replicaProc{startReplica(t, dsn, "r0", "hold"), startReplica(t, dsn, "r1", "stall"), startReplica(t, dsn, "r2", "")}
	deadline := time.Now().Add(2 * time.Minute)
	// r0 holds its 30th claim: SIGKILL it there (mid-dispatch), restart it.
	if !procs[0].wait("holding") {
		t.Fatal("r0 exited before holding a claim")
	}
	procs[0].kill()
	atKill := count(`SELECT COUNT(*) FROM dispatch_log`)
	leased := count(`SELECT COUNT(*) FROM results WHERE lease_owner = 'r0' AND state = 'scheduled'`)
	procs[0] = startReplica(t, dsn, "r0", "")
	if !procs[1].wait("stalled") {
		t.Fatal("r1 exited before its stall ended")
	}
	for count(`SELECT COUNT(*) FROM results WHERE state = 'scheduled'`) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("runs still scheduled after 2 minutes: %d", count(`SELECT COUNT(*) FROM results WHERE state = 'scheduled'`))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range procs {
		p.kill()
	}
	total := count(`SELECT COUNT(*) FROM dispatch_log`)
	distinct := count(`SELECT COUNT(*) FROM (SELECT DISTINCT task_id, device_id, run_id FROM dispatch_log) k`)
	pending := count(fmt.Sprintf(`SELECT COUNT(*) FROM results WHERE state = 'pending' AND seq = %d`, transport.SeqDispatched))
	reclaimed := count(`SELECT COUNT(*) FROM dispatch_log WHERE epoch > 1`)
	byOwner := count(`SELECT COUNT(DISTINCT owner) FROM dispatch_log`)
	t.Logf("killed r0 after %d of %d dispatches holding %d leases; %d runs re-claimed after the lease expired; %d replicas dispatched", atKill, tasks*devices, leased, reclaimed, byOwner)
	if total != tasks*devices || distinct != tasks*devices || pending != tasks*devices {
		t.Fatalf("dispatch ledger %d rows, %d distinct runs, %d pending results; want %d each (zero lost, zero duplicated)", total, distinct, pending, tasks*devices)
	}
	// The dead replica's 500 claims and the stalled replica's 500 were
	// all taken over with a newer epoch.
	if leased != 500 || reclaimed < 1000 {
		t.Fatalf("the killed replica held %d leases (want 500); %d runs re-claimed with a newer epoch (want >= 1000: its claims and the stalled replica's)", leased, reclaimed)
	}
	if byOwner != 3 {
		t.Fatalf("%d replicas dispatched, want 3", byOwner)
	}
}
