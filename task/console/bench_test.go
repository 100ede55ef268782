package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
)

// millionDevices is the fleet of BenchmarkTaskPage: the bar is a
// task page of a 1,000,000-device task in at most 200 ms server time.
const millionDevices = 1_000_000

// fillResults stores n results of task id directly, as the engine would
// after a run on n devices: 70% completed, 20% running, 8% pending, 2%
// failed, every 50th needing a restart.
func fillResults(b testing.TB, f *fixture, id string, n int) {
	b.Helper()
	const batch = 50_000
	recs := make([]storage.ResultRecord, 0, batch)
	now := f.clk.Now()
	for i := range n {
		st := task.Completed
		switch i % 50 {
		case 0:
			st = task.Failed
		case 1, 2, 3, 4:
			st = task.Pending
		case 5, 6, 7, 8, 9, 10, 11, 12, 13, 14:
			st = task.Running
		}
		recs = append(recs, storage.ResultRecord{TaskID: id, DeviceID: fmt.Sprintf("dev-%07d", i), RunID: 1, Seq: 1, State: string(st),
			StartedAt: now, UpdatedAt: now, Progress: 50, RestartRequired: i%50 == 49})
		if len(recs) == batch {
			if _, err := f.store.UpsertResults(f.ctx, storage.UpsertResultsParams{Results: recs}); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	if len(recs) > 0 {
		if _, err := f.store.UpsertResults(f.ctx, storage.UpsertResultsParams{Results: recs}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTaskPage renders the task page of a task with 1,000,000
// device results (memstore): statistics from the store's counters, one
// page of results, the latest revisions and the schedule preview.
//
//	go test ./task/console -run '^$' -bench TaskPage -benchtime 20x
func BenchmarkTaskPage(b *testing.B) {
	benchmarkTaskPage(b, setup(b, setupOptions{}))
}

// BenchmarkTaskPageSQLite is BenchmarkTaskPage on sqlstore's SQLite (the
// million results take about a minute to write before it starts).
//
//	go test ./task/console -run '^$' -bench TaskPageSQLite -benchtime 20x
func BenchmarkTaskPageSQLite(b *testing.B) {
	st, err := sqlstore.Open(context.Background(), sqlstore.Config{Dialect: sqlstore.SQLite, DSN: filepath.Join(b.TempDir(), "bench.db"), Synchronous: sqlstore.SyncNormal})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	benchmarkTaskPage(b, setup(b, setupOptions{store: st}))
}

// BenchmarkTaskPagePostgres is BenchmarkTaskPage on sqlstore's
// PostgreSQL, whose statistics are counters (result deltas), with the
// database TASKFLEET_CONSOLE_BENCH_POSTGRES names (a DSN of an empty
// database: the benchmark writes a million results into it).
//
//	TASKFLEET_CONSOLE_BENCH_POSTGRES=postgres://… go test ./task/console -run '^$' -bench TaskPagePostgres -benchtime 20x
func BenchmarkTaskPagePostgres(b *testing.B) {
	dsn := os.Getenv("TASKFLEET_CONSOLE_BENCH_POSTGRES")
	if dsn == "" {
		b.Skip("TASKFLEET_CONSOLE_BENCH_POSTGRES is not set")
	}
	st, err := sqlstore.Open(context.Background(), sqlstore.Config{Dialect: sqlstore.Postgres, DSN: dsn})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	benchmarkTaskPage(b, setup(b, setupOptions{store: st}))
}

func benchmarkTaskPage(b *testing.B, f *fixture) {
	fillResults(b, f, f.group.ID, millionDevices)
	st, err := f.m.Statistics(f.ctx, f.admin, f.group.ID)
	if err != nil || st.Total != millionDevices {
		b.Fatalf("statistics: %v, %v", st.Total, err)
	}
	c := f.client("admin")
	for _, bc := range []struct{ name, query string }{
		{"all", ""},
		{"page2", "?after=dev-0000050"},
		{"running", "?state=running"},
		{"failed", "?state=failed"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			path := "http://console.test/tasks/" + f.group.ID + bc.query
			warm := c.do(httptest.NewRequest(http.MethodGet, path, nil))
			if warm.code != http.StatusOK || !warm.has("1,000,000") {
				b.Fatalf("task page = %d", warm.code)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w := httptest.NewRecorder()
				r := httptest.NewRequest(http.MethodGet, path, nil)
				r.Header.Set("X-User", "admin")
				f.c.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
