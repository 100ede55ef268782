package klt_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
)

const (
	appES     = "Endpoint Security"
	appServer = "Administration Server"
	appAgent  = "Network Agent"
)

// ScanSettings are the settings of the test virus scan (carried by
// pointer).
type ScanSettings struct {
	ScanArchives  bool              `json:"scan_archives"`
	MaxFileSizeMB int               `json:"max_file_size_mb" validate:"min=1,max=4096"`
	Paths         []string          `json:"paths" validate:"max=10,dive,required"`
	Action        string            `json:"action" validate:"oneof=disinfect delete report"`
	Ratio         float64           `json:"ratio,omitempty"`
	Quota         int64             `json:"quota,omitempty"`
	Exclusions    map[string]string `json:"exclusions,omitempty"`
	ProxyURL      string            `json:"proxy_url,omitempty"`
}

// UpdateSettings are carried by value.
type UpdateSettings struct {
	Source string `json:"source" validate:"required"`
}

var exportTime = time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)

var start = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func registry(t testing.TB) *task.Registry {
	r := task.NewRegistry()
	must(t, r.Register(task.TaskType{Application: appES, ApplicationVersion: "12.1", Name: "virus_scan",
		Settings: &ScanSettings{MaxFileSizeMB: 100, Action: "disinfect"}}))
	must(t, r.Register(task.TaskType{Application: appES, ApplicationVersion: "12.1", Name: "update",
		Settings: UpdateSettings{Source: "administration-server"}}))
	must(t, r.Register(task.TaskType{Application: appAgent, Name: "inventory"}))
	must(t, r.Register(task.TaskType{Application: appAgent, Name: "secret_rotation", NotExportable: true}))
	must(t, r.Register(task.TaskType{Application: appServer, Name: "backup", ServerTask: true}))
	return r
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func lookup(t testing.TB, reg *task.Registry, x *task.Task) task.TaskType {
	t.Helper()
	tt, ok := reg.Lookup(x.Application, x.Type)
	if !ok {
		t.Fatalf("type %q of %q is not registered", x.Type, x.Application)
	}
	return tt
}

// inventory: root > office > (accounting, sales); lab; a device each.
func inventory(t testing.TB) *inmem.Inventory {
	inv := inmem.New()
	must(t, inv.PutGroups(context.Background(),
		scope.AdminGroup{ID: "root", Name: "Managed devices"},
		scope.AdminGroup{ID: "office", Parent: "root", Name: "Office"},
		scope.AdminGroup{ID: "accounting", Parent: "office", Name: "Accounting"},
		scope.AdminGroup{ID: "sales", Parent: "office", Name: "Sales"},
		scope.AdminGroup{ID: "42", Parent: "root", Name: "Lab"},
	))
	var devs []scope.Device
	for i, g := range []scope.GroupID{"accounting", "sales", "42"} {
		devs = append(devs, scope.Device{
			ID: scope.DeviceID(fmt.Sprintf("dev-%02d", i+1)), NetBIOSName: fmt.Sprintf("PC%02d", i+1),
			IPs:     []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})},
			GroupID: g, Connected: true, Server: scope.ServerRef{ID: "primary", Role: scope.Primary},
		})
	}
	must(t, inv.PutDevices(context.Background(), devs...))
	return inv
}

type bundle struct {
	ctx   context.Context
	clk   *clock.Mock
	reg   *task.Registry
	m     *task.Manager
	admin task.Actor
	seal  credentials.Sealer
}

func setup(t testing.TB) *bundle { return setupStore(t, nil) }

// setupStore is setup with a given store (nil: a new memstore).
func setupStore(t testing.TB, store storage.Store) *bundle {
	if store == nil {
		store = memstore.New()
	}
	clk := clock.NewMock()
	clk.Set(start)
	reg := registry(t)
	var mu sync.Mutex
	ids := 0
	m, err := task.New(task.Config{Store: store, Registry: reg, Inventory: inventory(t), Clock: clk,
		NewID: func() string { mu.Lock(); defer mu.Unlock(); ids++; return fmt.Sprintf("task-%05d", ids) }})
	must(t, err)
	sealer, err := credentials.NewAESGCM(credentials.AESGCMConfig{Keys: []credentials.Key{{ID: "k1", Material: make([]byte, 32)}}, ActiveKeyID: "k1"})
	must(t, err)
	return &bundle{ctx: context.Background(), clk: clk, reg: reg, m: m, admin: task.Actor{ID: "admin"}, seal: sealer}
}

// fullTask is a group virus scan with every setting away from its default.
func fullTask(t testing.TB, sealer credentials.Sealer) *task.Task {
	s := schedule.Default(schedule.Weekly, start, time.UTC)
	s.Weekdays = schedule.NewWeekdays(time.Monday, time.Friday)
	s.Time = schedule.Clock(19, 30, 0)
	s.RunMissed = true
	s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayInterval, IntervalMinutes: 15}
	s.StopAfter = schedule.Limit{Enabled: true, Minutes: 240}
	s.WakeOnLAN = schedule.Limit{Enabled: false, Minutes: 10}
	s.ShutdownAfter = true
	pol := restart.Default()
	pol.Message = "Please save your work: \"scan\" needs a restart <now> & then"
	pol.RestartAfter = restart.Interval{Enabled: false, Minutes: 60}
	acct := credentials.Account{}
	if sealer != nil {
		var err error
		acct, err = credentials.Specify(`CORP\svc-scan`, credentials.NewSecret("hunter2-very-secret"), sealer)
		must(t, err)
	}
	return &task.Task{
		ID: "task-src", Name: "Friday scan — Büro", Description: "Scans the office.\nTwice a week.",
		Application: appES, ApplicationVersion: "12.1", Type: "virus_scan",
		Scope:    scope.Scope{Kind: scope.Group, Group: "office", ExcludedGroups: []scope.GroupID{"sales"}},
		Schedule: s,
		Account:  acct,
		Restart:  pol,
		Notifications: task.Notifications{History: task.HistoryAll, RetentionDays: 90, DeviceEventLog: true,
			ErrorsOnly: true, Email: []string{"soc@example.com"}},
		Settings: &ScanSettings{ScanArchives: true, MaxFileSizeMB: 250, Paths: []string{`C:\Users`, "/home"}, Action: "report",
			Ratio: 0.25, Quota: 1 << 40, Exclusions: map[string]string{"b": "2", "a": "1"}},
		Revision: 3, SettingsRevision: 2, CreatedAt: start, UpdatedAt: start.Add(time.Hour), CreatedBy: "admin", UpdatedBy: "admin",
	}
}

func restartDefault() restart.Policy { return restart.Default() }
