package engine_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
	"github.com/taskfleet/taskfleet/task/transport"
)

// halves is a fleet of n UTC devices: the even ones in group g-a, the
// odd ones in g-b (both under g-all).
func halves(n int) func(*enginetest.Config) {
	return func(c *enginetest.Config) {
		c.Groups = []scope.AdminGroup{{ID: "g-all", Name: "all"}, {ID: "g-a", Parent: "g-all", Name: "a"}, {ID: "g-b", Parent: "g-all", Name: "b"}}
		c.Devices = make([]scope.Device, n)
		for i := range n {
			g := scope.GroupID("g-a")
			if i%2 == 1 {
				g = "g-b"
			}
			c.Devices[i] = scope.Device{ID: scope.DeviceID(fmtID(i)), GroupID: g, TimeZone: "UTC", Tags: []string{},
				Applications: map[string]scope.AppState{appES: {Installed: true, Running: true}},
				OS:           &scope.OS{Name: "Windows 11", Platform: "windows"}, Server: scope.ServerRef{ID: "srv", Role: scope.ServerRole("primary")}}
		}
	}
}

// moveTo moves devices to group g in the inventory (a device moved
// between administration groups); they stay connected.
func moveTo(t *testing.T, b *bundle, g scope.GroupID, ids ...scope.DeviceID) {
	t.Helper()
	for _, id := range ids {
		d, err := b.sim.Inv.Device(context.Background(), id)
		must(t, err)
		d.GroupID = g
		must(t, b.sim.Inv.PutDevices(context.Background(), *d))
	}
}

// runAt returns a device's run of the activation at act.
func runAt(b *bundle, id string, d scope.DeviceID, act time.Time) (enginetest.Record, bool) {
	for _, r := range b.sim.Exec.Runs(id, d) {
		if r.At.Equal(act) {
			return r, true
		}
	}
	return enginetest.Record{}, false
}

// peakPerSecond is the largest number of runs of the activation at act
// due in one second.
func peakPerSecond(b *bundle, id string, devs []scope.DeviceID, act time.Time) int {
	per := map[int64]int{}
	peak := 0
	for _, d := range devs {
		if r, ok := runAt(b, id, d, act); ok {
			s := r.Due.Unix()
			per[s]++
			peak = max(peak, per[s])
		}
	}
	return peak
}

// "Use automatically randomized delay for task starts": each device's
// start is its slot in the scope, so no second exceeds the start budget.
// "Later, the task is always started on the calculated start time": when
// the inventory moves devices into the group, the devices that were in
// scope keep their slots and the new ones get new slots after them. When
// the administrator edits the scope (a settings edit) the start times are
// calculated again: the devices whose slot moved get the new one
// (connected devices at once, an offline device with its next heartbeat).
// Either way the next activation keeps to the budget.
func TestAutomaticDelaySlotsFollowAScopeChange(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"scope refresh", "scope edit"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			const n = 60 // 30 in g-a (a 3 s window), 60 in g-all (6 s)
			b := setup(t, n, halves(n))
			s := sched(schedule.EveryHours, func(s *schedule.Schedule) {
				s.Every = 1
				s.Start = t0.Add(30 * time.Minute)
				s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayAutomatic, IntervalMinutes: 1}
			})
			tk := b.create(t, task.Task{Scope: groupScope("g-a"), Schedule: s})
			b.step(t, 40*time.Minute) // 00:30 ran in the scope of 30
			var all, odd []scope.DeviceID
			for i := range n {
				all = append(all, scope.DeviceID(fmtID(i)))
				if i%2 == 1 {
					odd = append(odd, scope.DeviceID(fmtID(i)))
				}
			}
			const offline = scope.DeviceID("d00004")
			b.sim.Disconnect(offline)
			if how == "scope refresh" {
				moveTo(t, b, "g-a", odd...)
			} else {
				tk.Scope = groupScope("g-all")
				var err error
				tk, err = b.sim.Manager.Update(b.ctx, task.System, *tk)
				must(t, err)
			}
			b.step(t, 60*time.Minute) // 01:30: refreshed (every 15 minutes)
			slot := func(d scope.DeviceID) *transport.Slot {
				i, _ := slices.BinarySearch(all, d)
				if how == "scope refresh" {
					// Kept: the even devices' places in g-a (0..29); the
					// odd ones that joined take 30..59.
					i = i / 2
					if i2, _ := slices.BinarySearch(odd, d); slices.Contains(odd, d) {
						i = n/2 + i2
					}
				}
				return &transport.Slot{Index: i, Of: n}
			}
			act := t0.Add(90 * time.Minute)
			for _, d := range all {
				r, ok := runAt(b, tk.ID, d, act)
				if !ok {
					t.Fatalf("%s did not run the 01:30 activation", d)
				}
				want := act.Add(transport.Offset(tk.Schedule, n, slot(d), tk.ID, string(d), tk.SettingsRevision))
				if d == offline {
					// Still the slot it got in the old scope (index 2 of 30).
					old := tk.SettingsRevision
					if how == "scope edit" {
						old = 1
					}
					want = act.Add(transport.Offset(tk.Schedule, n/2, &transport.Slot{Index: 2, Of: n / 2}, tk.ID, string(d), old))
				}
				if !r.Due.Equal(want) {
					t.Errorf("%s: 01:30 run due %s, want %s (its slot in the scope it knows)", d, r.Due.Format(time.StampMilli), want.Format(time.StampMilli))
				}
			}
			b.sim.Reconnect(offline)
			b.step(t, 60*time.Minute) // 02:30
			act = t0.Add(150 * time.Minute)
			for _, d := range all {
				r, ok := runAt(b, tk.ID, d, act)
				want := act.Add(transport.Offset(tk.Schedule, n, slot(d), tk.ID, string(d), tk.SettingsRevision))
				if !ok || !r.Due.Equal(want) {
					t.Errorf("%s: 02:30 run due %s, want its new slot at %s", d, r.Due.Format(time.StampMilli), want.Format(time.StampMilli))
				}
			}
			if p := peakPerSecond(b, tk.ID, all, act); p > schedule.DefaultStartsPerSecond+1 {
				t.Errorf("peak %d starts in one second, budget %d", p, schedule.DefaultStartsPerSecond)
			}
		})
	}
}

// "If the task schedule is Manually, Once or Immediately, the task is
// started immediately after the device becomes visible on the network or
// immediately after the device is included in the task scope" ("run
// missed tasks" on) — also after the Administration Server restarted
// between the start and the device joining, and exactly once.
func TestRunMissedLastStartSurvivesAServerRestart(t *testing.T) {
	t.Parallel()
	const n = 6
	const joiner = scope.DeviceID("d00001") // in g-b
	inA := scope.Scope{Kind: scope.Selection, Selection: `device.group == "g-a"`}
	for _, c := range []struct {
		name  string
		scope scope.Scope
		kind  schedule.Kind
		// joinWhileDown: the device joins before the new server opens.
		joinWhileDown bool
		// offline: the device is in the scope but offline at the start,
		// and becomes visible after the restart.
		offline bool
	}{
		{name: "selection task started manually", scope: inA, kind: schedule.Manual},
		{name: "selection task once", scope: inA, kind: schedule.Once},
		{name: "selection task immediately", scope: inA, kind: schedule.Immediately},
		{name: "selection task, device joined while the server was down", scope: inA, kind: schedule.Manual, joinWhileDown: true},
		{name: "selection task, device offline at the start", scope: winSelection(), kind: schedule.Manual, offline: true},
		{name: "group task started manually", scope: groupScope("g-a"), kind: schedule.Manual},
		{name: "group task, device joined while the server was down", scope: groupScope("g-a"), kind: schedule.Manual, joinWhileDown: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, n, halves(n))
			s := sched(c.kind, func(s *schedule.Schedule) {
				s.RunMissed = true
				if s.Kind == schedule.Once {
					s.At = t0.Add(20 * time.Minute)
				}
			})
			if c.offline {
				b.sim.Disconnect(joiner)
			}
			tk := b.create(t, task.Task{Scope: c.scope, Schedule: s})
			if c.kind == schedule.Manual {
				_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
				must(t, err)
			}
			b.step(t, 40*time.Minute)
			if got := len(b.sim.Exec.Runs(tk.ID, "d00000")); got != 1 {
				t.Fatalf("d00000 ran %d times before the restart, want 1", got)
			}
			if got := len(b.sim.Exec.Runs(tk.ID, joiner)); got != 0 {
				t.Fatalf("%s ran %d times before it joined", joiner, got)
			}
			join := func() {
				if c.offline {
					b.sim.Reconnect(joiner)
				} else {
					moveTo(t, b, "g-a", joiner)
				}
			}
			if c.joinWhileDown {
				join()
			}
			must(t, b.sim.RestartServer(b.ctx))
			if !c.joinWhileDown {
				b.step(t, 10*time.Minute)
				join()
			}
			b.step(t, 30*time.Minute) // a scope refresh (15 minutes) and a heartbeat
			must(t, b.sim.RestartServer(b.ctx))
			b.step(t, 30*time.Minute) // a second restart starts nothing again
			for i := range n {
				d := scope.DeviceID(fmtID(i))
				want := 0
				if i%2 == 0 || d == joiner || c.offline {
					want = 1
				}
				if got := len(b.sim.Exec.Runs(tk.ID, d)); got != want {
					t.Errorf("%s: %d runs, want %d", d, got, want)
				}
			}
			if st := b.result(t, tk.ID, joiner).State; st != task.Completed {
				t.Errorf("%s: %s, want completed", joiner, st)
			}
			if got := resultEvents(t, b, tk.ID)[joiner]; got != 1 {
				t.Errorf("%s: %d results stored, want 1", joiner, got)
			}
		})
	}
}
