// Command quickstart is the README's first command: an embedded taskfleet
// on SQLite with a simulated fleet. It registers task types, creates tasks
// of every kind the seeds describe, previews when they fire in the
// devices' own zones (daylight-saving transitions marked), starts a task,
// records what the devices report, and shows statistics and the revision
// history.
//
//	go run ./examples/quickstart [-devices 1000] [-seed 1] [-db path] [-start 2026-03-23T08:00:00Z]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"

	_ "time/tzdata" // the fleet's zones, whatever the host has installed
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

type options struct {
	devices int
	seed    uint64
	db      string
	start   time.Time
}

func parse(args []string, out io.Writer) (options, error) {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(out)
	o := options{}
	fs.IntVar(&o.devices, "devices", 1000, "number of simulated devices (10..100000)")
	fs.Uint64Var(&o.seed, "seed", 1, "random seed of the simulated fleet and its results")
	fs.StringVar(&o.db, "db", "", "SQLite database file (default: a new file under the OS temp dir)")
	startText := fs.String("start", "2026-03-23T08:00:00Z", "simulated current time (RFC 3339); the default week has Europe's DST change")
	fs.Usage = func() {
		fmt.Fprintln(out, "Usage: go run ./examples/quickstart [flags]")
		fmt.Fprintln(out, "An embedded taskfleet on SQLite with a simulated fleet: tasks of every kind, schedule previews in device zones, a run and its results.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.devices < 10 || o.devices > 100000 {
		return o, fmt.Errorf("-devices %d: must be between 10 and 100000", o.devices)
	}
	t, err := time.Parse(time.RFC3339, *startText)
	if err != nil {
		return o, fmt.Errorf("-start: %w", err)
	}
	o.start = t.UTC()
	if o.db == "" {
		dir, err := os.MkdirTemp("", "taskfleet-quickstart-")
		if err != nil {
			return o, err
		}
		o.db = filepath.Join(dir, "taskfleet.db")
	}
	return o, nil
}

var zones = []string{"Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "Asia/Kathmandu", "America/Sao_Paulo"}

// fleet builds the administration groups and devices.
func fleet(n int, rng *rand.Rand) (*inmem.Inventory, error) {
	inv := inmem.New()
	err := inv.PutGroups(
		scope.AdminGroup{ID: "root", Name: "Managed devices"},
		scope.AdminGroup{ID: "office", Parent: "root", Name: "Office"},
		scope.AdminGroup{ID: "accounting", Parent: "office", Name: "Accounting"},
		scope.AdminGroup{ID: "sales", Parent: "office", Name: "Sales"},
		scope.AdminGroup{ID: "servers", Parent: "root", Name: "Servers"},
		scope.AdminGroup{ID: "lab", Parent: "root", Name: "Lab"},
	)
	if err != nil {
		return nil, err
	}
	groups := []scope.GroupID{"accounting", "sales", "servers", "lab", "office"}
	devs := make([]scope.Device, n)
	for i := range devs {
		osName := "Windows 11 Pro"
		if i%5 == 4 {
			osName = "Ubuntu"
		}
		d := scope.Device{
			ID:          scope.DeviceID(fmt.Sprintf("dev-%05d", i)),
			NetBIOSName: fmt.Sprintf("PC%05d", i),
			DNSName:     fmt.Sprintf("pc%05d.corp.example", i),
			IPs:         []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i % 3), byte(i / 250), byte(1 + i%250)})},
			GroupID:     groups[i%len(groups)],
			TimeZone:    zones[i%len(zones)],
			OS:          &scope.OS{Name: osName, Platform: strings.ToLower(strings.Fields(osName)[0])},
			Connected:   rng.IntN(10) < 8,
			Server:      scope.ServerRef{ID: "main", Role: scope.Primary},
			Applications: map[string]scope.AppState{
				"Endpoint Security": {Installed: true, Running: rng.IntN(50) > 0},
			},
		}
		if i%7 == 0 {
			d.Tags = []string{"accounting"}
		}
		devs[i] = d
	}
	return inv, inv.PutDevices(devs...)
}

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
		{Application: "Endpoint Security", ApplicationVersion: "12.8", Name: "virus_scan", Settings: ScanSettings{MaxFileSizeMB: 100, Action: "disinfect"}},
		{Application: "Endpoint Security", ApplicationVersion: "12.8", Name: "update", Schedules: []schedule.Kind{schedule.Manual, schedule.OnUpdates, schedule.EveryHours}},
		{Application: "Administration Server", Name: "install_application", Settings: InstallSettings{Package: "endpoint-security-12.8.msi"}},
		{Application: "Administration Server", Name: "backup", ServerTask: true},
	} {
		if err := reg.Register(tt); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parse(args, out)
	if err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	rng := rand.New(rand.NewPCG(o.seed, 42))
	clk := clock.NewMock()
	clk.Set(o.start)

	store, err := sqlstore.OpenSQLite(ctx, o.db)
	if err != nil {
		return err
	}
	defer store.Close()
	inv, err := fleet(o.devices, rng)
	if err != nil {
		return err
	}
	reg, err := registry()
	if err != nil {
		return err
	}
	m, err := task.New(task.Config{Store: store, Registry: reg, Inventory: inv, Clock: clk})
	if err != nil {
		return err
	}
	admin := task.Actor{ID: "admin"}
	fmt.Fprintf(out, "taskfleet quickstart: %d devices in %d zones, SQLite at %s, now %s\n\n", o.devices, len(zones), o.db, clk.Now().Format(time.RFC3339))

	// Tasks of every kind.
	scan := schedule.Default(schedule.Weekly, clk.Now(), time.UTC)
	scan.Time = schedule.TimeOfDay(19 * 3600)
	scan.RandomDelay.Mode = schedule.DelayAutomatic
	scan.RunMissed = true
	update := schedule.Default(schedule.OnUpdates, clk.Now(), time.UTC)
	installAt := schedule.Default(schedule.Once, clk.Now().Add(2*time.Hour), time.UTC)
	nightly := schedule.Default(schedule.EveryDays, clk.Now(), time.UTC)
	nightly.Time = schedule.TimeOfDay(2*3600 + 30*60) // 02:30, inside Europe's spring-forward gap on 29 March
	weekly := schedule.Default(schedule.Weekly, clk.Now(), time.UTC)
	weekly.Weekdays = schedule.NewWeekdays(time.Monday)
	weekly.Time = schedule.TimeOfDay(9 * 3600)
	after := schedule.Default(schedule.OnTaskCompletion, clk.Now(), time.UTC)
	ipRange, err := scope.ParseAddress("10.1.0.1-10.1.3.250")
	if err != nil {
		return err
	}
	specs := []task.Task{
		{Name: "Friday virus scan", Application: "Endpoint Security", Type: "virus_scan", Schedule: scan,
			Scope: scope.Scope{Kind: scope.Group, Group: "office", ExcludedGroups: []scope.GroupID{"sales"}}},
		{Name: "Update databases", Application: "Endpoint Security", Type: "update", Schedule: update,
			Scope: scope.Scope{Kind: scope.Group, Group: "root"}},
		{Name: "Install on branch subnet", Application: "Administration Server", Type: "install_application", Schedule: installAt,
			Scope: scope.Scope{Kind: scope.Addresses, Addresses: []scope.Address{ipRange}}, Restart: restart.Default()},
		{Name: "Nightly scan", Application: "Endpoint Security", Type: "virus_scan", Schedule: nightly,
			Scope: scope.Scope{Kind: scope.Group, Group: "root"}},
		{Name: "Weekly scan of Windows 11", Application: "Endpoint Security", Type: "virus_scan", Schedule: weekly,
			Scope: scope.Scope{Kind: scope.Selection, SelectionName: "Windows 11", Selection: `device.os.name.startsWith("Windows 11")`}},
		{Name: "Database backup", Application: "Administration Server", Type: "backup", Scope: scope.Scope{Kind: scope.Server}},
	}
	created := map[string]*task.Task{}
	for _, spec := range specs {
		t, err := m.Create(ctx, admin, spec)
		if err != nil {
			return fmt.Errorf("create %q: %w", spec.Name, err)
		}
		created[t.Name] = t
	}
	after.TaskID = created["Friday virus scan"].ID
	after.Status = schedule.Completed
	chained, err := m.Create(ctx, admin, task.Task{Name: "Scan again after the Friday scan", Application: "Endpoint Security", Type: "virus_scan", Schedule: after,
		Scope: scope.Scope{Kind: scope.Group, Group: "accounting"}})
	if err != nil {
		return err
	}
	created[chained.Name] = chained

	list, err := m.List(ctx, admin, task.ListParams{})
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "Task list (grouped by application):")
	for _, app := range list.Applications {
		fmt.Fprintf(out, "  %s\n", app.Application)
		for _, t := range app.Tasks {
			where := "devices, device-local time"
			if t.RunsOnServer() {
				where = "Administration Server, server time"
			}
			fmt.Fprintf(out, "    %-34s %-7s %-22s runs on %s\n", t.Name, t.Kind(), t.Schedule.Kind, where)
		}
	}

	// A bad setting is a typed error naming the field and the range.
	bad := specs[0]
	bad.Name = "Too frequent"
	bad.Schedule = schedule.Default(schedule.EveryMinutes, clk.Now(), time.UTC)
	bad.Schedule.Every = 0
	if _, err := m.Create(ctx, admin, bad); err != nil {
		fmt.Fprintf(out, "\nRejected, as it should be: %v\n", err)
	}

	// Schedule previews in the devices' own zones.
	fmt.Fprintln(out, "\nWhen the nightly scan fires on the devices (02:30 device-local; * = a DST change that day):")
	for _, zn := range zones[:4] {
		loc, _ := time.LoadLocation(zn)
		var parts []string
		for _, at := range nightly.Upcoming(clk.Now(), loc, 8) {
			mark := ""
			local := at.In(loc)
			_, off1 := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, loc).Zone()
			_, off2 := time.Date(local.Year(), local.Month(), local.Day(), 23, 59, 0, 0, loc).Zone()
			if off1 != off2 {
				mark = "*"
			}
			parts = append(parts, local.Format("Mon 02 15:04")+mark)
		}
		fmt.Fprintf(out, "  %-18s %s\n", zn, strings.Join(parts, ", "))
	}
	serverZone, _ := time.LoadLocation("Europe/Berlin")
	sel := created["Weekly scan of Windows 11"]
	selLoc := sel.Schedule.Location(nil, serverZone, sel.RunsOnServer())
	selNext, _ := sel.Schedule.Next(clk.Now(), selLoc)
	selRes, err := scope.Resolve(ctx, sel.Scope, inv)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%q is a device selection: the server runs it on its own time (%s), next %s, on the %d connected matching devices (%d offline would be recorded as missed).\n",
		sel.Name, selLoc, selNext.In(selLoc).Format("Mon 2006-01-02 15:04 MST"), len(selRes.Devices), len(selRes.Offline))
	fs := created["Friday virus scan"]
	res, err := scope.Resolve(ctx, fs.Scope, inv)
	if err != nil {
		return err
	}
	window := fs.Schedule.DelayWindow(len(res.Devices))
	fmt.Fprintf(out, "\nFriday virus scan: %d devices, automatic randomized delay window %s (budget %d starts/s); first devices start at:\n",
		len(res.Devices), window, schedule.DefaultStartsPerSecond)
	for _, id := range res.Devices[:3] {
		d, err := inv.Device(ctx, id)
		if err != nil {
			return err
		}
		loc, _ := time.LoadLocation(d.TimeZone)
		next, _ := fs.Schedule.Next(clk.Now(), loc)
		off := schedule.RandomOffset(window, fs.ID, string(id), fs.SettingsRevision)
		fmt.Fprintf(out, "  %s (%s): %s\n", id, d.TimeZone, next.Add(off).In(loc).Format("Mon 2006-01-02 15:04:05 MST"))
	}

	// Start the install task and record what the devices report.
	inst := created["Install on branch subnet"]
	run, err := m.Start(ctx, admin, inst.ID)
	if err != nil {
		return err
	}
	clk.Add(20 * time.Minute)
	var results []task.Result
	for _, d := range run.Devices {
		r := task.Result{TaskID: inst.ID, DeviceID: d, RunID: run.ID, Seq: 1, Progress: 100, StartedAt: o.start, FinishedAt: clk.Now()}
		switch x := rng.IntN(100); {
		case x < 70:
			r.State = task.Completed
		case x < 85:
			r.State, r.RestartRequired = task.RestartRequired, true
		case x < 95:
			r.State, r.Message = task.Failed, "installer exit code 1603"
		default:
			r.State, r.Progress = task.AppNotRunning, 0
		}
		results = append(results, r)
	}
	if _, err := m.RecordResults(ctx, results); err != nil {
		return err
	}
	if _, err := m.RecordResults(ctx, results); err != nil { // a redelivery changes nothing
		return err
	}
	st, err := m.Statistics(ctx, admin, inst.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nRun %d of %q on %d devices (IP range %s):\n", run.ID, inst.Name, len(run.Devices), ipRange)
	for _, s := range task.States {
		if n := st.ByState[s]; n > 0 {
			fmt.Fprintf(out, "  %-26s %5d\n", s, n)
		}
	}
	fmt.Fprintf(out, "  %.1f%% complete, %d devices need a restart\n", st.PercentComplete, st.RestartRequired)

	// Edit a task and read its revision history.
	fs.Schedule.Time = schedule.TimeOfDay(20 * 3600)
	fs.Description = "moved to 20:00 after the users' feedback"
	if _, err := m.Update(ctx, task.Actor{ID: "alice"}, *fs); err != nil {
		return err
	}
	revs, err := m.Revisions(ctx, admin, fs.ID, 0, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nRevision history of %q:\n", fs.Name)
	for _, r := range revs {
		fmt.Fprintf(out, "  #%d %s by %s\n", r.Number, r.Action, r.Author)
		for _, c := range r.Changes {
			fmt.Fprintf(out, "      %s\n", c)
		}
	}
	fmt.Fprintln(out, "\nNext: go doc github.com/taskfleet/taskfleet/task, and the other examples in examples/.")
	return nil
}
