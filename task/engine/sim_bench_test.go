package engine_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
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
// Administration Server scopes; randomized delays), 7 simulated days with
// the in-process transport, every run count verified against
// schedule.Between; once on a memstore with the inmem inventory
// (BenchmarkSimulation/memstore) and once on a SQLite sqlstore with its
// own inventory (BenchmarkSimulation/sqlite). TASKFLEET_SIM_DEVICES
// overrides the fleet size. Besides the runs it reports wall and CPU time
// (user + system of the whole process), the peak heap (sampled every
// 10 ms) and the bytes allocated during the simulated week.
func BenchmarkSimulation(b *testing.B) {
	devices := 10000
	if v := os.Getenv("TASKFLEET_SIM_DEVICES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("TASKFLEET_SIM_DEVICES=%q: want a positive number of devices", v)
		}
		devices = n
	}
	for _, store := range []string{"memstore", "sqlite"} {
		b.Run(store, func(b *testing.B) {
			for range b.N {
				simulate(b, store, devices, 7*24*time.Hour)
			}
		})
	}
}

// TestSimulationSmall runs the simulation small, every run count
// verified, so it cannot rot: on memstore at 1,000 devices for the whole
// week, on SQLite (whose every write is a transaction on disk) for the
// first two days (the manual start is on day 1). The race detector slows
// the simulation several times: under it both run one day, SQLite with
// 200 devices. CI's bench step runs BenchmarkSimulation itself at 1,000
// devices (TASKFLEET_SIM_DEVICES=1000, -benchtime 1x).
func TestSimulationSmall(t *testing.T) {
	for _, c := range []struct {
		store   string
		devices int
		days    int
	}{{"memstore", 1000, 7}, {"sqlite", 1000, 2}} {
		t.Run(c.store, func(t *testing.T) {
			if raceEnabled {
				c.days = 1
				if c.store == "sqlite" {
					c.devices = 200
				}
			}
			st := simulate(t, c.store, c.devices, time.Duration(c.days)*24*time.Hour)
			// Every device runs several of the tasks every day (verify has
			// checked every count; this guards against an empty run).
			if least := 4 * c.devices * c.days; st.runs < least {
				t.Fatalf("%d runs of %d devices in %d days: the simulation ran too few (want at least %d)", st.runs, c.devices, c.days, least)
			}
		})
	}
}

// simStep is the simulation's clock step (2,520 steps per simulated week;
// a step where no agent is due costs only the server's Tick). Runs start
// at the first step at or after their due instant; counts and due
// instants are exact.
const simStep = 2 * time.Minute

// simStats is what one simulation measured.
type simStats struct {
	runs      int
	wall, cpu time.Duration
	peakHeap  uint64 // highest sampled live + unswept heap, bytes
	alloc     uint64 // bytes allocated during the simulated week
}

// heapPeak samples the heap's object bytes every 10 ms (runtime/metrics
// does not stop the world) until stop is closed and returns the highest.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak uint64
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

func simulate(b testing.TB, store string, n int, span time.Duration) simStats {
	ctx := context.Background()
	groups, devs := fleet(n)
	reg := registry(b)
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cfg := enginetest.Config{Start: t0, Registry: reg, Groups: groups, Devices: devs, ServerLocation: loc(b, "Europe/Berlin"),
		ServerAgent: true, Seed: 1, Heartbeat: time.Hour,
		Server: engine.Config{VisibilityTimeout: 3 * time.Hour, ScopeRefresh: 24 * time.Hour}}
	switch store {
	case "memstore":
	case "sqlite":
		st, err := sqlstore.OpenSQLite(ctx, filepath.Join(b.TempDir(), "sim.db"))
		must(b, err)
		defer st.Close()
		cfg.Store, cfg.Inventory = st, st.Devices()
	default:
		b.Fatalf("unknown store %q", store)
	}
	sim, err := enginetest.New(ctx, cfg)
	must(b, err)
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	tasks := simTasks(b, sim)
	runtime.GC()
	var m2 runtime.MemStats
	runtime.ReadMemStats(&m2)
	must(b, sim.Settle(ctx))
	stop := make(chan struct{})
	peakc := heapPeak(stop)
	cpu0, cpuOK := processCPU()
	start := time.Now()
	end := t0.Add(span)
	days := 0
	for day := 0; sim.Clock.Now().Before(end); day++ {
		days++
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
	cpu1, _ := processCPU()
	var m3 runtime.MemStats
	runtime.ReadMemStats(&m3)
	close(stop)
	st := simStats{runs: int(sim.Exec.Total()), wall: wall, peakHeap: <-peakc, alloc: m3.TotalAlloc - m2.TotalAlloc}
	if cpuOK {
		st.cpu = cpu1 - cpu0
	}
	verify(b, sim, tasks, end.Add(30*time.Minute), n, days)
	peakSec, peakMin := peaks(sim, tasks, n)
	bb, isBench := b.(*testing.B)
	if !isBench {
		return st
	}
	bb.ReportMetric(float64(st.runs), "runs")
	bb.ReportMetric(wall.Seconds(), "wall-s")
	bb.ReportMetric(st.cpu.Seconds(), "cpu-s")
	bb.ReportMetric(float64(st.peakHeap)/(1<<20), "peak-heap-MB")
	bb.ReportMetric(float64(st.alloc)/(1<<20), "alloc-MB")
	bb.ReportMetric(float64(peakSec), "peak-starts/s")
	bb.ReportMetric(peakMin, "peak-starts/s-per-minute")
	// Heap growth from creating the tasks, per task: the stored records,
	// the server's resolved device lists (10,000 devices for fleet-wide
	// tasks) and the Deliver messages queued for every device. The
	// engine's own per-task state is BenchmarkServerMemoryPerTask.
	bb.ReportMetric(float64(m2.HeapAlloc-m1.HeapAlloc)/float64(len(tasks)), "create-heap-B/task")
	b.Logf("%s: devices %d, tasks %d, runs %d, wall %s, cpu %s, peak heap %d MB, allocated %d MB, peak starts/s %d (one-minute average peak %.1f; budget %d), heap: fleet %d MB, +tasks %d KB",
		store, n, len(tasks), st.runs, wall, st.cpu, st.peakHeap>>20, st.alloc>>20, peakSec, peakMin, schedule.DefaultStartsPerSecond, (m1.HeapAlloc-m0.HeapAlloc)>>20, (m2.HeapAlloc-m1.HeapAlloc)>>10)
	return st
}

// simTasks creates 50 tasks cycling through the 12 start kinds over the
// zone groups, the whole fleet, device selections and the server.
func simTasks(b testing.TB, sim *enginetest.Sim) []*simTask {
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

func scopeDevices(b testing.TB, sim *enginetest.Sim, st *simTask) []scope.DeviceID {
	if st.t.Scope.Kind == scope.Server {
		return []scope.DeviceID{task.ServerDevice}
	}
	res, err := scope.Resolve(context.Background(), st.t.Scope, sim.Inv)
	must(b, err)
	return res.Devices
}

// expected returns the runs st must have had on device d by end.
// days is the number of simulated days: one repository download a day,
// the manual start on day 1 and the outbreak on day 4.
func expected(b testing.TB, sim *enginetest.Sim, st *simTask, d scope.DeviceID, slot int, zone *time.Location, ndev int, end time.Time, days int) int {
	s := st.t.Schedule
	switch {
	case st.manual:
		return min(1, max(0, days-1))
	case st.updates:
		return days
	case st.outbreak:
		return min(1, max(0, days-4))
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

func verify(b testing.TB, sim *enginetest.Sim, tasks []*simTask, end time.Time, n, days int) {
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
			want := expected(b, sim, st, d, i, zoneOf[d], len(ds), end, days)
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
