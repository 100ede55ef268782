package engine_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

type nopEndpoint struct{}

func (nopEndpoint) Send(context.Context, transport.Message) error { return nil }

// BenchmarkServerMemoryPerTask reports the server's own memory for one
// scheduled task: the engine's state, excluding the task value itself,
// which the engine shares with the Manager's cache of decoded tasks
// (task.Dispatcher's TaskSaved gets the cached value and the engine keeps
// no copy; a task.Task is about 900 bytes, and the Manager keeps it
// whether or not an engine runs): a device-selection task on a weekly
// schedule over a one-device inventory. Per device in a task's scope the
// server adds its resolved device list entry and per-device task list
// entry (BenchmarkServerMemoryPerDevice).
func BenchmarkServerMemoryPerTask(b *testing.B) {
	ctx := context.Background()
	inv := inmem.New()
	must(b, inv.PutDevices(ctx, scope.Device{ID: "d1", Connected: true, OS: &scope.OS{Name: "Windows 11"}}))
	store := memstore.New()
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv})
	must(b, err)
	m, err := task.New(task.Config{Store: store, Registry: registry(b), Inventory: inv, Dispatcher: srv})
	must(b, err)
	must(b, srv.Open(ctx, m, nopEndpoint{}))
	s := schedule.Default(schedule.Weekly, t0, time.UTC)
	// The task values stand for the Manager cache's, allocated before
	// the measurement.
	tasks := make([]*task.Task, b.N)
	for i := range tasks {
		tasks[i] = &task.Task{ID: fmt.Sprintf("task-%08d", i), Name: "t", Application: appES, Type: "virus_scan",
			Scope: scope.Scope{Kind: scope.Selection, Selection: `device.os.name.startsWith("Windows")`}, Schedule: s,
			Revision: 1, SettingsRevision: 1, CreatedAt: t0, UpdatedAt: t0}
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	for _, t := range tasks {
		must(b, srv.TaskSaved(ctx, t))
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/float64(b.N), "server-B/task")
	runtime.KeepAlive(tasks)
	runtime.KeepAlive(srv)
	runtime.KeepAlive(m)
}

// BenchmarkServerMemoryPerDevice reports the server's memory per device
// in a task's scope, per task: every iteration gives a fresh server 10
// tasks over a 5,000-device group, then 10 more (a weekly schedule;
// "automatic" adds the automatic randomized delay, whose layout gives
// every device a place), each time followed by a synchronization that
// builds the per-device task lists. server-B/device/task is the growth
// from the second 10 tasks per device and task (the marginal cost);
// first-B/device/task that of the first 10, which also holds the
// per-device (not per-task) entries. The per-task state
// (BenchmarkServerMemoryPerTask) adds under 0.1 B here.
func BenchmarkServerMemoryPerDevice(b *testing.B) {
	for _, auto := range []bool{false, true} {
		name := "plain"
		if auto {
			name = "automatic"
		}
		b.Run(name, func(b *testing.B) {
			var marginal, first float64
			for range b.N {
				f, m := memoryPerDevice(b, 5000, 10, auto)
				first += f
				marginal += m
			}
			b.ReportMetric(marginal/float64(b.N), "server-B/device/task")
			b.ReportMetric(first/float64(b.N), "first-B/device/task")
		})
	}
}

// memoryPerDevice returns the heap growth per device and task of the
// first k tasks over n devices and of k tasks more.
func memoryPerDevice(b *testing.B, n, k int, auto bool) (first, marginal float64) {
	b.StopTimer()
	ctx := context.Background()
	inv := inmem.New()
	must(b, inv.PutGroups(ctx, scope.AdminGroup{ID: "g", Name: "g"}))
	devs := make([]scope.Device, n)
	for i := range devs {
		devs[i] = scope.Device{ID: scope.DeviceID(fmt.Sprintf("d%06d", i)), GroupID: "g", Connected: true}
	}
	must(b, inv.PutDevices(ctx, devs...))
	store := memstore.New()
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv})
	must(b, err)
	m, err := task.New(task.Config{Store: store, Registry: registry(b), Inventory: inv, Dispatcher: srv})
	must(b, err)
	must(b, srv.Open(ctx, m, nopEndpoint{}))
	s := schedule.Default(schedule.Weekly, t0, time.UTC)
	if auto {
		s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayAutomatic, IntervalMinutes: 1}
	}
	must(b, srv.UpdatesDownloaded(ctx, "before"))
	tasks := make([]*task.Task, 2*k)
	for i := range tasks {
		tasks[i] = &task.Task{ID: fmt.Sprintf("task-%08d", i), Name: "t", Application: appES, Type: "virus_scan",
			Scope: scope.Scope{Kind: scope.Group, Group: "g"}, Schedule: s,
			Revision: 1, SettingsRevision: 1, CreatedAt: t0, UpdatedAt: t0}
	}
	var ms [3]runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms[0])
	b.StartTimer()
	for round := range 2 {
		for _, t := range tasks[round*k : (round+1)*k] {
			must(b, srv.TaskSaved(ctx, t))
		}
		must(b, srv.UpdatesDownloaded(ctx, fmt.Sprintf("after-%d", round))) // builds the per-device task lists
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&ms[round+1])
		b.StartTimer()
	}
	per := func(from, to runtime.MemStats) float64 {
		return float64(int64(to.HeapAlloc)-int64(from.HeapAlloc)) / float64(k*n)
	}
	runtime.KeepAlive(tasks)
	runtime.KeepAlive(srv)
	runtime.KeepAlive(m)
	return per(ms[0], ms[1]), per(ms[1], ms[2])
}
