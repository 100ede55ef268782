package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/storage/storagetest"
)

// Writers racing to create the same new devices (on PostgreSQL the COPY
// of new devices then hits the unique key and the batch falls back to the
// upsert) never fail, and every device ends with its newest record.
func TestConcurrentNewDevices(t *testing.T) {
	t.Parallel()
	for _, tg := range []struct {
		name string
		open func(t *testing.T) *sqlstore.Store
	}{
		{"SQLite", func(t *testing.T) *sqlstore.Store { return openSQLiteFile(t) }},
		{"Postgres", func(t *testing.T) *sqlstore.Store { return openPG(t) }},
	} {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			s := tg.open(t)
			defer s.Close()
			ctx := context.Background()
			rec := storagetest.NewTaskRecord("t", "T")
			if err := s.CreateTask(ctx, storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{Number: 1, Body: rec.Body}}); err != nil {
				t.Fatal(err)
			}
			const writers, devices, rounds = 6, 300, 5
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for r := range rounds {
						batch := make([]storage.ResultRecord, devices)
						for d := range batch {
							// Every writer sends every device; writer w's
							// record of round r has Seq r*writers+w.
							batch[d] = storage.ResultRecord{TaskID: "t", DeviceID: fmt.Sprintf("d%04d", (d+w*37)%devices), RunID: 1, Seq: int64(r*writers + w), State: fmt.Sprintf("s%d", w)}
						}
						// ErrRetryable (a deadlock PostgreSQL broke) means
						// retry, as the contract says.
						for {
							_, err := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: batch})
							if err == nil {
								break
							}
							if !errors.Is(err, storage.ErrRetryable) {
								t.Error(err)
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			all, err := s.ListResults(ctx, storage.ListResultsParams{TaskID: "t", Limit: storage.MaxListLimit})
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != devices {
				t.Fatalf("%d results, want %d", len(all), devices)
			}
			newest := int64((rounds-1)*writers + writers - 1)
			for _, r := range all {
				if r.Seq != newest || r.State != fmt.Sprintf("s%d", writers-1) {
					t.Fatalf("device %s ended at seq %d state %s, want %d s%d", r.DeviceID, r.Seq, r.State, newest, writers-1)
				}
			}
			st, err := s.TaskStatistics(ctx, "t")
			if err != nil || st.Total != devices {
				t.Fatalf("statistics %+v, %v; want %d results", st, err, devices)
			}
		})
	}
}
