package task_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
)

const (
	appES     = "Endpoint Security"
	appServer = "Administration Server"
)

// ScanSettings are the type-specific settings of the test virus scan.
type ScanSettings struct {
	ScanArchives  bool     `json:"scan_archives"`
	MaxFileSizeMB int      `json:"max_file_size_mb" validate:"min=1,max=4096"`
	Paths         []string `json:"paths" validate:"max=10,dive,required"`
	Action        string   `json:"action" validate:"oneof=disinfect delete report"`
}

type UpdateSettings struct {
	Source string `json:"source" validate:"required"`
}

var start = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

type bundle struct {
	ctx    context.Context
	clk    *clock.Mock
	store  *memstore.Store
	inv    *inmem.Inventory
	m      *task.Manager
	notes  *notes
	admin  task.Actor
	sealer credentials.Sealer
}

type notes struct {
	mu   sync.Mutex
	list []task.Notification
}

func (n *notes) Notify(_ context.Context, x task.Notification) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.list = append(n.list, x)
	return nil
}

func (n *notes) all() []task.Notification {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]task.Notification(nil), n.list...)
}

func registry(t testing.TB) *task.Registry {
	r := task.NewRegistry()
	must(t, r.Register(task.TaskType{Application: appES, ApplicationVersion: "12.1", Name: "virus_scan",
		Settings: &ScanSettings{MaxFileSizeMB: 100, Action: "disinfect"}}))
	must(t, r.Register(task.TaskType{Application: appES, ApplicationVersion: "12.1", Name: "update",
		Settings:  UpdateSettings{Source: "administration-server"},
		Schedules: []schedule.Kind{schedule.Manual, schedule.OnUpdates, schedule.EveryHours}}))
	must(t, r.Register(task.TaskType{Application: appServer, Name: "backup", ServerTask: true}))
	return r
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// inventory: root > (office > (accounting, sales), lab); 3 devices in each
// leaf group and one unassigned device.
func inventory(t testing.TB) *inmem.Inventory {
	inv := inmem.New()
	must(t, inv.PutGroups(context.Background(),
		scope.AdminGroup{ID: "root", Name: "Managed devices"},
		scope.AdminGroup{ID: "office", Parent: "root", Name: "Office"},
		scope.AdminGroup{ID: "accounting", Parent: "office", Name: "Accounting"},
		scope.AdminGroup{ID: "sales", Parent: "office", Name: "Sales"},
		scope.AdminGroup{ID: "lab", Parent: "root", Name: "Lab"},
	))
	var devs []scope.Device
	n := 0
	for _, g := range []scope.GroupID{"accounting", "sales", "lab", ""} {
		for i := range 3 {
			if g == "" && i > 0 {
				break
			}
			n++
			devs = append(devs, scope.Device{
				ID: scope.DeviceID(fmt.Sprintf("dev-%02d", n)), NetBIOSName: fmt.Sprintf("PC%02d", n),
				IPs:     []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(n)})},
				GroupID: g, TimeZone: "Europe/Berlin", Connected: n%2 == 1,
				Server:       scope.ServerRef{ID: "primary", Role: scope.Primary},
				OS:           &scope.OS{Name: "Windows", Version: "11"},
				Applications: map[string]scope.AppState{appES: {Installed: true, Running: true}},
			})
		}
	}
	must(t, inv.PutDevices(context.Background(), devs...))
	return inv
}

func setup(t testing.TB) *bundle {
	clk := clock.NewMock()
	clk.Set(start)
	b := &bundle{ctx: context.Background(), clk: clk, store: memstore.New(), inv: inventory(t), notes: &notes{}, admin: task.Actor{ID: "admin"}}
	sealer, err := credentials.NewAESGCM(credentials.AESGCMConfig{Keys: []credentials.Key{{ID: "k1", Material: make([]byte, 32)}}, ActiveKeyID: "k1"})
	must(t, err)
	b.sealer = sealer
	ids := 0
	var idMu sync.Mutex
	m, err := task.New(task.Config{
		Store: b.store, Registry: registry(t), Inventory: b.inv, Clock: clk, Notifier: b.notes,
		NewID: func() string { idMu.Lock(); defer idMu.Unlock(); ids++; return fmt.Sprintf("task-%04d", ids) },
	})
	must(t, err)
	b.m = m
	return b
}

func groupScan(name string) task.Task {
	return task.Task{Name: name, Application: appES, Type: "virus_scan", Scope: scope.Scope{Kind: scope.Group, Group: "office"}}
}
