package sqlstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/storage"
)

// BenchmarkRecordBatches is the store's share of the engine's group
// commit, as the 7-day simulation (task/engine BenchmarkSimulation) drives
// it on SQLite: batches of 1,000 results of one of 50 tasks (UUID ids)
// from 10,000 devices in random order, each run moving through
// scheduled, pending, running and completed, written as task.Manager
// does: the keyed history events first (AppendEvents), then the results
// (UpsertResults). The tables grow with every batch, so run it with a
// fixed count to compare:
//
//	go test ./storage/sqlstore/ -run '^$' -bench RecordBatches -benchtime 400x
func BenchmarkRecordBatches(b *testing.B) {
	const (
		tasks   = 50
		devices = 10000
		batch   = 1000
	)
	ctx := context.Background()
	s := openSQLiteFile(b)
	defer s.Close()
	ids := make([]string, tasks)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range ids {
		ids[i] = fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xfff, rng.Uint32()&0xfff, rng.Uint64()&0xffffffffffff)
		createBenchTask(b, s, ids[i])
	}
	states := []string{"scheduled", "pending", "running", "completed"}
	// step[t][d] is where device d is in task t's current run.
	step := make([][]int, tasks)
	runs := make([][]int64, tasks)
	for i := range step {
		step[i] = make([]int, devices)
		runs[i] = make([]int64, devices)
	}
	at := time.Date(2026, 3, 23, 0, 0, 0, 0, time.UTC)
	rs := make([]storage.ResultRecord, batch)
	evs := make([]storage.EventRecord, batch)
	rows := 0
	// task.Manager's history key of a result update.
	key := func(dev string, run int64, seq int) string {
		return "result/" + strconv.FormatInt(run, 10) + "/" + dev + "/" + strconv.Itoa(seq)
	}
	b.ResetTimer()
	c0 := processCPU()
	for i := range b.N {
		t := i % tasks
		at = at.Add(2 * time.Minute)
		perm := rng.Perm(devices)[:batch]
		for j, d := range perm {
			k := step[t][d]
			step[t][d]++
			if k%len(states) == 0 {
				runs[t][d] = at.UnixMilli() * 4 // a scheduled run's id
			}
			run := runs[t][d]
			st := states[k%len(states)]
			dev := fmt.Sprintf("d%05d", d)
			rs[j] = storage.ResultRecord{TaskID: ids[t], DeviceID: dev, RunID: run, Seq: int64(k%len(states) + 1), State: st,
				DueAt: at, UpdatedAt: at, Message: ""}
			evs[j] = storage.EventRecord{TaskID: ids[t], DeviceID: dev, RunID: run, At: at, Level: "result", Severity: "info",
				Message: st + " on " + dev, Key: key(dev, run, k%len(states)+1)}
		}
		if n, err := s.AppendEvents(ctx, storage.AppendEventsParams{Events: evs}); err != nil || n != batch {
			b.Fatalf("append events = %d, %v", n, err)
		}
		if n, err := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: rs}); err != nil || n != batch {
			b.Fatalf("upsert results = %d, %v", n, err)
		}
		rows += batch
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "results/s")
	b.ReportMetric(float64((processCPU()-c0).Nanoseconds())/float64(rows), "cpu-ns/result")
}
