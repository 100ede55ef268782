package engine_test

import (
	"context"
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

// offsets returns each device's delay at the activation at act (its run's
// due time less the activation), for the devices that ran it.
func offsets(b *bundle, id string, devs []scope.DeviceID, act time.Time) map[scope.DeviceID]time.Duration {
	out := map[scope.DeviceID]time.Duration{}
	for _, d := range devs {
		if r, ok := runAt(b, id, d, act); ok {
			out[d] = r.Due.Sub(act)
		}
	}
	return out
}

// "The distributed start time is calculated automatically when a task is
// created ... Later, the task is always started on the calculated start
// time. However, when task settings are edited or the task is started
// manually, the calculated value of the task start time changes."
//
// Devices that stay in the scope keep their start times when others leave
// or join (a joining device takes the place a leaving one freed) and
// across a server restart; a manual start calculates every start time
// again, still within the start budget.
func TestAutomaticDelayStartTimesStayPutUntilAManualStart(t *testing.T) {
	t.Parallel()
	const n = 20
	b := setup(t, n, halves(n))
	s := sched(schedule.EveryHours, func(s *schedule.Schedule) {
		s.Every = 1
		s.Start = t0.Add(30 * time.Minute)
		s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayAutomatic, IntervalMinutes: 1}
	})
	tk := b.create(t, task.Task{Scope: groupScope("g-a"), Schedule: s})
	var all []scope.DeviceID
	for i := range n {
		all = append(all, scope.DeviceID(fmtID(i)))
	}
	act := func(h int) time.Time { return t0.Add(time.Duration(h)*time.Hour + 30*time.Minute) }
	b.step(t, 40*time.Minute)
	first := offsets(b, tk.ID, all, act(0))
	if len(first) != n/2 {
		t.Fatalf("%d devices ran 00:30, want %d", len(first), n/2)
	}

	// d00002 (place 1) and d00006 leave; d00019 joins and takes place 1.
	moveTo(t, b, "g-b", "d00002", "d00006")
	moveTo(t, b, "g-a", "d00019")
	b.step(t, 60*time.Minute)
	second := offsets(b, tk.ID, all, act(1))
	for d, off := range first {
		if d == "d00002" || d == "d00006" {
			if _, ran := second[d]; ran {
				t.Errorf("%s ran after leaving the scope", d)
			}
			continue
		}
		if second[d] != off {
			t.Errorf("%s: delay %v at 01:30, want the calculated %v", d, second[d], off)
		}
	}
	if off, ok := second["d00019"]; !ok || off < 100*time.Millisecond || off >= 200*time.Millisecond {
		t.Errorf("d00019 (joined): delay %v, want place 1 of the layout [100ms, 200ms)", off)
	}

	// A server restart keeps every start time.
	must(t, b.sim.RestartServer(b.ctx))
	b.step(t, 60*time.Minute)
	third := offsets(b, tk.ID, all, act(2))
	if len(third) != len(second) {
		t.Fatalf("%d devices ran 02:30, want %d", len(third), len(second))
	}
	for d, off := range second {
		if third[d] != off {
			t.Errorf("%s: delay %v at 02:30 after a server restart, want the calculated %v", d, third[d], off)
		}
	}

	// A manual start calculates them again: every device moves.
	_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 60*time.Minute)
	fourth := offsets(b, tk.ID, all, act(3))
	if len(fourth) != len(third) {
		t.Fatalf("%d devices ran 03:30, want %d", len(fourth), len(third))
	}
	for d, off := range third {
		if fourth[d] == off {
			t.Errorf("%s: delay %v unchanged after a manual start", d, off)
		}
	}
	var devs []scope.DeviceID
	for d := range fourth {
		devs = append(devs, d)
	}
	if p := peakPerSecond(b, tk.ID, devs, act(3)); p > schedule.DefaultStartsPerSecond+1 {
		t.Errorf("peak %d starts in one second after the manual start, budget %d", p, schedule.DefaultStartsPerSecond)
	}
}

// After a restart the server takes the delay places devices report they
// hold, but not a place outside the layout (hostile or stale input) nor
// one another device confirmed: such a device gets its layout place.
func TestRestartedServerAdoptsOnlyPlausibleHeldSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inv := inmem.New()
	must(t, inv.PutGroups(context.Background(), scope.AdminGroup{ID: "g", Name: "g"}))
	must(t, inv.PutDevices(context.Background(), scope.Device{ID: "d1", GroupID: "g", Connected: true}, scope.Device{ID: "d2", GroupID: "g", Connected: true},
		scope.Device{ID: "d3", GroupID: "g", Connected: true}))
	clk := clock.NewMock()
	clk.Set(t0)
	store := memstore.New()
	open := func() (*engine.Server, *task.Manager, *recorder) {
		srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, Location: time.UTC, ReplicaID: "server-1"})
		must(t, err)
		m, err := task.New(task.Config{Store: store, Registry: registry(t), Inventory: inv, Clock: clk, Location: time.UTC, Dispatcher: srv})
		must(t, err)
		rec := &recorder{}
		must(t, srv.Open(ctx, m, rec))
		return srv, m, rec
	}
	_, m, _ := open()
	s := schedule.Default(schedule.EveryDays, t0, time.UTC)
	s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayAutomatic, IntervalMinutes: 1}
	tk, err := m.Create(ctx, task.System, task.Task{Name: "n", Application: appES, Type: "virus_scan", Scope: scope.Scope{Kind: scope.Group, Group: "g"}, Schedule: s})
	must(t, err)
	srv, _, rec := open() // restarted: d1..d3 at places 0..2, provisionally
	beat := func(d scope.DeviceID, held *transport.Slot) *transport.Slot {
		t.Helper()
		srv.Handle(ctx, transport.Message{Kind: transport.Heartbeat, Device: d, SentAt: t0,
			Heartbeat: &transport.HeartbeatInfo{Held: []transport.HeldTask{{TaskID: tk.ID, Revision: tk.Revision, Slot: held}}}})
		for _, msg := range rec.take() {
			if msg.Kind == transport.Deliver {
				return msg.Slot
			}
		}
		return held // kept: nothing delivered
	}
	for _, c := range []struct {
		name string
		d    scope.DeviceID
		held transport.Slot
		want transport.Slot
	}{
		{"far outside the layout", "d1", transport.Slot{Index: 1 << 40, Of: 1 << 41}, transport.Slot{Index: 0, Of: 3}},
		{"negative", "d2", transport.Slot{Index: -1, Of: 3}, transport.Slot{Index: 1, Of: 3}},
		{"d3 held d2's place before the restart: swapped", "d3", transport.Slot{Index: 1, Of: 3}, transport.Slot{Index: 1, Of: 3}},
		{"d2 now gets d3's former place", "d2", transport.Slot{Index: 1, Of: 3}, transport.Slot{Index: 2, Of: 3}},
	} {
		got := beat(c.d, &c.held)
		if got == nil || got.Index != c.want.Index {
			t.Errorf("%s: %s gets %+v, want index %d", c.name, c.d, got, c.want.Index)
		}
	}
}

// A device selection's task with the automatic delay: the devices keep
// their start times at every fire while another device is offline
// (recorded missed) or joins the selection.
func TestSelectionAutomaticDelayStartTimesStayPut(t *testing.T) {
	t.Parallel()
	const n = 20
	b := setup(t, n, halves(n))
	s := sched(schedule.EveryHours, func(s *schedule.Schedule) {
		s.Every = 1
		s.Start = t0.Add(30 * time.Minute)
		s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayAutomatic, IntervalMinutes: 1}
	})
	tk := b.create(t, task.Task{Scope: scope.Scope{Kind: scope.Selection, Selection: `device.group == "g-a"`}, Schedule: s})
	var all []scope.DeviceID
	for i := range n {
		all = append(all, scope.DeviceID(fmtID(i)))
	}
	act := func(h int) time.Time { return t0.Add(time.Duration(h)*time.Hour + 30*time.Minute) }
	b.step(t, 40*time.Minute)
	first := offsets(b, tk.ID, all, act(0))
	if len(first) != n/2 {
		t.Fatalf("%d devices ran 00:30, want %d", len(first), n/2)
	}
	b.sim.Disconnect("d00002")
	moveTo(t, b, "g-a", "d00019")
	b.step(t, 60*time.Minute)
	second := offsets(b, tk.ID, all, act(1))
	if _, ok := second["d00019"]; !ok {
		t.Fatal("d00019 did not run after joining the selection")
	}
	for d, off := range first {
		if d == "d00002" {
			continue
		}
		if second[d] != off {
			t.Errorf("%s: delay %v at 01:30 with d00002 offline and d00019 joined, want the calculated %v", d, second[d], off)
		}
	}
}
