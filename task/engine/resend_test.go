package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

// An unanswered start is resent after RetryInterval, then after twice as
// long each time, at most MaxRetryInterval apart, and never given up; a
// device that becomes visible again gets it at once and its back-off
// starts over. Before, every unanswered start went out again every
// RetryInterval (a restarted server's slow intake made the whole fleet
// receive each start several times).
func TestUnansweredStartsBackOff(t *testing.T) {
	t.Parallel()
	for _, claims := range []bool{false, true} {
		t.Run(fmt.Sprintf("claims=%v", claims), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			inv := inmem.New()
			must(t, inv.PutGroups(ctx, scope.AdminGroup{ID: "g", Name: "g"}))
			must(t, inv.PutDevices(ctx, scope.Device{ID: "d1", GroupID: "g", Connected: true}))
			clk := clock.NewMock()
			clk.Set(t0)
			store := memstore.New()
			srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, Location: time.UTC, SingleReplica: !claims, EngineClockLeases: true,
				RetryInterval: time.Minute, MaxRetryInterval: 4 * time.Minute, LeaseTTL: 30 * time.Second})
			must(t, err)
			m, err := task.New(task.Config{Store: store, Registry: registry(t), Inventory: inv, Clock: clk, Location: time.UTC, Dispatcher: srv})
			must(t, err)
			rec := &recorder{}
			must(t, srv.Open(ctx, m, rec))
			heartbeat := func() {
				srv.Handle(ctx, transport.Message{Kind: transport.Heartbeat, Device: "d1", Heartbeat: &transport.HeartbeatInfo{}})
			}
			heartbeat()
			tk, err := m.Create(ctx, task.System, task.Task{Name: "scan", Application: appES, Type: "virus_scan", Scope: scope.Scope{Kind: scope.Group, Group: "g"}})
			must(t, err)
			_, err = m.Start(ctx, task.System, tk.ID)
			must(t, err)
			var sentAt []int // minutes after the start
			starts := func() {
				for _, x := range rec.take() {
					if x.Kind == transport.StartRun {
						sentAt = append(sentAt, int(clk.Now().Sub(t0)/time.Minute))
					}
				}
			}
			for range 29 {
				must(t, srv.Tick(ctx))
				starts()
				clk.Add(time.Minute)
				if clk.Now().Sub(t0) < 12*time.Minute {
					heartbeat() // visible, until minute 11
				}
			}
			// Sent at 0; resent after 1, 2, 4, 4 minutes, and still every
			// 4 minutes once the device went silent (minute 11).
			if diff := cmp.Diff([]int{0, 1, 3, 7, 11, 15, 19, 23, 27}, sentAt); diff != "" {
				t.Fatalf("minutes of the sends (-want +got):\n%s", diff)
			}
			// Invisible since minute 26 (VisibilityTimeout 15 minutes): its
			// next heartbeat, two minutes after a resend, brings the start
			// at once, and the back-off starts over from RetryInterval.
			heartbeat() // minute 29
			starts()
			clk.Add(time.Minute)
			must(t, srv.Tick(ctx))
			starts()
			if diff := cmp.Diff([]int{0, 1, 3, 7, 11, 15, 19, 23, 27, 29, 30}, sentAt); diff != "" {
				t.Fatalf("minutes of the sends after the device became visible again (-want +got):\n%s", diff)
			}
			if st := srv.Stats(); st.Dispatched != 1 || st.Resent != 10 || st.Fenced != 0 || st.TakenOver != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// MaxRetryInterval below RetryInterval is refused, not fixed up.
func TestMaxRetryIntervalBelowRetryInterval(t *testing.T) {
	t.Parallel()
	_, err := engine.New(engine.Config{Store: memstore.New(), Inventory: inmem.New(), RetryInterval: time.Minute, MaxRetryInterval: 30 * time.Second})
	var ve *engine.ValidationError
	if !errors.Is(err, engine.ErrInvalid) || !errors.As(err, &ve) || ve.Field != "MaxRetryInterval" {
		t.Fatalf("err %v, want a validation error of MaxRetryInterval", err)
	}
}

// unreachable is an endpoint whose devices are not connected until up is
// set; it records the StartRun messages it delivered.
type unreachable struct {
	recorder
	up atomic.Bool
}

func (u *unreachable) Send(ctx context.Context, m transport.Message) error {
	if !u.up.Load() {
		return transport.ErrUnreachable
	}
	return u.recorder.Send(ctx, m)
}

// A start whose send found the device unreachable (a restarted server's
// devices are still reconnecting) went nowhere: it is tried again within
// seconds, not after RetryInterval. The 100,000-agent load test's
// restarted server sent 92,000 starts before the agents were back and
// waited a minute to send them again.
func TestUnreachableStartIsRetriedSoon(t *testing.T) {
	t.Parallel()
	ctx, clk, srv, ep := startOnUnreachable(t)
	must(t, srv.Tick(ctx)) // sent into the void
	ep.up.Store(true)      // the device is back
	clk.Add(5 * time.Second)
	must(t, srv.Tick(ctx))
	n := 0
	for _, x := range ep.take() {
		if x.Kind == transport.StartRun {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d starts delivered 5 s after an unreachable send, want 1", n)
	}
}

// TestUnreachableRetriesAreNotResends: the 5-second retries of a start
// whose device is not connected are refused by the transport at once;
// they count in Stats.Unreachable, not in Stats.Resent, which counts
// starts that actually went out again.
func TestUnreachableRetriesAreNotResends(t *testing.T) {
	t.Parallel()
	ctx, clk, srv, ep := startOnUnreachable(t)
	must(t, srv.Tick(ctx)) // dispatched, refused
	for range 4 {
		clk.Add(5 * time.Second)
		must(t, srv.Tick(ctx)) // retried, refused
	}
	st := srv.Stats()
	if st.Dispatched != 1 || st.Resent != 0 || st.Unreachable != 5 {
		t.Fatalf("stats %+v: want 1 dispatched, 0 resent, 5 refused as unreachable", st)
	}
	ep.up.Store(true)
	clk.Add(5 * time.Second)
	must(t, srv.Tick(ctx)) // goes out
	clk.Add(time.Minute)
	must(t, srv.Tick(ctx)) // unanswered: sent again
	if st := srv.Stats(); st.Resent != 2 || st.Unreachable != 5 {
		t.Fatalf("stats %+v: want 2 resent (the send after the device came back, the retry a minute later), 5 unreachable", st)
	}
}

// startOnUnreachable starts a task on one device behind an endpoint
// that refuses every send until ep.up is set, with a mock clock.
func startOnUnreachable(t *testing.T) (context.Context, *clock.Mock, *engine.Server, *unreachable) {
	t.Helper()
	ctx := context.Background()
	inv := inmem.New()
	must(t, inv.PutGroups(ctx, scope.AdminGroup{ID: "g", Name: "g"}))
	must(t, inv.PutDevices(ctx, scope.Device{ID: "d1", GroupID: "g", Connected: true}))
	clk := clock.NewMock()
	clk.Set(t0)
	store := memstore.New()
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, Location: time.UTC, EngineClockLeases: true, RetryInterval: time.Minute})
	must(t, err)
	m, err := task.New(task.Config{Store: store, Registry: registry(t), Inventory: inv, Clock: clk, Location: time.UTC, Dispatcher: srv})
	must(t, err)
	ep := &unreachable{}
	must(t, srv.Open(ctx, m, ep))
	tk, err := m.Create(ctx, task.System, task.Task{Name: "scan", Application: appES, Type: "virus_scan", Scope: scope.Scope{Kind: scope.Group, Group: "g"}})
	must(t, err)
	_, err = m.Start(ctx, task.System, tk.ID)
	must(t, err)
	return ctx, clk, srv, ep
}
