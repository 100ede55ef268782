package task_test

import (
	"context"
	"testing"

	"github.com/taskfleet/taskfleet/task"
)

// savedRecorder is a task.Dispatcher that keeps the values it is given.
type savedRecorder struct{ saved []*task.Task }

func (r *savedRecorder) TaskSaved(_ context.Context, t *task.Task) error {
	r.saved = append(r.saved, t)
	return nil
}
func (r *savedRecorder) TaskDeleted(context.Context, string) error            { return nil }
func (r *savedRecorder) StartRun(context.Context, *task.Task, task.Run) error { return nil }
func (r *savedRecorder) StopRun(context.Context, *task.Task) error            { return nil }

// TestDispatcherGetsNoCallerValue: the value the Dispatcher gets (and an
// engine keeps) is not the one Create and Update return to the caller, so
// a caller changing its task cannot change the engine's view of it; with
// the cache on it is the cached value (the engine keeps no copy), with
// the cache off a copy.
func TestDispatcherGetsNoCallerValue(t *testing.T) {
	for _, c := range []struct {
		name  string
		cache int
	}{{"cache", 0}, {"no cache", -1}} {
		t.Run(c.name, func(t *testing.T) {
			b := setup(t)
			rec := &savedRecorder{}
			m, err := task.New(task.Config{Store: b.store, Registry: registry(t), Inventory: b.inv, Clock: b.clk, Dispatcher: rec, CacheSize: c.cache})
			must(t, err)
			created, err := m.Create(b.ctx, b.admin, groupScan("Scan"))
			must(t, err)
			upd := *created
			upd.Name = "Scan 2"
			updated, err := m.Update(b.ctx, b.admin, upd)
			must(t, err)
			if len(rec.saved) != 2 {
				t.Fatalf("dispatcher got %d saves, want 2", len(rec.saved))
			}
			for i, got := range []*task.Task{created, updated} {
				kept := rec.saved[i]
				if kept == got {
					t.Fatalf("save %d: the dispatcher got the caller's value", i)
				}
				name := kept.Name
				got.Name = "changed by the caller"
				if kept.Name != name || kept.ID != got.ID || kept.Revision != got.Revision {
					t.Fatalf("save %d: dispatcher's task %q rev %d, caller's %q rev %d", i, kept.Name, kept.Revision, got.Name, got.Revision)
				}
			}
		})
	}
}
