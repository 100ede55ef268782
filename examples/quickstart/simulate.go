package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
)

const (
	appES     = "Endpoint Security"
	appServer = "Administration Server"
	// step is the simulation's clock step: runs start at the first step at
	// or after they are due (clock.Mock sleeps a millisecond per step).
	step = 5 * time.Minute
	// heartbeat of the agents (their synchronization interval); the
	// server sees a device as gone after three missed heartbeats. Results
	// do not wait for it: the outbox is flushed as soon as they are ready.
	heartbeat = time.Hour
)

var zones = []string{"Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "Asia/Kathmandu", "America/Sao_Paulo"}

// ScanSettings are the settings of the virus scan task type.
type ScanSettings struct {
	ScanArchives  bool   `json:"scan_archives"`
	MaxFileSizeMB int    `json:"max_file_size_mb" validate:"min=1,max=4096"`
	Action        string `json:"action" validate:"oneof=disinfect delete report"`
}

// InstallSettings are the settings of the remote installation task type.
type InstallSettings struct {
	Package string `json:"package" validate:"required"`
}

func registry() (*task.Registry, error) {
	reg := task.NewRegistry()
	for _, tt := range []task.TaskType{
		{Application: appES, ApplicationVersion: "12.8", Name: "virus_scan", Settings: ScanSettings{MaxFileSizeMB: 100, Action: "disinfect"}},
		{Application: appES, ApplicationVersion: "12.8", Name: "update", Schedules: []schedule.Kind{schedule.Manual, schedule.OnUpdates, schedule.EveryHours}},
		{Application: appServer, Name: "install_application", Settings: InstallSettings{Package: "endpoint-security-12.8.1.msi"}},
	} {
		if err := reg.Register(tt); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

var groups = []scope.AdminGroup{
	{ID: "root", Name: "Managed devices"},
	{ID: "office", Parent: "root", Name: "Office"},
	{ID: "accounting", Parent: "office", Name: "Accounting"},
	{ID: "sales", Parent: "office", Name: "Sales"},
	{ID: "branches", Parent: "root", Name: "Branch offices"},
	{ID: "servers", Parent: "root", Name: "Servers"},
}

// fleetDevices returns n devices spread over the groups and zones; a third
// of them are in the branch subnet 10.1.0.0/22.
func fleetDevices(n int) []scope.Device {
	leaf := []scope.GroupID{"accounting", "sales", "branches", "office", "servers"}
	devs := make([]scope.Device, n)
	for i := range devs {
		osName := "Windows 11 Pro"
		switch i % 5 {
		case 3:
			osName = "Windows 10 Enterprise"
		case 4:
			osName = "Ubuntu 24.04"
		}
		devs[i] = scope.Device{
			ID:           scope.DeviceID(fmt.Sprintf("dev-%05d", i)),
			NetBIOSName:  fmt.Sprintf("PC%05d", i),
			DNSName:      fmt.Sprintf("pc%05d.corp.example", i),
			IPs:          []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i % 3), byte(i / 3 / 250), byte(1 + i/3%250)})},
			GroupID:      leaf[i%len(leaf)],
			TimeZone:     zones[i%len(zones)],
			OS:           &scope.OS{Name: osName, Platform: strings.ToLower(strings.Fields(osName)[0])},
			Tags:         []string{},
			Connected:    true,
			Server:       scope.ServerRef{ID: "main", Role: scope.Primary},
			Applications: map[string]scope.AppState{appES: {Installed: true, Running: true}},
		}
	}
	return devs
}

// simTask is a task of the simulation with what the summary says about it.
type simTask struct {
	t    *task.Task
	what string
}

// outcome is what simulate leaves for the summary, the report and tests.
type outcome struct {
	opts     options
	sim      *fleetSim
	tasks    []simTask
	end      time.Time
	records  []record
	offline  map[scope.DeviceID][][2]time.Time // powered-off intervals
	cut      map[scope.DeviceID][][2]time.Time // disconnected intervals
	rejected error
	wall     time.Duration
}

func (r *outcome) close() { _ = r.sim.store.Close() }

// event is something that happens to the fleet at an instant.
type event struct {
	at time.Time
	do func(ctx context.Context) error
}

func simulate(ctx context.Context, o options, out io.Writer, bar *bar) (*outcome, error) {
	wallStart := time.Now()
	rng := rand.New(rand.NewPCG(o.seed, 10))
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		return nil, err
	}

	// The embedded server: storage, inventory, engine, task manager.
	// SyncNormal: a simulation need not fsync every commit (a killed
	// process still loses nothing; see package sqlstore).
	store, err := sqlstore.Open(ctx, sqlstore.Config{Dialect: sqlstore.SQLite, DSN: o.db, Synchronous: sqlstore.SyncNormal})
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = store.Close()
		}
	}()
	inv := store.Devices()
	devs := fleetDevices(o.devices)
	reg, err := registry()
	if err != nil {
		return nil, err
	}
	// Task ids from a counter rather than random UUIDs, so a seed replays
	// the same week (the simulated outcomes hash the task id).
	ids := 0
	newID := func() string { ids++; return fmt.Sprintf("task-%04d", ids) }
	s := &fleetSim{store: store, inv: inv, seed: o.seed, accepted: map[scope.DeviceID]bool{}, devices: map[scope.DeviceID]scope.Device{}}
	for _, d := range devs {
		s.devices[d.ID] = d
		s.order = append(s.order, d.ID)
	}
	// The fleet: package enginetest wires the engine, the task manager, one
	// agent per device and the in-process channel on the SQLite store.
	s.Sim, err = enginetest.New(ctx, enginetest.Config{Start: o.start, Registry: reg, Store: store, Inventory: inv,
		Groups: groups, Devices: devs, ServerLocation: berlin, Seed: o.seed, Heartbeat: heartbeat, NewID: newID,
		Server:    engine.Config{VisibilityTimeout: 3 * heartbeat, ScopeRefresh: 6 * time.Hour},
		Behavior:  behavior(o.seed),
		Restarter: func(id scope.DeviceID) restart.Device { return &restarter{s, id} }})
	if err != nil {
		return nil, err
	}
	s.m, s.srv = s.Manager, s.Server
	clk := s.Clock
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "taskfleet quickstart: %d devices in %d groups and %d zones, %d simulated days from %s\nserver: SQLite at %s, server zone Europe/Berlin\n\n",
		o.devices, len(groups), len(zones), o.days, o.start.Format("Mon 2006-01-02 15:04 MST"), o.db)

	res := &outcome{opts: o, sim: s, offline: map[scope.DeviceID][][2]time.Time{}, cut: map[scope.DeviceID][][2]time.Time{}}
	if err := createTasks(ctx, res, clk.Now()); err != nil {
		return nil, err
	}
	if err := s.settle(ctx); err != nil {
		return nil, err
	}

	// The week's events, in time order.
	res.end = o.start.Add(time.Duration(o.days) * 24 * time.Hour)
	var events []event
	day0 := o.start.Truncate(24 * time.Hour)
	for d := 0; d <= o.days; d++ {
		at := day0.Add(time.Duration(d)*24*time.Hour + 21*time.Hour)
		key := fmt.Sprintf("repository-%s", at.Format("2006-01-02"))
		events = append(events, event{at, func(ctx context.Context) error { return s.srv.UpdatesDownloaded(ctx, key) }})
	}
	// Flaky devices: a tenth lose their connection for 3 to 20 hours once
	// (their agents keep running tasks; results arrive when they are back).
	for _, id := range s.order {
		if rng.IntN(10) != 0 {
			continue
		}
		from := o.start.Add(time.Duration(rng.IntN(o.days*24*60)) * time.Minute).Truncate(step)
		to := from.Add(time.Duration(3*60+rng.IntN(17*60)) * time.Minute).Truncate(step)
		res.cut[id] = append(res.cut[id], [2]time.Time{from, to})
		events = append(events, event{from, func(context.Context) error { s.Disconnect(id); return nil }},
			event{to, func(context.Context) error { s.Reconnect(id); return nil }})
	}
	// Friday evening: one device in twenty is switched off from Friday
	// 06:00 UTC to Saturday 07:00 UTC, across 19:00 in every zone.
	for i := range o.days {
		day := day0.Add(time.Duration(i) * 24 * time.Hour)
		if day.Weekday() != time.Friday {
			continue
		}
		from, to := day.Add(6*time.Hour), day.Add(31*time.Hour)
		for _, id := range s.order {
			if hash(o.seed, "friday", string(id))%20 != 0 || len(res.cut[id]) > 0 {
				continue
			}
			res.offline[id] = append(res.offline[id], [2]time.Time{from, to})
			events = append(events, event{from, func(context.Context) error { s.PowerOff(id); return nil }},
				event{to, func(ctx context.Context) error { return s.PowerOn(ctx, id) }})
		}
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].at.Before(events[j].at) })

	// Run the simulated days.
	if bar == nil {
		bar = newBar(nil, false, res.end.Sub(o.start), time.Now)
	}
	next := 0
	for clk.Now().Before(res.end) {
		for next < len(events) && !events[next].at.After(clk.Now()) {
			if err := events[next].do(ctx); err != nil {
				return nil, err
			}
			next++
		}
		clk.Add(step) // runs that end by now report to their agents
		if err := s.settle(ctx); err != nil {
			return nil, err
		}
		bar.update(clk.Now().Sub(o.start), clk.Now(), s.Exec.Total())
	}
	bar.done()
	res.records = s.records()
	res.wall = time.Since(wallStart)
	ok = true
	return res, nil
}

// createTasks creates the simulation's tasks; each kind shows one part of
// the library.
func createTasks(ctx context.Context, res *outcome, now time.Time) error {
	m := res.sim.m
	admin := task.Actor{ID: "admin"}
	add := func(what string, t task.Task) (*task.Task, error) {
		created, err := m.Create(ctx, admin, t)
		if err != nil {
			return nil, fmt.Errorf("create %q: %w", t.Name, err)
		}
		res.tasks = append(res.tasks, simTask{t: created, what: what})
		return created, nil
	}

	friday := schedule.Default(schedule.Weekly, now, time.UTC)
	friday.Weekdays = schedule.NewWeekdays(time.Friday)
	friday.Time = schedule.Clock(19, 0, 0)
	friday.RandomDelay.Mode = schedule.DelayAutomatic
	friday.RunMissed = true
	if _, err := add("weekly, Friday 19:00 device time, automatic randomized delay, run missed", task.Task{
		Name: "Friday virus scan", Application: appES, Type: "virus_scan", Schedule: friday,
		Scope: scope.Scope{Kind: scope.Group, Group: "root", ExcludedGroups: []scope.GroupID{"servers"}}}); err != nil {
		return err
	}

	if _, err := add("when new updates are downloaded; the repository downloads every evening", task.Task{
		Name: "Update databases", Application: appES, Type: "update", Schedule: schedule.Default(schedule.OnUpdates, now, time.UTC),
		Scope: scope.Scope{Kind: scope.Group, Group: "root"}}); err != nil {
		return err
	}

	ipRange, err := scope.ParseAddress("10.1.0.1-10.1.3.254")
	if err != nil {
		return err
	}
	once := schedule.Default(schedule.Once, now, time.UTC)
	once.At = now.Add(2 * time.Hour)
	install, err := add("once, on an IP range, restart prompt every 5 min, forced after 30", task.Task{
		Name: "Install Endpoint Security 12.8.1", Application: appServer, Type: "install_application", Schedule: once,
		Scope:   scope.Scope{Kind: scope.Addresses, Addresses: []scope.Address{ipRange}},
		Restart: restart.Default()})
	if err != nil {
		return err
	}
	res.sim.restartTask = install.ID

	noon := schedule.Default(schedule.EveryDays, now, time.UTC)
	noon.Time = schedule.Clock(12, 0, 0)
	if _, err := add("daily 12:00 server time, connected devices of a selection only", task.Task{
		Name: "Quick scan of Windows 11", Application: appES, Type: "virus_scan", Schedule: noon,
		Scope: scope.Scope{Kind: scope.Selection, SelectionName: "Windows 11", Selection: `device.os.name.startsWith("Windows 11")`}}); err != nil {
		return err
	}

	after := schedule.Default(schedule.OnTaskCompletion, now, time.UTC)
	after.TaskID, after.Status = install.ID, schedule.Completed
	if _, err := add("on completing the installation", task.Task{
		Name: "Scan after installation", Application: appES, Type: "virus_scan", Schedule: after,
		Scope: install.Scope}); err != nil {
		return err
	}

	nightly := schedule.Default(schedule.EveryDays, now, time.UTC)
	nightly.Time = schedule.Clock(2, 30, 0) // in Europe's spring-forward gap on 29 March: 03:00 that day
	if _, err := add("daily 02:30 device time, run missed off", task.Task{
		Name: "Nightly scan of servers", Application: appES, Type: "virus_scan", Schedule: nightly,
		Scope: scope.Scope{Kind: scope.Group, Group: "servers"}}); err != nil {
		return err
	}

	// A bad setting is a typed error naming the field and the range.
	bad := schedule.Default(schedule.EveryMinutes, now, time.UTC)
	bad.Every = 0
	_, res.rejected = m.Create(ctx, admin, task.Task{Name: "Too frequent", Application: appES, Type: "virus_scan", Schedule: bad,
		Scope: scope.Scope{Kind: scope.Group, Group: "root"}})
	return nil
}
