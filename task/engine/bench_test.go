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
// scheduled task: the engine's state plus the task value it keeps (not
// the stored record): a device-selection task on a weekly schedule over a
// one-device inventory.
// Per device in a task's scope the server adds its resolved device list
// entry and membership index (see the simulation's heap figures).
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
	tasks := make([]*task.Task, b.N)
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	for i := range tasks {
		tasks[i] = &task.Task{ID: fmt.Sprintf("task-%08d", i), Name: "t", Application: appES, Type: "virus_scan",
			Scope: scope.Scope{Kind: scope.Selection, Selection: `device.os.name.startsWith("Windows")`}, Schedule: s,
			Revision: 1, SettingsRevision: 1, CreatedAt: t0, UpdatedAt: t0}
		must(b, srv.TaskSaved(ctx, tasks[i]))
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/float64(b.N), "server-B/task")
	runtime.KeepAlive(tasks)
	runtime.KeepAlive(srv)
	runtime.KeepAlive(m)
}
