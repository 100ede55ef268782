package engine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
	"github.com/taskfleet/taskfleet/task/transport/inproc"
)

type fakeSink struct {
	mu      sync.Mutex
	entries []engine.ResultEntry
}

func (f *fakeSink) WriteResult(_ context.Context, e engine.ResultEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, e)
	return nil
}

func (f *fakeSink) byDevice() map[scope.DeviceID][]engine.ResultEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[scope.DeviceID][]engine.ResultEntry{}
	for _, e := range f.entries {
		out[e.DeviceID] = append(out[e.DeviceID], e)
	}
	return out
}

// With a ResultSink the server writes each final result once: the runs
// its devices report (also when the network loses acknowledgements and
// devices resend) and the misses it records itself; progress states are
// not written.
func TestResultSinkGetsEveryFinalResultOnce(t *testing.T) {
	t.Parallel()
	sink := &fakeSink{}
	b := setup(t, 3, func(c *enginetest.Config) {
		c.Server.ResultSink = sink
		c.Faults = inproc.Faults{Drop: 0.3, Duplicate: 0.3}
	})
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, nil)})
	b.sim.Disconnect("d00002")
	_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 2*time.Hour)
	got := sink.byDevice()
	for _, d := range []scope.DeviceID{"d00000", "d00001"} {
		if len(got[d]) != 1 || got[d][0].State != task.Completed || got[d][0].TaskName != tk.Name || got[d][0].Application != appES || got[d][0].Severity != task.SeverityInfo {
			t.Errorf("%s: entries %+v, want one completed of %q", d, got[d], tk.Name)
		}
	}
	if e := got["d00002"]; len(e) != 1 || e[0].State != task.Missed || e[0].Severity != task.SeverityError {
		t.Errorf("d00002: entries %+v, want one missed (error)", e)
	}
}

// Without a ResultSink nothing is written anywhere (the default is off):
// the server runs as before.
func TestResultSinkIsOffByDefault(t *testing.T) {
	t.Parallel()
	b := setup(t, 1, nil)
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, nil)})
	_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, time.Hour)
	if st := b.result(t, tk.ID, "d00000").State; st != task.Completed {
		t.Fatalf("state %s", st)
	}
}
