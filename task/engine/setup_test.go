package engine_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
)

const (
	appES     = "Endpoint Security"
	appServer = "Administration Server"
)

type ScanSettings struct {
	Action string `json:"action"`
}

// zones are the 12 device zones of the fleet tests.
var zones = []string{"UTC", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "Australia/Sydney",
	"Asia/Kolkata", "America/Sao_Paulo", "Europe/London", "Pacific/Auckland", "Asia/Kathmandu", "America/St_Johns"}

func registry(t testing.TB) *task.Registry {
	r := task.NewRegistry()
	must(t, r.Register(task.TaskType{Application: appES, Name: "virus_scan", Settings: ScanSettings{Action: "disinfect"}}))
	must(t, r.Register(task.TaskType{Application: appES, Name: "update"}))
	must(t, r.Register(task.TaskType{Application: appServer, Name: "backup", ServerTask: true}))
	return r
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var locs sync.Map

// loc loads a zone once, so schedule's per-location tables are reused.
func loc(t testing.TB, name string) *time.Location {
	if l, ok := locs.Load(name); ok {
		return l.(*time.Location)
	}
	l, err := time.LoadLocation(name)
	must(t, err)
	v, _ := locs.LoadOrStore(name, l)
	return v.(*time.Location)
}

// fleet returns n devices in group "g-all/g-<zone index>", spread over
// the 12 zones, with the application running.
func fleet(n int) ([]scope.AdminGroup, []scope.Device) {
	groups := []scope.AdminGroup{{ID: "g-all", Name: "all"}}
	for i := range zones {
		groups = append(groups, scope.AdminGroup{ID: scope.GroupID(fmt.Sprintf("g-%d", i)), Parent: "g-all", Name: zones[i]})
	}
	devs := make([]scope.Device, n)
	for i := range devs {
		z := i % len(zones)
		devs[i] = scope.Device{
			ID: scope.DeviceID(fmt.Sprintf("d%05d", i)), GroupID: scope.GroupID(fmt.Sprintf("g-%d", z)), TimeZone: zones[z],
			Tags: []string{}, Applications: map[string]scope.AppState{appES: {Installed: true, Running: true}},
			OS: &scope.OS{Name: "Windows 11", Platform: "windows"}, Server: scope.ServerRef{ID: "srv", Role: scope.ServerRole("primary")},
		}
	}
	return groups, devs
}

type bundle struct {
	ctx context.Context
	sim *enginetest.Sim
	n   int
}

var t0 = time.Date(2026, 3, 23, 0, 0, 0, 0, time.UTC) // a Monday; DST in Europe on 2026-03-29

func setup(t testing.TB, n int, mod func(*enginetest.Config)) *bundle {
	t.Helper()
	ctx := context.Background()
	groups, devs := fleet(n)
	cfg := enginetest.Config{Start: t0, Registry: registry(t), Groups: groups, Devices: devs, ServerLocation: loc(t, "Europe/Berlin"), ServerAgent: true, Seed: 1}
	if mod != nil {
		mod(&cfg)
	}
	sim, err := enginetest.New(ctx, cfg)
	must(t, err)
	must(t, sim.Settle(ctx))
	b := &bundle{ctx: ctx, sim: sim}
	if !strings.HasPrefix(t.Name(), "TestHostile") {
		// Honest agents never send an item the server rejects: every
		// fleet test checks it.
		t.Cleanup(func() {
			if st := b.sim.Server.Stats(); st.Rejected != 0 {
				t.Errorf("the server rejected %d items of honest agents: %v", st.Rejected, st.RejectedBy)
			}
		})
	}
	return b
}

func (b *bundle) create(t testing.TB, tk task.Task) *task.Task {
	t.Helper()
	if tk.Application == "" {
		tk.Application, tk.Type = appES, "virus_scan"
	}
	if tk.Name == "" {
		b.n++
		tk.Name = fmt.Sprintf("task %d", b.n)
	}
	out, err := b.sim.Manager.Create(b.ctx, task.System, tk)
	must(t, err)
	must(t, b.sim.Settle(b.ctx))
	return out
}

// step advances simulated time by d in 10-minute steps (clock.Mock
// sleeps a millisecond per Add, so tests step coarsely; runs start at the
// first step at or after they are due).
func (b *bundle) step(t testing.TB, d time.Duration) {
	t.Helper()
	must(t, b.sim.Step(b.ctx, d, 10*time.Minute))
}

// stepFine advances by d in 1-minute steps.
func (b *bundle) stepFine(t testing.TB, d time.Duration) {
	t.Helper()
	must(t, b.sim.Step(b.ctx, d, time.Minute))
}

func (b *bundle) result(t testing.TB, id string, d scope.DeviceID) task.Result {
	t.Helper()
	r, err := b.sim.Manager.Result(b.ctx, task.System, id, d)
	must(t, err)
	return r
}

func groupScope(g string) scope.Scope { return scope.Scope{Kind: scope.Group, Group: scope.GroupID(g)} }

func sched(kind schedule.Kind, mod func(*schedule.Schedule)) schedule.Schedule {
	s := schedule.Default(kind, t0, time.UTC)
	if mod != nil {
		mod(&s)
	}
	return s
}

// expect counts the activations of s for a device in zone l between from
// and to: the oracle of the exactly-once checks.
func expect(s schedule.Schedule, from, to time.Time, l *time.Location) int {
	n := 0
	for range s.Between(from, to, l) {
		n++
	}
	return n
}
