package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/storage/storagetest"
)

// PostgreSQL's statistics come from delta rows that triggers append and
// compaction folds; after hundreds of small writes (several compactions,
// from writes and from reads) they still equal memstore's counts, and the
// deltas shrink back to at most one row per state.
func TestPostgresStatisticsCompaction(t *testing.T) {
	t.Parallel()
	s := openPG(t)
	defer s.Close()
	ref := memstore.New()
	ctx := context.Background()
	for _, st := range []storage.Store{s, ref} {
		rec := storagetest.NewTaskRecord("t", "T")
		if err := st.CreateTask(ctx, storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{Number: 1, Body: rec.Body}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 400 {
		r := storage.ResultRecord{TaskID: "t", DeviceID: fmt.Sprintf("d%d", i%37), RunID: int64(i / 37), Seq: 1, State: states[i%len(states)], RestartRequired: i%5 == 0}
		for _, st := range []storage.Store{s, ref} {
			if _, err := st.UpsertResults(ctx, storage.UpsertResultsParams{Results: []storage.ResultRecord{r}}); err != nil {
				t.Fatal(err)
			}
		}
		if i%97 == 0 {
			want, _ := ref.TaskStatistics(ctx, "t")
			got, err := s.TaskStatistics(ctx, "t")
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("after %d writes (-memstore +sql):\n%s", i+1, d)
			}
		}
	}
	var rows int
	if err := s.DB().Get(&rows, `SELECT COUNT(*) FROM result_deltas WHERE task_id = 't'`); err != nil {
		t.Fatal(err)
	}
	if rows > 400/2 {
		t.Fatalf("%d delta rows after 400 writes: compaction does not run", rows)
	}
	for range 2 { // the first read compacts when needed, the second sees the folded rows
		want, _ := ref.TaskStatistics(ctx, "t")
		got, err := s.TaskStatistics(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("final statistics (-memstore +sql):\n%s", d)
		}
	}
	// A write from a session with another search_path (a host's own
	// connection) still reaches the counters.
	var schema string
	if err := s.DB().Get(&schema, `SELECT current_schema()`); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("pgx", os.Getenv(pgEnv))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Exec(`UPDATE ` + schema + `.results SET state = 'audited' WHERE task_id = 't' AND device_id = 'd0'`); err != nil {
		t.Fatal(err)
	}
	after, err := s.TaskStatistics(ctx, "t")
	if err != nil || after.ByState["audited"] != 1 {
		t.Fatalf("statistics after an outside update = %+v, %v; want audited: 1", after, err)
	}
	if err := s.DeleteTask(ctx, storage.DeleteTaskParams{ID: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().Get(&rows, `SELECT COUNT(*) FROM result_deltas WHERE task_id = 't'`); err != nil || rows != 0 {
		t.Fatalf("%d delta rows survive DeleteTask (%v)", rows, err)
	}
}

// sqliteCounts reads SQLite's counter rows of a task, skipping zeros.
func sqliteCounts(t *testing.T, db interface {
	Query(string, ...any) (*sql.Rows, error)
}, q, task string) map[string][2]int {
	t.Helper()
	rows, err := db.Query(q, task)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][2]int{}
	for rows.Next() {
		var state string
		var n, restart int
		if err := rows.Scan(&state, &n, &restart); err != nil {
			t.Fatal(err)
		}
		if n != 0 || restart != 0 {
			out[state] = [2]int{n, restart}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

const (
	countersQuery = `SELECT state, n, restart FROM result_counts WHERE task_id = ?`
	truthQuery    = `SELECT state, COUNT(*), SUM(CASE WHEN restart_required THEN 1 ELSE 0 END) FROM results WHERE task_id = ? GROUP BY state`
)

// SQLite's statistics come from counter rows that row triggers keep
// (result_counts). Through new results, newer reports that change state or
// the restart flag, stale and duplicate re-deliveries (ignored: the upsert
// is idempotent), progress in the same state, writes and deletes from
// another connection and DeleteTask, the counters equal both memstore's
// statistics and a COUNT(*) of the rows.
func TestSQLiteStatisticsCounters(t *testing.T) {
	t.Parallel()
	s := openSQLiteFile(t)
	defer s.Close()
	ref := memstore.New()
	ctx := context.Background()
	for _, st := range []storage.Store{s, ref} {
		for _, id := range []string{"t", "u"} {
			rec := storagetest.NewTaskRecord(id, id)
			if err := st.CreateTask(ctx, storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{Number: 1, Body: rec.Body}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(when string) {
		t.Helper()
		for _, task := range []string{"t", "u"} {
			want, _ := ref.TaskStatistics(ctx, task)
			got, err := s.TaskStatistics(ctx, task)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("%s: statistics of %s (-memstore +sqlite):\n%s", when, task, d)
			}
			if d := cmp.Diff(sqliteCounts(t, s.DB(), truthQuery, task), sqliteCounts(t, s.DB(), countersQuery, task), cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("%s: counter rows of %s differ from the rows (-count(*) +counters):\n%s", when, task, d)
			}
		}
	}
	var batch []storage.ResultRecord
	for i := range 600 {
		task := "t"
		if i%3 == 0 {
			task = "u"
		}
		// run and seq move forward, except every 7th write, which repeats
		// an older report (a stale re-delivery the upsert must ignore).
		run := int64(i / 41)
		seq := int64(i % 5)
		if i%7 == 0 {
			run, seq = 0, 0
		}
		batch = append(batch, storage.ResultRecord{TaskID: task, DeviceID: fmt.Sprintf("d%d", i%53), RunID: run, Seq: seq, State: states[(i*7)%len(states)], RestartRequired: i%4 == 0, Progress: i % 100})
		if len(batch) == 13 || i == 599 {
			for _, st := range []storage.Store{s, ref} {
				if _, err := st.UpsertResults(ctx, storage.UpsertResultsParams{Results: batch}); err != nil {
					t.Fatal(err)
				}
			}
			// The same batch again changes nothing.
			if _, err := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: batch}); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
		if i%150 == 149 {
			check(fmt.Sprintf("after %d writes", i+1))
		}
	}
	// Writes that bypass the store (a host's own SQL) are counted.
	if _, err := s.DB().Exec(`UPDATE results SET state = 'audited', restart_required = 1 WHERE task_id = 't' AND device_id IN ('d1', 'd2')`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().Exec(`DELETE FROM results WHERE task_id = 'u' AND device_id = 'd3'`); err != nil {
		t.Fatal(err)
	}
	if got := sqliteCounts(t, s.DB(), countersQuery, "t")["audited"]; got != [2]int{2, 2} {
		t.Fatalf("counters after an outside update: audited = %v, want [2 2]", got)
	}
	if d := cmp.Diff(sqliteCounts(t, s.DB(), truthQuery, "u"), sqliteCounts(t, s.DB(), countersQuery, "u")); d != "" {
		t.Fatalf("counters after an outside delete (-count(*) +counters):\n%s", d)
	}
	// DeleteTask takes the counter rows with it; a task created again
	// with the same id starts from zero.
	if err := s.DeleteTask(ctx, storage.DeleteTaskParams{ID: "u"}); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := s.DB().Get(&rows, `SELECT COUNT(*) FROM result_counts WHERE task_id = 'u'`); err != nil || rows != 0 {
		t.Fatalf("%d counter rows survive DeleteTask (%v)", rows, err)
	}
	rec := storagetest.NewTaskRecord("u", "u")
	if err := s.CreateTask(ctx, storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{Number: 1, Body: rec.Body}}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.TaskStatistics(ctx, "u"); err != nil || st.Total != 0 || len(st.ByState) != 0 {
		t.Fatalf("statistics of a re-created task = %+v, %v; want empty", st, err)
	}
}

// Migrating a database that already holds results fills the counters
// from the rows (the migration's backfill), so statistics stay right
// across the upgrade.
func TestSQLiteCountersBackfill(t *testing.T) {
	t.Parallel()
	dsn := filepath.Join(t.TempDir(), "old.db")
	s, err := sqlstore.OpenSQLite(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rec := storagetest.NewTaskRecord("t", "t")
	if err := s.CreateTask(ctx, storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{Number: 1, Body: rec.Body}}); err != nil {
		t.Fatal(err)
	}
	var rs []storage.ResultRecord
	for i := range 50 {
		rs = append(rs, storage.ResultRecord{TaskID: "t", DeviceID: fmt.Sprintf("d%02d", i), RunID: 1, Seq: 1, State: states[i%len(states)], RestartRequired: i%3 == 0})
	}
	if _, err := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: rs}); err != nil {
		t.Fatal(err)
	}
	want, err := s.TaskStatistics(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	// Turn the database back into one from before the counters: no
	// table, no triggers, schema version below result_counts.
	var version int
	if err := s.DB().Get(&version, `SELECT version FROM taskfleet_schema WHERE name LIKE '%_result_counts'`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`DROP TRIGGER results_count_insert`, `DROP TRIGGER results_count_update`, `DROP TRIGGER results_count_delete`,
		`DROP TABLE result_counts`,
	} {
		if _, err := s.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DB().Exec(`DELETE FROM taskfleet_schema WHERE version >= ?`, version); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Migrations after the counters run again too: they are written to
	// re-apply cleanly (IF NOT EXISTS).
	s, err = sqlstore.OpenSQLite(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.TaskStatistics(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" || got.Total != 50 {
		t.Fatalf("statistics after the backfill (-before +after):\n%s", d)
	}
}
