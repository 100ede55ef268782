package sqlstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/storage"
)

// A batch naming the same device several times (newer, stale and newer
// again, within one multi-row statement and across the statements of a
// large batch) is applied as if record by record: the count is the
// records that were newer than what was stored before them, and the
// stored result is the newest.
func TestUpsertRepeatedDevicesInOneBatch(t *testing.T) {
	for _, be := range eventBackends {
		t.Run(be.name, func(t *testing.T) {
			s := be.open(t)
			defer s.Close()
			ctx := context.Background()
			createBenchTask(t, s, "t")
			at := time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC)
			rec := func(dev string, run, seq int64, state string) storage.ResultRecord {
				return storage.ResultRecord{TaskID: "t", DeviceID: dev, RunID: run, Seq: seq, State: state, UpdatedAt: at, Message: fmt.Sprintf("%d/%d", run, seq)}
			}
			// 300 filler devices put d1's later records into the next
			// statements (at most 256 rows each on SQLite).
			batch := []storage.ResultRecord{rec("d1", 1, 1, "running"), rec("d1", 1, 3, "completed"), rec("d1", 1, 2, "running")}
			for i := range 300 {
				batch = append(batch, rec(fmt.Sprintf("f%03d", i), 1, 1, "running"))
			}
			batch = append(batch, rec("d1", 1, 3, "completed"), rec("d1", 2, 1, "running"), rec("d1", 1, 9, "failed"), rec("d1", 2, 2, "completed"))
			n, err := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: batch})
			if err != nil {
				t.Fatal(err)
			}
			// d1: (1,1), (1,3), (2,1), (2,2) are newer than what was
			// stored before them; (1,2), the repeated (1,3) and (1,9)
			// are not. Plus the 300 fillers.
			if want := 4 + 300; n != want {
				t.Fatalf("UpsertResults = %d applied, want %d", n, want)
			}
			got, err := s.GetResult(ctx, "t", "d1")
			if err != nil {
				t.Fatal(err)
			}
			want := rec("d1", 2, 2, "completed")
			if d := cmp.Diff(want, got); d != "" {
				t.Fatalf("stored result (-want +got):\n%s", d)
			}
		})
	}
}
