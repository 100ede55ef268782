package sqlstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/storagetest"
)

// TestPostgresIngestMixes writes batches whose devices the PostgreSQL
// ingest path must classify from a sample (new: COPY; existing: upsert;
// mixed: look every device up), including mixes the sample cannot see:
// one existing device hidden among new ones (COPY fails on the unique key
// and the batch is written again by the upsert) and one new device hidden
// among existing ones (the upsert inserts it). Every batch must store
// exactly what applying its records one by one stores, and count the same.
func TestPostgresIngestMixes(t *testing.T) {
	ctx := context.Background()
	base := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	rec := func(dev int, seq int64) storage.ResultRecord {
		return storage.ResultRecord{TaskID: "t", DeviceID: fmt.Sprintf("d%05d", dev), RunID: 1, Seq: seq,
			State: fmt.Sprintf("s%d", seq), UpdatedAt: base.Add(time.Duration(seq) * time.Second)}
	}
	span := func(from, to int, seq int64) []storage.ResultRecord {
		var rs []storage.ResultRecord
		for d := from; d < to; d++ {
			rs = append(rs, rec(d, seq))
		}
		return rs
	}
	cat := func(parts ...[]storage.ResultRecord) []storage.ResultRecord {
		var rs []storage.ResultRecord
		for _, p := range parts {
			rs = append(rs, p...)
		}
		return rs
	}
	// Devices 0..999 exist before each case (seq 1).
	for _, tc := range []struct {
		name  string
		batch []storage.ResultRecord
		want  int // records that change a result
	}{
		{"all new", span(1000, 2000, 2), 1000},
		{"all existing", span(0, 1000, 2), 1000},
		{"half and half", cat(span(500, 1000, 2), span(1000, 1500, 2)), 1000},
		// Index 501 of a 1,001-device batch is not among the sampled
		// ones (0, 31, ..., 500, 531, ...).
		{"one existing hidden among new", cat(span(1000, 1501, 2), []storage.ResultRecord{rec(7, 2)}, span(1501, 2000, 2)), 1001},
		{"one new hidden among existing", cat(span(0, 501, 2), []storage.ResultRecord{rec(5007, 2)}, span(501, 1000, 2)), 1001},
		{"stale record of an existing device hidden among new", cat(span(1000, 1501, 2), []storage.ResultRecord{rec(7, 0)}, span(1501, 2000, 2)), 1000},
		{"new devices reported twice", cat(span(1000, 1300, 2), span(1000, 1300, 3), span(1300, 1600, 2)), 900},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openPG(t)
			defer s.Close()
			task := storagetest.NewTaskRecord("t", "T")
			if err := s.CreateTask(ctx, storage.CreateTaskParams{Task: task, Revision: storage.RevisionRecord{Number: 1, Body: task.Body}}); err != nil {
				t.Fatal(err)
			}
			if n, err := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: span(0, 1000, 1)}); err != nil || n != 1000 {
				t.Fatalf("seeding: UpsertResults = %d, %v", n, err)
			}
			n, err := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: tc.batch})
			if err != nil || n != tc.want {
				t.Fatalf("UpsertResults = %d, %v; want %d", n, err, tc.want)
			}
			// What applying the records one by one gives: the newest
			// (run, seq) of each device wins.
			want := map[string]storage.ResultRecord{}
			for _, r := range cat(span(0, 1000, 1), tc.batch) {
				if old, ok := want[r.DeviceID]; !ok || r.Seq > old.Seq {
					want[r.DeviceID] = r
				}
			}
			all, err := s.ListResults(ctx, storage.ListResultsParams{TaskID: "t", Limit: storage.MaxListLimit})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]storage.ResultRecord{}
			for _, r := range all {
				got[r.DeviceID] = storage.ResultRecord{TaskID: r.TaskID, DeviceID: r.DeviceID, RunID: r.RunID, Seq: r.Seq, State: r.State, UpdatedAt: r.UpdatedAt}
			}
			for k, r := range want {
				r.UpdatedAt = r.UpdatedAt.UTC()
				want[k] = r
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Fatalf("stored results differ from one-by-one application (-want +got):\n%s", d)
			}
			st, err := s.TaskStatistics(ctx, "t")
			if err != nil || st.Total != len(want) {
				t.Fatalf("statistics %+v, %v; want %d results", st, err, len(want))
			}
		})
	}
}
