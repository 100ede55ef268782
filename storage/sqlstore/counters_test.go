package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
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
