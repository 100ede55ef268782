package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

// backlogEnv sets BenchmarkDispatchTickSQLite's backlog (default 20,000,
// so CI's single pass stays short; issue #16's figure is at 100,000).
const backlogEnv = "TASKFLEET_BACKLOG"

// BenchmarkDispatchTickSQLite (issue #16): one engine replica on a SQLite
// file database dispatches a manual start of one task on every device of
// a backlog (20,000 by default, TASKFLEET_BACKLOG=100000 for the issue's
// size), Tick after Tick until every start was sent to an in-process
// sink. Set beside storage/sqlstore's BenchmarkDispatchBacklogSQLite (the
// store alone), it tells whether the engine's dispatch loop or the store
// limits the rate:
//
//	cd bench && TASKFLEET_BACKLOG=100000 go test -run '^$' -bench DispatchTickSQLite -benchtime 1x
//
// tick-starts/s is the starts sent per second, from the first Tick to the
// last start sent.
func BenchmarkDispatchTickSQLite(b *testing.B) {
	n := 20_000
	if v := os.Getenv(backlogEnv); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil || k <= 0 || k > 1_000_000 || k%5000 != 0 {
			b.Fatalf("%s=%q: want a multiple of 5,000 from 5,000 to 1,000,000", backlogEnv, v)
		}
		n = k
	}
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
	st, err := sqlstore.Open(ctx, sqlstore.Config{Dialect: sqlstore.SQLite, DSN: filepath.Join(b.TempDir(), "p.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	reg := task.NewRegistry()
	if err := reg.Register(task.TaskType{Application: "Endpoint Security", Name: "virus_scan"}); err != nil {
		b.Fatal(err)
	}
	inv := inmem.New()
	if err := inv.PutGroups(ctx, scope.AdminGroup{ID: "g-all"}); err != nil {
		b.Fatal(err)
	}
	srv, err := engine.New(engine.Config{Store: st, Inventory: inv, Clock: clk, ReplicaID: "r0"})
	if err != nil {
		b.Fatal(err)
	}
	m, err := task.New(task.Config{Store: st, Registry: reg, Inventory: inv, Clock: clk, Dispatcher: srv})
	if err != nil {
		b.Fatal(err)
	}
	tk, err := m.Create(ctx, task.System, task.Task{Name: "scan", Application: "Endpoint Security", Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Group, Group: "g-all"}, Schedule: schedule.Default(schedule.Manual, time.Time{}, time.UTC)})
	if err != nil {
		b.Fatal(err)
	}
	sink := &dispatchSink{}
	if err := srv.Open(ctx, m, sink); err != nil {
		b.Fatal(err)
	}
	rows := make([]storage.ResultRecord, n)
	var tick time.Duration
	for i := range b.N {
		due := clk.Now().Add(-time.Minute).UTC()
		run := transport.RunID(due, transport.Manual) + int64(4*i)
		for d := range rows {
			rows[d] = storage.ResultRecord{TaskID: tk.ID, DeviceID: fmt.Sprintf("d%06d", d), RunID: run, Seq: transport.SeqScheduled, State: string(task.Scheduled), DueAt: due, UpdatedAt: due}
		}
		for off := 0; off < n; off += 5000 {
			if _, err := st.UpsertResults(ctx, storage.UpsertResultsParams{Results: rows[off : off+5000]}); err != nil {
				b.Fatal(err)
			}
		}
		clk.Add(time.Second)
		before := sink.n.Load()
		start := time.Now()
		for sink.n.Load()-before < int64(n) {
			if err := srv.Tick(ctx); err != nil {
				b.Fatal(err)
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("only %d of %d starts sent after a minute", sink.n.Load()-before, n)
			}
		}
		tick += time.Since(start)
	}
	b.ReportMetric(float64(b.N*n)/tick.Seconds(), "tick-starts/s")
	b.ReportMetric(0, "ns/op")
}
