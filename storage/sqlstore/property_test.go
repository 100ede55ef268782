package sqlstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/storage/storagetest"
)

// TestAgreesWithMemstore drives the SQL store and the reference memstore
// with the same random result and event batches (duplicates inside a
// batch, reordered and stale deliveries, unknown tasks, purges) and checks
// every return value and the final state agree.
func TestAgreesWithMemstore(t *testing.T) {
	t.Parallel()
	backends := []struct {
		name string
		open func(t *testing.T) *sqlstore.Store
	}{
		{"SQLite", func(t *testing.T) *sqlstore.Store {
			s, err := sqlstore.OpenSQLite(context.Background(), ":memory:")
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"Postgres", func(t *testing.T) *sqlstore.Store { return openPG(t) }},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			for seed := range uint64(12) {
				t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
					s := be.open(t)
					defer s.Close()
					agree(t, s, memstore.New(), rand.New(rand.NewPCG(seed, 7)))
				})
			}
		})
	}
}

var states = []string{"scheduled", "pending", "running", "completed", "failed", "restart_required"}

func agree(t *testing.T, got storage.Store, want storage.Store, rng *rand.Rand) {
	ctx := context.Background()
	base := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	tasks := []string{"t0", "t1"}
	for _, id := range tasks {
		rec := storagetest.NewTaskRecord(id, "Task "+id)
		for _, s := range []storage.Store{got, want} {
			if err := s.CreateTask(ctx, storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{TaskID: id, Number: 1, Body: rec.Body}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	randTime := func() time.Time {
		if rng.IntN(4) == 0 {
			return time.Time{}
		}
		return base.Add(time.Duration(rng.IntN(1000)) * time.Minute).Add(time.Duration(rng.IntN(1e6)) * time.Microsecond)
	}
	for step := range 40 {
		switch rng.IntN(3) {
		case 0, 1:
			var batch []storage.ResultRecord
			for range 1 + rng.IntN(30) {
				task := tasks[rng.IntN(2)]
				if rng.IntN(10) == 0 {
					task = "unknown"
				}
				batch = append(batch, storage.ResultRecord{
					TaskID: task, DeviceID: fmt.Sprintf("d%d", rng.IntN(8)),
					RunID: int64(rng.IntN(4)), Seq: int64(rng.IntN(4)), State: states[rng.IntN(len(states))],
					DueAt: randTime(), StartedAt: randTime(), FinishedAt: randTime(), UpdatedAt: randTime(),
					Progress: rng.IntN(101), Message: fmt.Sprintf("m%d", rng.IntN(5)), RestartRequired: rng.IntN(3) == 0,
				})
			}
			nw, errW := want.UpsertResults(ctx, storage.UpsertResultsParams{Results: batch})
			ng, errG := got.UpsertResults(ctx, storage.UpsertResultsParams{Results: batch})
			if errW != nil || errG != nil || nw != ng {
				t.Fatalf("step %d: UpsertResults = %d, %v; memstore %d, %v\nbatch %+v", step, ng, errG, nw, errW, batch)
			}
		default:
			var evs []storage.EventRecord
			for range 1 + rng.IntN(10) {
				key := ""
				if rng.IntN(2) == 0 {
					key = fmt.Sprintf("k%d", rng.IntN(20))
				}
				evs = append(evs, storage.EventRecord{TaskID: tasks[rng.IntN(2)], DeviceID: fmt.Sprintf("d%d", rng.IntN(4)), RunID: 1, At: randTime(), Level: "info", Severity: "info", Message: "e", Key: key})
			}
			nw, errW := want.AppendEvents(ctx, storage.AppendEventsParams{Events: evs})
			ng, errG := got.AppendEvents(ctx, storage.AppendEventsParams{Events: evs})
			if errW != nil || errG != nil || nw != ng {
				t.Fatalf("step %d: AppendEvents = %d, %v; memstore %d, %v", step, ng, errG, nw, errW)
			}
			if rng.IntN(3) == 0 {
				before := randTime()
				pw, errW := want.PurgeEvents(ctx, storage.PurgeEventsParams{TaskID: "t0", Before: before})
				pg, errG := got.PurgeEvents(ctx, storage.PurgeEventsParams{TaskID: "t0", Before: before})
				if errW != nil || errG != nil || pw != pg {
					t.Fatalf("step %d: PurgeEvents = %d, %v; memstore %d, %v", step, pg, errG, pw, errW)
				}
			}
		}
	}
	ignoreID := cmpopts.IgnoreFields(storage.EventRecord{}, "ID")
	for _, task := range tasks {
		rw, _ := want.ListResults(ctx, storage.ListResultsParams{TaskID: task, Limit: 1000})
		rg, err := got.ListResults(ctx, storage.ListResultsParams{TaskID: task, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(rw, rg, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("results of %s (-memstore +sql):\n%s", task, d)
		}
		sw, _ := want.TaskStatistics(ctx, task)
		sg, err := got.TaskStatistics(ctx, task)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(sw, sg, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("statistics of %s (-memstore +sql):\n%s", task, d)
		}
		ew, _ := want.ListEvents(ctx, storage.ListEventsParams{TaskID: task, Limit: 1000})
		eg, err := got.ListEvents(ctx, storage.ListEventsParams{TaskID: task, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(ew, eg, cmpopts.EquateEmpty(), ignoreID); d != "" {
			t.Fatalf("events of %s (-memstore +sql):\n%s", task, d)
		}
	}
	for _, state := range states {
		before := base.Add(500 * time.Minute)
		dw, _ := want.DueResults(ctx, storage.DueResultsParams{State: state, Before: before, Limit: 1000})
		dg, err := got.DueResults(ctx, storage.DueResultsParams{State: state, Before: before, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(dw, dg, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("due %s results (-memstore +sql):\n%s", state, d)
		}
	}
}
