package task_test

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
)

// setupTasks creates n group tasks.
func setupTasks(b *testing.B, n int) (*bundle, []*task.Task) {
	bd := setup(b)
	tasks := make([]*task.Task, n)
	for i := range n {
		x, err := bd.m.Create(bd.ctx, bd.admin, groupScan(fmt.Sprintf("Scan %06d", i)))
		if err != nil {
			b.Fatal(err)
		}
		tasks[i] = x
	}
	return bd, tasks
}

// BenchmarkCreate measures Create with 100,000 tasks already stored.
func BenchmarkCreate(b *testing.B) {
	bd, _ := setupTasks(b, 100_000)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := bd.m.Create(bd.ctx, bd.admin, groupScan(fmt.Sprintf("New %d", i))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet reads tasks out of 100,000. cpu-ns/op is the process's
// CPU time per read: on a shared machine it measures our work where
// ns/op measures the neighbours too.
func BenchmarkGet(b *testing.B) {
	bd, tasks := setupTasks(b, 100_000)
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; b.Loop(); i++ {
		if _, err := bd.m.Get(bd.ctx, bd.admin, tasks[i%len(tasks)].ID); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

func BenchmarkUpdate(b *testing.B) {
	bd, tasks := setupTasks(b, 100_000)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		t := tasks[i%len(tasks)]
		t.Description = fmt.Sprint("edit ", i)
		nt, err := bd.m.Update(bd.ctx, bd.admin, *t)
		if err != nil {
			b.Fatal(err)
		}
		tasks[i%len(tasks)] = nt
	}
}

// BenchmarkListPage lists one 100-task page out of 100,000.
func BenchmarkListPage(b *testing.B) {
	bd, _ := setupTasks(b, 100_000)
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		page, err := bd.m.List(bd.ctx, bd.admin, task.ListParams{Limit: 100})
		if err != nil || len(page.Applications[0].Tasks) != 100 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

const fleet = 1_000_000

// cpuTime is the process's user+system CPU time: on a shared machine it
// measures our work where wall time measures the neighbours too.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRecordResults1M records one result update for each of
// 1,000,000 devices of a group task per iteration, in batches of 10,000
// (the engine's batch size); results/s is the figure. The devices' rows
// exist beforehand, as after Start.
func BenchmarkRecordResults1M(b *testing.B) {
	bd := setup(b)
	big := groupScan("Big")
	// History of results only: running updates store no event, so this
	// measures result ingest (events are measured by the store's own
	// benchmarks).
	big.Notifications.History = task.HistoryResults
	x, err := bd.m.Create(bd.ctx, bd.admin, big)
	if err != nil {
		b.Fatal(err)
	}
	devices := make([]scope.DeviceID, fleet)
	for i := range devices {
		devices[i] = scope.DeviceID(fmt.Sprintf("dev-%07d", i))
	}
	batch := make([]task.Result, 10_000)
	seq := int64(0)
	record := func(state task.State) {
		seq++
		for off := 0; off < fleet; off += len(batch) {
			for i := range batch {
				batch[i] = task.Result{TaskID: x.ID, DeviceID: devices[off+i], RunID: 1, Seq: seq, State: state, Progress: 50}
			}
			if _, err := bd.m.Runtime().RecordResults(bd.ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Every device already has its row, as after Start: the timed loop
	// measures the updates devices send.
	record(task.Pending)
	runtime.GC()
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		record(task.Running)
	}
	b.ReportMetric(float64(fleet)*float64(b.N)/b.Elapsed().Seconds(), "results/s")
	b.ReportMetric(float64(fleet)*float64(b.N)/(cpuTime()-cpu0).Seconds(), "results/cpu-s")
}

// BenchmarkStatistics1M computes statistics of a task with 1,000,000
// device results.
func BenchmarkStatistics1M(b *testing.B) {
	bd := setup(b)
	x, err := bd.m.Create(bd.ctx, bd.admin, groupScan("Big"))
	if err != nil {
		b.Fatal(err)
	}
	states := []string{string(task.Completed), string(task.Running), string(task.Failed), string(task.Pending)}
	recs := make([]storage.ResultRecord, 0, 10_000)
	for i := range fleet {
		recs = append(recs, storage.ResultRecord{TaskID: x.ID, DeviceID: fmt.Sprintf("dev-%07d", i), RunID: 1, Seq: 1, State: states[i%4]})
		if len(recs) == cap(recs) {
			if _, err := bd.store.UpsertResults(bd.ctx, storage.UpsertResultsParams{Results: recs}); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	b.ResetTimer()
	for b.Loop() {
		st, err := bd.m.Statistics(bd.ctx, bd.admin, x.ID)
		if err != nil || st.Total != fleet {
			b.Fatal(st.Total, err)
		}
	}
}
