package engine_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
	"github.com/taskfleet/taskfleet/task/transport"
)

// simTask is one of the simulation's tasks with what it needs for the
// expected run count.
type simTask struct {
	t        *task.Task
	onServer bool
	trigger  *simTask // on completing another task
	manual   bool
	updates  bool
	outbreak bool
}

// BenchmarkSimulation is the simulation: 10,000 devices in 12
// zones, 50 tasks of every start kind (group, device-selection and
// Administration Server scopes; randomized delays), 7 simulated days on a
// memstore with the in-process transport, every run count verified
// against schedule.Between. TASKFLEET_SIM_DEVICES overrides the fleet size.
func BenchmarkSimulation(b *testing.B) {
	devices := 10000
	if v := os.Getenv("TASKFLEET_SIM_DEVICES"); v != "" {
		devices, _ = strconv.Atoi(v)
	}
	for range b.N {
		simulate(b, devices, 7*24*time.Hour)
	}
}

// simStep is the simulation's clock step (2,520 steps per simulated week;
// a step where no agent is due costs only the server's Tick). Runs start
// at the first step at or after their due instant; counts and due
// instants are exact.
const simStep = 2 * time.Minute

func simulate(b *testing.B, n int, span time.Duration) {
	ctx := context.Background()
	groups, devs := fleet(n)
	reg := registry(b)
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	sim, err := enginetest.New(ctx, enginetest.Config{Start: t0, Registry: reg, Groups: groups, Devices: devs, ServerLocation: loc(b, "Europe/Berlin"),
		ServerAgent: true, Seed: 1, Heartbeat: time.Hour,
		Server: engine.Config{VisibilityTimeout: 3 * time.Hour, ScopeRefresh: 24 * time.Hour}})
	must(b, err)
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	tasks := simTasks(b, sim)
	runtime.GC()
	var m2 runtime.MemStats
	runtime.ReadMemStats(&m2)
	must(b, sim.Settle(ctx))
	start := time.Now()
	end := t0.Add(span)
	for day := 0; sim.Clock.Now().Before(end); day++ {
		// Daily events: a repository download at 20:00 UTC, a manual
		// start on day 1, a virus outbreak on day 4.
		dayStart := t0.Add(time.Duration(day) * 24 * time.Hour)
		must(b, sim.Step(ctx, 20*time.Hour, simStep))
		must(b, sim.Server.UpdatesDownloaded(ctx, fmt.Sprintf("repo-%d", day)))
		if day == 1 {
			for _, st := range tasks {
				if st.manual {
					_, err := sim.Manager.Start(ctx, task.System, st.t.ID)
					must(b, err)
				}
			}
		}
		if day == 4 {
			must(b, sim.Server.VirusOutbreak(ctx, schedule.WorkstationsFileServers, sim.Clock.Now()))
		}
		rest := dayStart.Add(24 * time.Hour).Sub(sim.Clock.Now())
		if rest > 0 {
			must(b, sim.Step(ctx, rest, simStep))
		}
	}
	// Let the last randomized starts (windows are at most 1000 s here)
	// and results arrive; the expected counts include every start due by
	// the end of this half hour.
	must(b, sim.Step(ctx, 30*time.Minute, simStep))
	wall := time.Since(start)
	verify(b, sim, tasks, end.Add(30*time.Minute), n)
	peakSec, peakMin := peaks(sim, tasks, n)
	b.ReportMetric(float64(sim.Exec.Total()), "runs")
	b.ReportMetric(wall.Seconds(), "wall-s")
	b.ReportMetric(float64(peakSec), "peak-starts/s")
	b.ReportMetric(peakMin, "peak-starts/s-per-minute")
	// Heap growth from creating the tasks, per task: the stored records,
	// the server's resolved device lists (10,000 devices for fleet-wide
	// tasks) and the Deliver messages queued for every device. The
	// engine's own per-task state is BenchmarkServerMemoryPerTask.
	b.ReportMetric(float64(m2.HeapAlloc-m1.HeapAlloc)/float64(len(tasks)), "create-heap-B/task")
	b.Logf("devices %d, tasks %d, runs %d, wall %s, peak starts/s %d (one-minute average peak %.1f; budget %d), heap: fleet %d MB, +tasks %d KB",
		n, len(tasks), sim.Exec.Total(), wall, peakSec, peakMin, schedule.DefaultStartsPerSecond, (m1.HeapAlloc-m0.HeapAlloc)>>20, (m2.HeapAlloc-m1.HeapAlloc)>>10)
}

// simTasks creates 50 tasks cycling through the 12 start kinds over the
// zone groups, the whole fleet, device selections and the server.
func simTasks(b *testing.B, sim *enginetest.Sim) []*simTask {
	ctx := context.Background()
	var out []*simTask
	var daily []*simTask
	for i := range 50 {
		kind := schedule.Kinds[i%len(schedule.Kinds)]
		g := i % len(zones)
		sc := scope.Scope{Kind: scope.Group, Group: scope.GroupID(fmt.Sprintf("g-%d", g))}
		if i%10 == 0 {
			sc = groupScope("g-all")
		}
		if i%7 == 3 {
			sc = scope.Scope{Kind: scope.Selection, Selection: fmt.Sprintf(`device.group == "g-%d"`, g)}
		}
		s := schedule.Default(kind, t0, time.UTC)
		switch kind {
		case schedule.Once:
			s.At = t0.Add(time.Duration(50+i) * time.Hour)
		case schedule.EveryMinutes:
			s.Every = 240
		case schedule.EveryHours:
			s.Every = 6
		case schedule.EveryDays:
			s.Time = schedule.Clock(18, 0, 0)
		case schedule.Weekly:
			s.Weekdays = schedule.NewWeekdays(time.Monday, time.Thursday)
			s.Time = schedule.Clock(12, 0, 0)
		case schedule.Monthly:
			s.Day = 25
			s.Time = schedule.Clock(9, 30, 0)
		case schedule.NthWeekday:
			s.Weeks = schedule.LastWeek
			s.Weekdays = schedule.NewWeekdays(time.Friday)
		case schedule.OnVirusOutbreak:
			s.AppTypes = schedule.AllAppTypes
		case schedule.OnTaskCompletion:
			s.Status = schedule.Completed
		}
		if s.Timed() && i%3 == 0 {
			s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayAutomatic, IntervalMinutes: 1}
		}
		tk := task.Task{Name: fmt.Sprintf("t%02d", i), Application: appES, Type: "virus_scan", Scope: sc, Schedule: s}
		st := &simTask{manual: kind == schedule.Manual, updates: kind == schedule.OnUpdates, outbreak: kind == schedule.OnVirusOutbreak}
		if kind == schedule.OnTaskCompletion {
			// Triggered by the every-days task of the same scope kind
			// created before it (both assigned to the same devices).
			for _, d := range daily {
				if d.t.Scope.Kind == scope.Group && d.t.Scope.Group == sc.Group || sc.Kind != scope.Group {
					st.trigger = d
				}
			}
			if st.trigger == nil {
				st.trigger = daily[0]
			}
			tk.Scope = st.trigger.t.Scope
			tk.Schedule.TaskID = st.trigger.t.ID
		}
		if i == 49 {
			tk.Application, tk.Type, tk.Scope = appServer, "backup", scope.Scope{Kind: scope.Server}
			tk.Schedule = schedule.Default(schedule.EveryDays, t0, time.UTC)
			tk.Schedule.Time = schedule.Clock(3, 0, 0)
		}
		created, err := sim.Manager.Create(ctx, task.System, tk)
		must(b, err)
		st.t = created
		st.onServer = created.RunsOnServer()
		if created.Schedule.Kind == schedule.EveryDays {
			daily = append(daily, st)
		}
		out = append(out, st)
	}
	return out
}

func scopeDevices(b *testing.B, sim *enginetest.Sim, st *simTask) []scope.DeviceID {
	if st.t.Scope.Kind == scope.Server {
		return []scope.DeviceID{task.ServerDevice}
	}
	res, err := scope.Resolve(context.Background(), st.t.Scope, sim.Inv)
	must(b, err)
	return res.Devices
}

// expected returns the runs st must have had on device d by end.
func expected(b *testing.B, sim *enginetest.Sim, st *simTask, d scope.DeviceID, slot int, zone *time.Location, ndev int, end time.Time) int {
	s := st.t.Schedule
	switch {
	case st.manual:
		return 1
	case st.updates:
		return 7
	case st.outbreak:
		return 1
	case st.trigger != nil:
		return len(sim.Exec.Runs(st.trigger.t.ID, d))
	}
	l := zone
	if st.onServer {
		l = loc(b, "Europe/Berlin")
	}
	from := t0
	if s.Kind == schedule.Once || s.Kind == schedule.Immediately {
		from = t0.Add(-time.Nanosecond)
	}
	off := transport.Offset(s, ndev, &transport.Slot{Index: slot, Of: ndev}, st.t.ID, string(d), st.t.SettingsRevision)
	n := 0
	for act := range s.Between(from, end, l) {
		if !act.Add(off).After(end) {
			n++
		}
	}
	return n
}

func verify(b *testing.B, sim *enginetest.Sim, tasks []*simTask, end time.Time, n int) {
	zoneOf := map[scope.DeviceID]*time.Location{}
	_, devs := fleet(n)
	for _, d := range devs {
		zoneOf[d.ID] = loc(b, d.TimeZone)
	}
	zoneOf[task.ServerDevice] = loc(b, "Europe/Berlin")
	bad := 0
	for _, st := range tasks {
		ds := scopeDevices(b, sim, st)
		for i, d := range ds {
			want := expected(b, sim, st, d, i, zoneOf[d], len(ds), end)
			if got := len(sim.Exec.Runs(st.t.ID, d)); got != want {
				if bad < 20 {
					b.Errorf("task %s (%s, %s) on %s: %d runs, want %d", st.t.Name, st.t.Schedule.Kind, st.t.Scope.Kind, d, got, want)
				}
				bad++
			}
		}
	}
	if bad > 0 {
		b.Fatalf("%d (task, device) pairs with a wrong run count", bad)
	}
}

// peaks returns, over the tasks with an automatic randomized delay, the
// highest number of starts due in one second and the highest one-minute
// average per second.
func peaks(sim *enginetest.Sim, tasks []*simTask, n int) (int, float64) {
	_, devs := fleet(n)
	peakSec, peakMin := 0, 0
	for _, st := range tasks {
		if st.t.Schedule.RandomDelay.Mode != schedule.DelayAutomatic {
			continue
		}
		perSec := map[int64]int{}
		perMin := map[int64]int{}
		for _, d := range devs {
			for _, r := range sim.Exec.Runs(st.t.ID, d.ID) {
				if r.Due.IsZero() {
					continue
				}
				perSec[r.Due.Unix()]++
				perMin[r.Due.Unix()/60]++
			}
		}
		for _, v := range perSec {
			peakSec = max(peakSec, v)
		}
		for _, v := range perMin {
			peakMin = max(peakMin, v)
		}
	}
	return peakSec, float64(peakMin) / 60
}
