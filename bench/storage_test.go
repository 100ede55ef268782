package bench

// Storage benchmarks: storage/sqlstore side by side with raw database/sql
// baselines on the same engine, in the same run. Run from this directory:
//
//	TASKFLEET_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' \
//	  go test -run '^$' -bench 'ResultIngest|LargeTask' -benchmem
//
// Without TASKFLEET_TEST_POSTGRES the PostgreSQL benchmarks skip.
//
// BenchmarkResultIngest writes 10,000 new per-device results per op, in
// batches of 1,000, each batch one transaction, into the sqlstore schema
// (same table, indexes and foreign key for every variant):
//   - sqlstore: Store.UpsertResults (idempotent upsert).
//   - raw_insert: a prepared plain INSERT per row in one transaction per
//     batch, with database/sql on the store's own *sql.DB.
//   - raw_copy (PostgreSQL): COPY of each batch in one transaction.
//   - alt_copy_temp_upsert (PostgreSQL): the design alternative to
//     sqlstore's unnest upsert, COPY into a temporary table then INSERT ...
//     SELECT ... ON CONFLICT, measured to justify the choice.
//
// BenchmarkLargeTask loads one task with 1,200,000 devices, 1,000,000 of
// them scheduled with due times spread over a day, and measures the
// engine's due-run query (the first 1,000 due runs) and the task's
// statistics.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
)

const (
	storagePGEnv       = "TASKFLEET_TEST_POSTGRES"
	storageIngestOp    = 10_000 // results per op
	storageIngestBatch = 1_000  // results per transaction
	storageLargeDue    = 1_000_000
	storageLargeTotal  = 1_200_000
)

var storageBase = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// storagePGDSN creates a fresh schema (dropped at cleanup) and returns a
// DSN pointing into it; it skips without a server.
func storagePGDSN(b testing.TB) string {
	b.Helper()
	base := os.Getenv(storagePGEnv)
	if base == "" {
		b.Skip("PostgreSQL benchmarks need " + storagePGEnv + " (a DSN); .ci/run sets it")
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema := "tf_bench_" + hex.EncodeToString(rnd[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err == nil {
			_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
			db.Close()
		}
	})
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			b.Fatal(err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return base + " search_path=" + schema
}

// storageOpen opens a fresh database of the engine with one task "t".
func storageOpen(b testing.TB, engine string) *sqlstore.Store {
	b.Helper()
	cfg := sqlstore.Config{Dialect: sqlstore.Dialect(engine)}
	if engine == "sqlite" {
		cfg.DSN = filepath.Join(b.TempDir(), "bench.db")
	} else {
		cfg.DSN = storagePGDSN(b)
	}
	s, err := sqlstore.Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	rec := storage.TaskRecord{ID: "t", Name: "bench", Kind: "group", GroupID: "g", Revision: 1, CreatedAt: storageBase, UpdatedAt: storageBase, Body: []byte(`{}`)}
	if err := s.CreateTask(context.Background(), storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{Number: 1, At: storageBase, Body: rec.Body}}); err != nil {
		b.Fatal(err)
	}
	return s
}

// storageRows makes op number i's results: new devices every op.
func storageRows(i int) []storage.ResultRecord {
	rs := make([]storage.ResultRecord, storageIngestOp)
	for j := range rs {
		rs[j] = storage.ResultRecord{
			TaskID: "t", DeviceID: fmt.Sprintf("op%06d-dev%06d", i, j), RunID: 1, Seq: 3, State: "completed",
			StartedAt: storageBase, FinishedAt: storageBase.Add(time.Minute), UpdatedAt: storageBase.Add(time.Minute),
			Progress: 100, Message: "completed without errors",
		}
	}
	return rs
}

// storageArgs are a result's column values in sqlstore's results table
// order, encoded as the engine stores them.
func storageArgs(engine string, r *storage.ResultRecord) []any {
	t := func(v time.Time) any {
		if engine == "sqlite" {
			return v.UnixMicro() // the zero time is its own instant in both
		}
		return v
	}
	return []any{r.TaskID, r.DeviceID, r.RunID, r.Seq, r.State, t(r.DueAt), t(r.StartedAt), t(r.FinishedAt), t(r.UpdatedAt), r.Progress, r.Message, r.RestartRequired}
}

const storageResultCols = "task_id, device_id, run_id, seq, state, due_at, started_at, finished_at, updated_at, progress, message, restart_required"

// storageWriter writes one batch as one transaction.
type storageWriter struct {
	name  string
	write func(tb testing.TB, s *sqlstore.Store, batch []storage.ResultRecord)
}

// storageWriters are the ingest variants of an engine.
func storageWriters(engine string) []storageWriter {
	ws := []storageWriter{
		{"sqlstore", func(tb testing.TB, s *sqlstore.Store, batch []storage.ResultRecord) {
			n, err := s.UpsertResults(context.Background(), storage.UpsertResultsParams{Results: batch})
			if err != nil || n != len(batch) {
				tb.Fatalf("UpsertResults = %d, %v", n, err)
			}
		}},
		{"raw_insert", func(tb testing.TB, s *sqlstore.Store, batch []storage.ResultRecord) {
			storageRawInsert(tb, engine, s.DB().DB, batch)
		}},
	}
	if engine == "postgres" {
		ws = append(ws,
			storageWriter{"raw_copy", func(tb testing.TB, s *sqlstore.Store, batch []storage.ResultRecord) {
				storageCopy(tb, s.DB().DB, batch, false)
			}},
			storageWriter{"alt_copy_temp_upsert", func(tb testing.TB, s *sqlstore.Store, batch []storage.ResultRecord) {
				storageCopy(tb, s.DB().DB, batch, true)
			}},
		)
	}
	return ws
}

func BenchmarkResultIngest(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		for _, v := range storageWriters(engine) {
			b.Run(engine+"/"+v.name, func(b *testing.B) {
				s := storageOpen(b, engine)
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					b.StopTimer()
					rows := storageRows(i)
					b.StartTimer()
					for off := 0; off < len(rows); off += storageIngestBatch {
						v.write(b, s, rows[off:off+storageIngestBatch])
					}
				}
				b.ReportMetric(float64(b.N*storageIngestOp)/b.Elapsed().Seconds(), "results/s")
			})
		}
	}
}

// TestStorageWritersAgree checks, before the ingest numbers count, that
// every variant stores exactly the rows sqlstore stores: the same results
// read back through the store, and the same statistics.
func TestStorageWritersAgree(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			rows := storageRows(0)[:storageIngestBatch]
			var want []storage.ResultRecord
			for _, v := range storageWriters(engine) {
				s := storageOpen(t, engine)
				v.write(t, s, rows)
				got, err := s.ListResults(ctx, storage.ListResultsParams{TaskID: "t", Limit: storage.MaxListLimit})
				if err != nil {
					t.Fatal(err)
				}
				st, err := s.TaskStatistics(ctx, "t")
				if err != nil {
					t.Fatal(err)
				}
				if st.Total != len(rows) || st.ByState["completed"] != len(rows) {
					t.Fatalf("%s: statistics %+v after writing %d completed results", v.name, st, len(rows))
				}
				if want == nil {
					want = got
					if len(want) != len(rows) {
						t.Fatalf("%s stored %d of %d results", v.name, len(want), len(rows))
					}
					continue
				}
				if d := cmp.Diff(want, got); d != "" {
					t.Fatalf("%s stores different rows than sqlstore (-sqlstore +%s):\n%s", v.name, v.name, d)
				}
			}
		})
	}
}

func storageRawInsert(b testing.TB, engine string, db *sql.DB, batch []storage.ResultRecord) {
	ctx := context.Background()
	q := "INSERT INTO results (" + storageResultCols + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	if engine == "postgres" {
		q = "INSERT INTO results (" + storageResultCols + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	stmt, err := tx.PrepareContext(ctx, q)
	if err != nil {
		b.Fatal(err)
	}
	for i := range batch {
		if _, err := stmt.ExecContext(ctx, storageArgs(engine, &batch[i])...); err != nil {
			b.Fatal(err)
		}
	}
	stmt.Close()
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// storageCopy COPYs a batch into results in one transaction, or (upsert)
// into a temporary table and from there with INSERT ... ON CONFLICT.
func storageCopy(b testing.TB, db *sql.DB, batch []storage.ResultRecord, upsert bool) {
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	cols := strings.Split(strings.ReplaceAll(storageResultCols, " ", ""), ",")
	err = conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		tx, err := pc.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		table := "results"
		if upsert {
			table = "results_in"
			if _, err := tx.Exec(ctx, "CREATE TEMP TABLE results_in (LIKE results INCLUDING DEFAULTS) ON COMMIT DROP"); err != nil {
				return err
			}
		}
		rows := make([][]any, len(batch))
		for i := range batch {
			rows[i] = storageArgs("postgres", &batch[i])
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		if upsert {
			if _, err := tx.Exec(ctx, `INSERT INTO results SELECT * FROM results_in ON CONFLICT (task_id, device_id) DO UPDATE SET
 run_id = excluded.run_id, seq = excluded.seq, state = excluded.state, due_at = excluded.due_at,
 started_at = excluded.started_at, finished_at = excluded.finished_at, updated_at = excluded.updated_at,
 progress = excluded.progress, message = excluded.message, restart_required = excluded.restart_required
 WHERE (excluded.run_id, excluded.seq) > (results.run_id, results.seq)`); err != nil {
				return err
			}
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// storageLoadLarge fills task "t" with storageLargeTotal devices in the
// database itself (generate_series / a recursive CTE), then refreshes the
// planner statistics (and PostgreSQL's visibility map).
func storageLoadLarge(b *testing.B, engine string, s *sqlstore.Store) {
	b.Helper()
	var q string
	switch engine {
	case "sqlite":
		base := storageBase.UnixMicro()
		zero := time.Time{}.UnixMicro()
		q = fmt.Sprintf(`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %[1]d)
INSERT INTO results (`+storageResultCols+`)
SELECT 't', printf('dev%%08d', i), 0, 0,
  CASE WHEN i <= %[2]d THEN 'scheduled' ELSE (CASE i %% 4 WHEN 0 THEN 'completed' WHEN 1 THEN 'failed' WHEN 2 THEN 'running' ELSE 'restart_required' END) END,
  CASE WHEN i <= %[2]d THEN %[3]d + (i * 7919 %% 86400) * 1000000 ELSE %[4]d END,
  %[4]d, %[4]d, %[3]d, 0, '', (i > %[2]d AND i %% 4 = 3)
FROM c`, storageLargeTotal, storageLargeDue, base, zero)
	default:
		q = fmt.Sprintf(`INSERT INTO results (`+storageResultCols+`)
SELECT 't', 'dev' || lpad(i::text, 8, '0'), 0, 0,
  CASE WHEN i <= %[2]d THEN 'scheduled' ELSE (ARRAY['completed','failed','running','restart_required'])[i %% 4 + 1] END,
  CASE WHEN i <= %[2]d THEN timestamptz '2026-11-20 00:00:00+00' + ((i::bigint * 7919) %% 86400) * interval '1 second' ELSE timestamptz '0001-01-01 00:00:00+00' END,
  timestamptz '0001-01-01 00:00:00+00', timestamptz '0001-01-01 00:00:00+00', timestamptz '2026-11-20 00:00:00+00', 0, '', (i > %[2]d AND i %% 4 = 3)
FROM generate_series(1, %[1]d) AS i`, storageLargeTotal, storageLargeDue)
	}
	if _, err := s.DB().Exec(q); err != nil {
		b.Fatal(err)
	}
	analyze := "ANALYZE"
	if engine == "postgres" {
		// Schema version 11 queues the scheduled results of PostgreSQL
		// in result_queue, as UpsertResults would have.
		if _, err := s.DB().Exec(`INSERT INTO result_queue (task_id, device_id, run_id, seq, due_at)
SELECT task_id, device_id, run_id, seq, due_at FROM results WHERE state = 'scheduled'`); err != nil {
			b.Fatal(err)
		}
		analyze = "VACUUM ANALYZE results, result_queue"
	}
	if _, err := s.DB().Exec(analyze); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkLargeTask(b *testing.B) {
	ctx := context.Background()
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			s := storageOpen(b, engine)
			start := time.Now()
			storageLoadLarge(b, engine, s)
			b.Logf("%s: loaded %d results in %v", engine, storageLargeTotal, time.Since(start).Round(time.Millisecond))
			b.Run("DueResults", func(b *testing.B) {
				b.ReportAllocs()
				for range b.N {
					due, err := s.DueResults(ctx, storage.DueResultsParams{State: "scheduled", Before: storageBase.Add(12 * time.Hour), Limit: 1000})
					if err != nil || len(due) != 1000 {
						b.Fatalf("DueResults = %d, %v", len(due), err)
					}
				}
				b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/query")
			})
			b.Run("Statistics", func(b *testing.B) {
				b.ReportAllocs()
				for range b.N {
					st, err := s.TaskStatistics(ctx, "t")
					if err != nil || st.Total != storageLargeTotal || st.ByState["scheduled"] != storageLargeDue {
						b.Fatalf("TaskStatistics = %+v, %v", st, err)
					}
				}
				b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/query")
			})
		})
	}
}
