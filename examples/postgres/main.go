// Command postgres wires taskfleet on PostgreSQL with two server replicas:
// both run an engine.Server on the same database, a group task is started
// for 500 devices on one replica, and the replicas share the dispatch
// through the store's claims, so every device gets its start from exactly
// one replica. The transport is a recorder (a host would plug its device
// transport in here).
//
//	go run ./examples/postgres -dsn 'postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
//
// The DSN defaults to TASKFLEET_TEST_POSTGRES. The example works in a
// new schema of its own, dropped afterwards unless -keep; -schema names an
// existing or new schema instead, which is kept.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "postgres:", err)
		os.Exit(1)
	}
}

// recorder is a replica's transport: it records the starts it sends.
type recorder struct {
	mu     sync.Mutex
	starts map[string]int // device/run -> sends
}

func (r *recorder) Send(_ context.Context, m transport.Message) error {
	if m.Kind == transport.StartRun {
		r.mu.Lock()
		r.starts[fmt.Sprintf("%s/%d", m.Device, m.Start.RunID)]++
		r.mu.Unlock()
	}
	return nil
}

type replica struct {
	name string
	st   *sqlstore.Store
	m    *task.Manager
	srv  *engine.Server
	rec  *recorder
}

func withSchema(dsn, schema string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("postgres", flag.ContinueOnError)
	dsn := fs.String("dsn", os.Getenv("TASKFLEET_TEST_POSTGRES"), "PostgreSQL DSN (default $TASKFLEET_TEST_POSTGRES)")
	schema := fs.String("schema", "", "schema to work in (default: a new random one)")
	keep := fs.Bool("keep", false, "keep the schema afterwards")
	devices := fs.Int("devices", 500, "number of devices")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dsn == "" {
		return errors.New("no database: pass -dsn or set TASKFLEET_TEST_POSTGRES")
	}
	if *devices < 1 || *devices > 100000 {
		return fmt.Errorf("-devices %d: must be 1..100000", *devices)
	}
	fresh := *schema == ""
	if fresh {
		var b [6]byte
		_, _ = rand.Read(b[:])
		*schema = "tf_example_" + hex.EncodeToString(b[:])
	}
	admin, err := sql.Open("pgx", *dsn)
	if err != nil {
		return err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+*schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if fresh && !*keep {
		defer func() { _, _ = admin.ExecContext(context.Background(), `DROP SCHEMA `+*schema+` CASCADE`) }()
	}
	sdsn := withSchema(*dsn, *schema)

	// Two replicas: each its own store (connection pool), inventory view,
	// Manager and engine.Server, all on the same database.
	reg := task.NewRegistry()
	if err := reg.Register(task.TaskType{Application: "Endpoint Security", Name: "virus_scan"}); err != nil {
		return err
	}
	var reps []*replica
	for _, name := range []string{"replica-a", "replica-b"} {
		st, err := sqlstore.Open(ctx, sqlstore.Config{Dialect: sqlstore.Postgres, DSN: sdsn})
		if err != nil {
			return err
		}
		defer st.Close()
		srv, err := engine.New(engine.Config{Store: st, Inventory: st.Devices(), ReplicaID: name, LeaseTTL: 10 * time.Second})
		if err != nil {
			return err
		}
		m, err := task.New(task.Config{Store: st, Registry: reg, Inventory: st.Devices(), Dispatcher: srv})
		if err != nil {
			return err
		}
		reps = append(reps, &replica{name: name, st: st, m: m, srv: srv, rec: &recorder{starts: map[string]int{}}})
	}
	inv := reps[0].st.Devices()
	if err := inv.PutGroups(ctx, scope.AdminGroup{ID: "g-all", Name: "All devices"}); err != nil {
		return err
	}
	devs := make([]scope.Device, *devices)
	for i := range devs {
		devs[i] = scope.Device{ID: scope.DeviceID(fmt.Sprintf("pc-%05d", i)), GroupID: "g-all", Connected: true,
			Server: scope.ServerRef{ID: "primary", Role: scope.Primary}}
	}
	if err := inv.PutDevices(ctx, devs...); err != nil {
		return err
	}
	for _, r := range reps {
		if err := r.srv.Open(ctx, r.m, r.rec); err != nil {
			return err
		}
	}
	tk, err := reps[0].m.Create(ctx, task.System, task.Task{Name: "Scan now", Application: "Endpoint Security", Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Group, Group: "g-all"}, Schedule: schedule.Default(schedule.Manual, time.Time{}, time.UTC)})
	if err != nil {
		return err
	}
	run, err := reps[0].m.Start(ctx, task.System, tk.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "started %q on %s for %d devices\n", tk.Name, reps[0].name, len(run.Devices))

	// Both replicas tick at once until every device's start went out.
	deadline := time.Now().Add(time.Minute)
	for {
		var wg sync.WaitGroup
		for _, r := range reps {
			wg.Go(func() { _ = r.srv.Tick(ctx) })
		}
		wg.Wait()
		st, err := reps[1].m.Statistics(ctx, task.System, tk.ID)
		if err != nil {
			return err
		}
		if st.ByState[task.Scheduled] == 0 {
			fmt.Fprintf(out, "statistics: %d devices, %d pending (started)\n", st.Total, st.ByState[task.Pending])
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d starts still scheduled after a minute", st.ByState[task.Scheduled])
		}
		time.Sleep(50 * time.Millisecond)
	}
	all := map[string]int{}
	for _, r := range reps {
		var keys []string
		for k := range r.rec.starts {
			keys = append(keys, k)
			all[k] += r.rec.starts[k]
		}
		sort.Strings(keys)
		fmt.Fprintf(out, "%s dispatched %d starts\n", r.name, len(keys))
	}
	dup := 0
	for _, n := range all {
		if n > 1 {
			dup++
		}
	}
	fmt.Fprintf(out, "devices started: %d, started twice: %d\n", len(all), dup)
	var ledger int
	if err := admin.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+*schema+`.dispatch_log`).Scan(&ledger); err != nil {
		return err
	}
	fmt.Fprintf(out, "dispatch ledger rows: %d\n", ledger)
	if !fresh || *keep {
		fmt.Fprintf(out, "schema %s kept\n", *schema)
	}
	return nil
}
