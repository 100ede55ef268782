package engine_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

type recorder struct {
	mu   sync.Mutex
	msgs []transport.Message
}

func (r *recorder) Send(_ context.Context, m transport.Message) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	return nil
}

// acked takes the recorded messages and reports whether one of them
// acknowledged key to device d.
func (r *recorder) acked(d scope.DeviceID, key string) bool {
	for _, x := range r.take() {
		if x.Kind == transport.Ack && x.Device == d && slices.Contains(x.Acks, key) {
			return true
		}
	}
	return false
}

func (r *recorder) take() []transport.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.msgs
	r.msgs = nil
	return out
}

// A heartbeat brings the device's definitions up to date: what it lacks,
// holds at an older revision or with a moved delay slot is delivered; what
// it holds but is no longer its task is withdrawn, once, whatever the
// order of the held list; of an id held twice the later entry counts.
func TestHeartbeatReconcilesHeldTasks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inv := inmem.New()
	must(t, inv.PutGroups(ctx, scope.AdminGroup{ID: "g", Name: "g"}))
	must(t, inv.PutDevices(ctx, scope.Device{ID: "d1", GroupID: "g", Connected: true}, scope.Device{ID: "d2", GroupID: "g", Connected: true}))
	clk := clock.NewMock()
	clk.Set(t0)
	store := memstore.New()
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, Location: time.UTC})
	must(t, err)
	ids := 0
	m, err := task.New(task.Config{Store: store, Registry: registry(t), Inventory: inv, Clock: clk, Location: time.UTC, Dispatcher: srv,
		NewID: func() string { ids++; return fmt.Sprintf("t%d", ids) }})
	must(t, err)
	rec := &recorder{}
	must(t, srv.Open(ctx, m, rec))
	create := func(auto bool) *task.Task {
		s := schedule.Default(schedule.EveryDays, t0, time.UTC)
		if auto {
			s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayAutomatic, IntervalMinutes: 1}
		}
		tk, err := m.Create(ctx, task.System, task.Task{Name: fmt.Sprintf("n%d", ids), Application: appES, Type: "virus_scan",
			Scope: scope.Scope{Kind: scope.Group, Group: "g"}, Schedule: s})
		must(t, err)
		return tk
	}
	t1, t2 := create(false), create(true) // t2: d1's slot is {0 of 2}
	rec.take()
	type sent struct {
		Kind   transport.Kind
		TaskID string
		Slot   *transport.Slot
	}
	beat := func(held ...transport.HeldTask) []sent {
		t.Helper()
		srv.Handle(ctx, transport.Message{Kind: transport.Heartbeat, Device: "d1", SentAt: t0, Heartbeat: &transport.HeartbeatInfo{Held: held}})
		var out []sent
		for _, m := range rec.take() {
			s := sent{Kind: m.Kind, TaskID: m.TaskID, Slot: m.Slot}
			if m.Definition != nil {
				s.TaskID = m.Definition.Task.ID
			}
			if m.Device != "d1" {
				t.Errorf("%s sent to %s", m.Kind, m.Device)
			}
			out = append(out, s)
		}
		return out
	}
	slot := &transport.Slot{Index: 0, Of: 2}
	syncMsg := sent{Kind: transport.Sync}
	for _, c := range []struct {
		name string
		held []transport.HeldTask
		want []sent
	}{
		{"nothing held", nil, []sent{{transport.Deliver, t1.ID, nil}, {transport.Deliver, t2.ID, slot}, syncMsg}},
		{"all current", []transport.HeldTask{{TaskID: t1.ID, Revision: t1.Revision}, {TaskID: t2.ID, Revision: t2.Revision, Slot: slot}}, []sent{syncMsg}},
		{"unsorted, stale, moved slot, strangers twice",
			[]transport.HeldTask{{TaskID: "zz"}, {TaskID: t2.ID, Revision: t2.Revision, Slot: &transport.Slot{Index: 1, Of: 2}}, {TaskID: "a0"}, {TaskID: t1.ID, Revision: t1.Revision - 1}, {TaskID: "zz"}},
			[]sent{{transport.Deliver, t1.ID, nil}, {transport.Deliver, t2.ID, slot}, {transport.Withdraw, "a0", nil}, {transport.Withdraw, "zz", nil}, syncMsg}},
		{"held twice: the later entry counts",
			[]transport.HeldTask{{TaskID: t1.ID, Revision: t1.Revision - 1}, {TaskID: t1.ID, Revision: t1.Revision}, {TaskID: t2.ID, Revision: t2.Revision}},
			[]sent{{transport.Deliver, t2.ID, slot}, syncMsg}},
		{"held twice, the later stale",
			[]transport.HeldTask{{TaskID: t1.ID, Revision: t1.Revision}, {TaskID: t1.ID, Revision: t1.Revision - 1}, {TaskID: t2.ID, Revision: t2.Revision, Slot: slot}},
			[]sent{{transport.Deliver, t1.ID, nil}, syncMsg}},
	} {
		if d := cmp.Diff(c.want, beat(c.held...)); d != "" {
			t.Errorf("%s: sent (-want +got):\n%s", c.name, d)
		}
	}
}

// A Quiet heartbeat (protocol 4: the agent has nothing waiting to send) is
// answered with a Sync only when the device has not acted on the latest
// updates generation; every heartbeat of an older agent (protocol 1 to 3:
// no Quiet, or no payload at all, as the wire samples of those versions
// decode) and every heartbeat with messages waiting is answered with a
// Sync carrying the generation, as before.
func TestQuietHeartbeatAnsweredOnlyWhenBehind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inv := inmem.New()
	must(t, inv.PutGroups(ctx, scope.AdminGroup{ID: "g", Name: "g"}))
	must(t, inv.PutDevices(ctx, scope.Device{ID: "d1", GroupID: "g", Connected: true}))
	clk := clock.NewMock()
	clk.Set(t0)
	store := memstore.New()
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, Location: time.UTC})
	must(t, err)
	m, err := task.New(task.Config{Store: store, Registry: registry(t), Inventory: inv, Clock: clk, Location: time.UTC, Dispatcher: srv})
	must(t, err)
	rec := &recorder{}
	must(t, srv.Open(ctx, m, rec))
	must(t, srv.UpdatesDownloaded(ctx, "repo-1"))
	gen := t0.UnixMilli() // the generation of the download at t0
	rec.take()
	syncs := func(msg transport.Message) []int64 {
		t.Helper()
		msg.Device, msg.SentAt = "d1", t0
		srv.Handle(ctx, msg)
		var out []int64
		for _, x := range rec.take() {
			if x.Kind == transport.Sync {
				out = append(out, x.SyncInfo.UpdatesGeneration)
			}
		}
		return out
	}
	beat := func(version int, info *transport.HeartbeatInfo) transport.Message {
		return transport.Message{Version: version, Kind: transport.Heartbeat, Heartbeat: info}
	}
	// The heartbeats of older versions, as their wire samples decode.
	var old []transport.Message
	for _, f := range []string{"../transport/testdata/v1/heartbeat.json", "../transport/testdata/v2/heartbeat.json"} {
		b, err := os.ReadFile(f)
		must(t, err)
		msg, err := transport.DecodeBytes(b)
		must(t, err)
		old = append(old, msg)
	}
	for _, c := range []struct {
		name string
		msg  transport.Message
		want []int64
	}{
		{"protocol 1 sample", old[0], []int64{gen}},
		{"protocol 2 sample", old[1], []int64{gen}},
		{"protocol 3, current generation", beat(3, &transport.HeartbeatInfo{UpdatesGeneration: gen}), []int64{gen}},
		{"no payload", beat(3, nil), []int64{gen}},
		{"quiet, current generation", beat(4, &transport.HeartbeatInfo{UpdatesGeneration: gen, Quiet: true}), nil},
		{"quiet, older generation", beat(4, &transport.HeartbeatInfo{UpdatesGeneration: gen - 1, Quiet: true}), []int64{gen}},
		{"quiet, never acted on updates", beat(4, &transport.HeartbeatInfo{Quiet: true}), []int64{gen}},
		{"messages waiting, current generation", beat(4, &transport.HeartbeatInfo{UpdatesGeneration: gen}), []int64{gen}},
	} {
		if d := cmp.Diff(c.want, syncs(c.msg)); d != "" {
			t.Errorf("%s: Sync answers (-want +got):\n%s", c.name, d)
		}
	}
}
