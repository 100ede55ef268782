package engine_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

// BenchmarkIntake measures the server's handling of device messages:
// Results messages of 1,000 results each (100 daily device tasks x the
// last 10 days' runs, completed) from honest devices of a 200-device
// group, recorded in memstore (one Tick per 10 messages). Two servers
// take the same messages, interleaved, so that both see the same machine:
// one without the intake's item checks (the cost of everything else), one
// as a server runs. It reports both throughputs and the checks' cost,
// which may be at most 10%. Throughputs are per CPU second of the
// benchmark's thread (Linux; wall time elsewhere), so that other
// processes on the machine do not skew the comparison.
//
//	go test -run XXX -bench BenchmarkIntake -benchtime 400x ./task/engine/
func BenchmarkIntake(b *testing.B) {
	off, on := newIntakeBench(b, false), newIntakeBench(b, true)
	runtime.LockOSThread() // threadCPU measures this thread
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	var tOff, tOn time.Duration
	for i := 0; i < b.N; i++ {
		// Each server builds its message right before it takes it, and
		// which goes first alternates: both see the same caches.
		flush := i%10 == 9 || i == b.N-1
		first, second := off, on
		if i%2 == 1 {
			first, second = on, off
		}
		for _, x := range []*intakeBench{first, second} {
			b.StopTimer()
			m := x.msg(i)
			b.StartTimer()
			d := x.handle(b, m, flush)
			if x == on {
				tOn += d
			} else {
				tOff += d
			}
		}
	}
	b.StopTimer()
	off.check(b)
	on.check(b)
	n := float64(b.N * intakeTasks * intakeDays)
	b.ReportMetric(n/tOff.Seconds(), "results/cpu-s-unchecked")
	b.ReportMetric(n/tOn.Seconds(), "results/cpu-s-checked")
	b.ReportMetric(100*(tOn.Seconds()-tOff.Seconds())/tOn.Seconds(), "%-checks-cost")
}

const intakeDevices, intakeTasks, intakeDays = 200, 100, 10

type intakeBench struct {
	ctx  context.Context
	clk  *clock.Mock
	srv  *engine.Server
	devs []scope.DeviceID
	ids  []string
	n    int
}

func newIntakeBench(b *testing.B, checks bool) *intakeBench {
	ctx := context.Background()
	inv := inmem.New()
	must(b, inv.PutGroups(context.Background(), scope.AdminGroup{ID: "g", Name: "g"}))
	devs := make([]scope.DeviceID, intakeDevices)
	for i := range devs {
		devs[i] = scope.DeviceID(fmt.Sprintf("d%04d", i))
		must(b, inv.PutDevices(context.Background(), scope.Device{ID: devs[i], GroupID: "g", Connected: true}))
	}
	clk := clock.NewMock()
	clk.Set(t0)
	store := memstore.New()
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, Location: time.UTC})
	must(b, err)
	m, err := task.New(task.Config{Store: store, Registry: registry(b), Inventory: inv, Clock: clk, Location: time.UTC, Dispatcher: srv})
	must(b, err)
	must(b, srv.Open(ctx, m, nopEndpoint{}))
	engine.SetIntakeChecks(srv, checks)
	ids := make([]string, intakeTasks)
	for i := range ids {
		tk, err := m.Create(ctx, task.System, task.Task{Name: fmt.Sprintf("n%d", i), Application: appES, Type: "virus_scan",
			Scope: scope.Scope{Kind: scope.Group, Group: "g"}, Schedule: schedule.Default(schedule.EveryDays, t0, time.UTC)})
		must(b, err)
		ids[i] = tk.ID
	}
	return &intakeBench{ctx: ctx, clk: clk, srv: srv, devs: devs, ids: ids}
}

// msg returns message i: round r of the devices reports days r*10+1 ..
// r*10+10, always newer runs, within DeviceRunWindow of the clock.
func (x *intakeBench) msg(i int) transport.Message {
	round := i / intakeDevices
	now := t0.Add(time.Duration(round*intakeDays+intakeDays) * 24 * time.Hour)
	x.clk.Set(now)
	d := x.devs[i%intakeDevices]
	m := transport.Message{Kind: transport.Results, Device: d, Key: fmt.Sprintf("r/%s/%d", d, i), Results: make([]transport.Result, 0, intakeTasks*intakeDays)}
	for _, id := range x.ids {
		for k := intakeDays; k >= 1; k-- {
			act := now.Add(-time.Duration(k) * 24 * time.Hour)
			m.Results = append(m.Results, transport.Result{TaskID: id, RunID: transport.RunID(act, transport.Scheduled), Seq: transport.SeqDevice + 1,
				State: string(task.Completed), DueAt: act, StartedAt: act, FinishedAt: act.Add(time.Minute), UpdatedAt: act.Add(time.Minute), Progress: 100})
		}
	}
	x.n++
	return m
}

// handle has the server take m (and record, on flush) and returns the
// CPU time it took (wall time where thread CPU time is not available).
func (x *intakeBench) handle(b *testing.B, m transport.Message, flush bool) time.Duration {
	c0, ok := threadCPU()
	start := time.Now()
	x.srv.Handle(x.ctx, m)
	if flush {
		must(b, x.srv.Tick(x.ctx)) // records the buffered results
	}
	if c1, _ := threadCPU(); ok {
		return c1 - c0
	}
	return time.Since(start)
}

func (x *intakeBench) check(b *testing.B) {
	if st := x.srv.Stats(); st.Rejected != 0 || st.ResultsApplied != int64(x.n*intakeTasks*intakeDays) {
		b.Fatalf("applied %d of %d results, rejected %d (%v)", st.ResultsApplied, x.n*intakeTasks*intakeDays, st.Rejected, st.RejectedBy)
	}
}
