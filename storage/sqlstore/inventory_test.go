package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"
	"github.com/jmoiron/sqlx"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inventorytest"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
)

// invTarget opens a fresh, empty store of one kind; the store is closed
// when the test ends.
type invTarget struct {
	name string
	open func(t testing.TB) *sqlstore.Store
}

func invTargets() []invTarget {
	closing := func(t testing.TB, s *sqlstore.Store) *sqlstore.Store {
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	return []invTarget{
		{"SQLiteFile", func(t testing.TB) *sqlstore.Store { return closing(t, openSQLiteFile(t)) }},
		{"SQLiteMemory", func(t testing.TB) *sqlstore.Store {
			s, err := sqlstore.OpenSQLite(context.Background(), ":memory:")
			if err != nil {
				t.Fatal(err)
			}
			return closing(t, s)
		}},
		{"Postgres", func(t testing.TB) *sqlstore.Store { return closing(t, openPG(t)) }},
	}
}

func TestInventoryConformance(t *testing.T) {
	t.Parallel()
	for _, tg := range invTargets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			inventorytest.Run(t, func(t *testing.T, groups []scope.AdminGroup, devices []scope.Device) scope.Inventory {
				s := tg.open(t)
				ctx := context.Background()
				if err := s.Devices().PutGroups(ctx, groups...); err != nil {
					t.Fatal(err)
				}
				if err := s.Devices().PutDevices(ctx, devices...); err != nil {
					t.Fatal(err)
				}
				return s.Inventory()
			})
		})
	}
}

// invSetup is what the write tests share: a store loaded with a small
// tree (root > a > a1, root > b) and two devices.
type invSetup struct {
	s   *sqlstore.Store
	inv *sqlstore.Inventory
}

func setupInventory(t *testing.T, tg invTarget) invSetup {
	t.Helper()
	s := tg.open(t)
	inv := s.Devices()
	ctx := context.Background()
	if err := inv.PutGroups(ctx,
		scope.AdminGroup{ID: "a1", Parent: "a", Name: "A1"}, // child before parent: same call
		scope.AdminGroup{ID: "root", Name: "Root"},
		scope.AdminGroup{ID: "a", Parent: "root", Name: "A"},
		scope.AdminGroup{ID: "b", Parent: "root", Name: "B"},
	); err != nil {
		t.Fatal(err)
	}
	if err := inv.PutDevices(ctx,
		scope.Device{ID: "d1", GroupID: "a1", Server: scope.ServerRef{Role: scope.Primary}},
		scope.Device{ID: "d2", GroupID: "b"},
	); err != nil {
		t.Fatal(err)
	}
	return invSetup{s: s, inv: inv}
}

// snapshot reads everything the inventory holds.
func (b invSetup) snapshot(t *testing.T) ([]scope.AdminGroup, []scope.Device) {
	t.Helper()
	ctx := context.Background()
	groups, err := b.inv.Groups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var devices []scope.Device
	for d, err := range b.inv.Devices(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		devices = append(devices, *d)
	}
	return groups, devices
}

// fields lists the Field of every ValidationError in err.
func fields(t *testing.T, err error) []string {
	t.Helper()
	if !errors.Is(err, sqlstore.ErrInvalid) {
		t.Fatalf("error %v does not match ErrInvalid", err)
	}
	var out []string
	var ve *sqlstore.ValidationError
	var ves sqlstore.ValidationErrors
	switch {
	case errors.As(err, &ves):
		for _, e := range ves {
			out = append(out, e.Field)
		}
	case errors.As(err, &ve):
		out = append(out, ve.Field)
	default:
		t.Fatalf("error %v is neither a ValidationError nor ValidationErrors", err)
	}
	return out
}

func TestInventoryRejectedWritesStoreNothing(t *testing.T) {
	t.Parallel()
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		groups  []scope.AdminGroup
		devices []scope.Device
		want    []string
	}{
		{name: "group without id", groups: []scope.AdminGroup{{ID: "new"}, {Name: "x"}}, want: []string{"groups[1].id"}},
		{name: "unknown parent", groups: []scope.AdminGroup{{ID: "new"}, {ID: "c", Parent: "nowhere"}}, want: []string{"groups[1].parent"}},
		{name: "self parent", groups: []scope.AdminGroup{{ID: "new"}, {ID: "c", Parent: "c"}}, want: []string{"groups[1].parent"}},
		{name: "cycle through stored groups", groups: []scope.AdminGroup{{ID: "new"}, {ID: "root", Parent: "a1"}}, want: []string{"groups[1].parent"}},
		{name: "cycle within the call", groups: []scope.AdminGroup{{ID: "x", Parent: "y"}, {ID: "y", Parent: "x"}}, want: []string{"groups[0].parent", "groups[1].parent"}},
		{name: "replaced entry still checked", groups: []scope.AdminGroup{{ID: "c", Parent: "nowhere"}, {ID: "c"}}, want: []string{"groups[0].parent"}},
		{name: "group name not UTF-8", groups: []scope.AdminGroup{{ID: "new"}, {ID: "c", Name: "bad\xff"}}, want: []string{"groups[1].name"}},
		{name: "device in unknown group", devices: []scope.Device{{ID: "new"}, {ID: "d3", GroupID: "nowhere"}}, want: []string{"devices[1].group_id"}},
		{name: "device without id", devices: []scope.Device{{ID: "new"}, {GroupID: "a"}}, want: []string{"devices[1].id"}},
		{name: "duplicate device", devices: []scope.Device{{ID: "new"}, {ID: "new"}}, want: []string{"devices[1].id"}},
		{name: "NUL in a tag", devices: []scope.Device{{ID: "new"}, {ID: "d3", Tags: []string{"ok", "a\x00b"}}}, want: []string{"devices[1].tags[1]"}},
		{name: "software not UTF-8", devices: []scope.Device{{ID: "new", Software: []scope.Software{{Vendor: "\xc3"}}}}, want: []string{"devices[0].software[0].vendor"}},
		{name: "last seen after 9999", devices: []scope.Device{{ID: "new"}, {ID: "d3", LastSeen: far}}, want: []string{"devices[1].last_seen"}},
		{name: "replacing a device into an unknown group", devices: []scope.Device{{ID: "new"}, {ID: "d1", GroupID: "gone"}}, want: []string{"devices[1].group_id"}},
	}
	for _, tg := range invTargets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					b := setupInventory(t, tg)
					wantGroups, wantDevices := b.snapshot(t)
					var err error
					if tt.groups != nil {
						err = b.inv.PutGroups(context.Background(), tt.groups...)
					} else {
						err = b.inv.PutDevices(context.Background(), tt.devices...)
					}
					if diff := cmp.Diff(tt.want, fields(t, err)); diff != "" {
						t.Errorf("rejected fields (-want +got):\n%s\nerror: %v", diff, err)
					}
					gotGroups, gotDevices := b.snapshot(t)
					if diff := cmp.Diff(wantGroups, gotGroups); diff != "" {
						t.Errorf("a rejected call changed the groups (-before +after):\n%s", diff)
					}
					if diff := cmp.Diff(wantDevices, gotDevices); diff != "" {
						t.Errorf("a rejected call changed the devices (-before +after):\n%s", diff)
					}
				})
			}
		})
	}
}

func TestInventoryWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	seen := time.Date(2026, 3, 29, 1, 30, 0, 123456789, time.FixedZone("CET", 3600))
	tests := []struct {
		name  string
		check func(t *testing.T, b invSetup)
	}{
		{"DeleteGroupNotFound", func(t *testing.T, b invSetup) {
			if err := b.inv.DeleteGroup(ctx, "nowhere"); !errors.Is(err, sqlstore.ErrNotFound) {
				t.Errorf("DeleteGroup(missing) = %v, want ErrNotFound", err)
			}
		}},
		{"DeleteGroupWithSubgroup", func(t *testing.T, b invSetup) {
			if err := b.inv.DeleteGroup(ctx, "a"); !errors.Is(err, sqlstore.ErrConflict) {
				t.Errorf("DeleteGroup(group with a subgroup) = %v, want ErrConflict", err)
			}
			if _, err := b.inv.Group(ctx, "a"); err != nil {
				t.Errorf("the group is gone after a refused delete: %v", err)
			}
		}},
		{"DeleteGroupWithDevice", func(t *testing.T, b invSetup) {
			if err := b.inv.DeleteGroup(ctx, "b"); !errors.Is(err, sqlstore.ErrConflict) {
				t.Errorf("DeleteGroup(group with a device) = %v, want ErrConflict", err)
			}
			// Emptied, it can go.
			if err := b.inv.DeleteDevice(ctx, "d2"); err != nil {
				t.Fatal(err)
			}
			if err := b.inv.DeleteGroup(ctx, "b"); err != nil {
				t.Fatalf("DeleteGroup(empty group) = %v", err)
			}
			if _, err := b.inv.Group(ctx, "b"); !errors.Is(err, scope.ErrNotFound) {
				t.Errorf("Group(deleted) = %v, want ErrNotFound", err)
			}
		}},
		{"DeleteDevice", func(t *testing.T, b invSetup) {
			if err := b.inv.DeleteDevice(ctx, "nobody"); !errors.Is(err, sqlstore.ErrNotFound) {
				t.Errorf("DeleteDevice(missing) = %v, want ErrNotFound", err)
			}
			if err := b.inv.DeleteDevice(ctx, "d1"); err != nil {
				t.Fatal(err)
			}
			if _, err := b.inv.Device(ctx, "d1"); !errors.Is(err, scope.ErrNotFound) {
				t.Errorf("Device(deleted) = %v, want ErrNotFound", err)
			}
		}},
		{"PutDevicesReplaces", func(t *testing.T, b invSetup) {
			// Known facts first, then every fact unknown again: the
			// replacement is whole, not a merge.
			full := scope.Device{
				ID: "d1", GroupID: "a", NetBIOSName: "Büro-PC", DNSName: "buero.example.",
				IPs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, Tags: []string{}, Software: []scope.Software{},
				OS: &scope.OS{Platform: "linux"}, Applications: map[string]scope.AppState{"KES": {Installed: true}},
				TimeZone: "Europe/Berlin", LastSeen: seen, Connected: true, Server: scope.ServerRef{ID: "s", Role: scope.Secondary},
			}
			if err := b.inv.PutDevices(ctx, full); err != nil {
				t.Fatal(err)
			}
			got, err := b.inv.Device(ctx, "d1")
			if err != nil {
				t.Fatal(err)
			}
			want := full
			want.LastSeen = seen.UTC().Truncate(time.Microsecond)
			if diff := cmp.Diff(want, *got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("Device after PutDevices (-want +got):\n%s", diff)
			}
			if got.LastSeen.Location() != time.UTC {
				t.Errorf("LastSeen in %v, want UTC", got.LastSeen.Location())
			}
			ids, err := b.inv.DevicesByName(ctx, scope.Address{Kind: scope.DNSName, Name: "buero.example"})
			if err != nil || !slices.Equal(ids, []scope.DeviceID{"d1"}) {
				t.Errorf("DevicesByName(dns) = %v, %v; want [d1]", ids, err)
			}
			// Folded in Go (strings.ToUpper), not by the engine's
			// ASCII-only upper().
			a := scope.Address{Kind: scope.NetBIOSName, Name: "BÜRO-PC"}
			ids, err = b.inv.DevicesByName(ctx, a)
			if err != nil || !slices.Equal(ids, []scope.DeviceID{"d1"}) {
				t.Errorf("DevicesByName(%v) = %v, %v; want [d1] (names fold like ParseAddress, also beyond ASCII)", a, ids, err)
			}
			if err := b.inv.PutDevices(ctx, scope.Device{ID: "d1"}); err != nil {
				t.Fatal(err)
			}
			got, err = b.inv.Device(ctx, "d1")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(scope.Device{ID: "d1"}, *got); diff != "" {
				t.Errorf("Device after replacing with an unknown device (-want +got):\n%s", diff)
			}
			if ids, _ := b.inv.DevicesByName(ctx, a); len(ids) != 0 {
				t.Errorf("the old name still finds %v", ids)
			}
		}},
		{"PutGroupsReparents", func(t *testing.T, b invSetup) {
			if err := b.inv.PutGroups(ctx, scope.AdminGroup{ID: "a1", Parent: "b", Name: "A1 moved"}); err != nil {
				t.Fatal(err)
			}
			g, err := b.inv.Group(ctx, "a1")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(scope.AdminGroup{ID: "a1", Parent: "b", Name: "A1 moved"}, *g); diff != "" {
				t.Errorf("Group after re-parenting (-want +got):\n%s", diff)
			}
			// Now a (formerly a1's parent) may go under a1.
			if err := b.inv.PutGroups(ctx, scope.AdminGroup{ID: "a", Parent: "a1"}); err != nil {
				t.Errorf("PutGroups(a under a1 after the move) = %v", err)
			}
		}},
		{"DevicesByNameEmptyNeverMatches", func(t *testing.T, b invSetup) {
			// d1 and d2 have no names (unknown): an empty name must
			// not find them.
			for _, k := range []scope.AddressKind{scope.NetBIOSName, scope.DNSName} {
				ids, err := b.inv.DevicesByName(ctx, scope.Address{Kind: k})
				if err != nil || len(ids) != 0 {
					t.Errorf("DevicesByName(empty %v) = %v, %v; want none", k, ids, err)
				}
			}
		}},
		{"DevicesByNameRejectsOtherKinds", func(t *testing.T, b invSetup) {
			a, err := scope.ParseAddress("10.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.inv.DevicesByName(ctx, a); !errors.Is(err, sqlstore.ErrInvalid) {
				t.Errorf("DevicesByName(IP) = %v, want ErrInvalid", err)
			}
		}},
		{"SameValueEveryCall", func(t *testing.T, b invSetup) {
			if b.s.Inventory() != b.s.Inventory() || b.s.Inventory() != scope.Inventory(b.s.Devices()) {
				t.Error("Inventory and Devices must return the same value on every call")
			}
			var st storage.Store = b.s
			if _, ok := st.(scope.InventoryProvider); !ok {
				t.Error("*sqlstore.Store does not implement scope.InventoryProvider")
			}
		}},
		{"NestedQueriesWhileIterating", func(t *testing.T, b invSetup) {
			// A consumer may query the store inside the loop (a
			// :memory: store has a single connection).
			n := 0
			for d, err := range b.inv.Devices(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := b.inv.Group(ctx, d.GroupID); err != nil {
					t.Fatal(err)
				}
				n++
			}
			for m, err := range b.inv.GroupMembers(ctx, []scope.GroupID{"a1", "b"}) {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := b.inv.Device(ctx, m.ID); err != nil {
					t.Fatal(err)
				}
				n++
			}
			if n != 4 {
				t.Errorf("saw %d devices and members, want 4", n)
			}
		}},
		{"Closed", func(t *testing.T, b invSetup) {
			if err := b.s.Close(); err != nil {
				t.Fatal(err)
			}
			for name, err := range map[string]error{
				"PutGroups":    b.inv.PutGroups(ctx, scope.AdminGroup{ID: "x"}),
				"PutDevices":   b.inv.PutDevices(ctx, scope.Device{ID: "x"}),
				"DeleteGroup":  b.inv.DeleteGroup(ctx, "b"),
				"DeleteDevice": b.inv.DeleteDevice(ctx, "d1"),
			} {
				if !errors.Is(err, sqlstore.ErrClosed) {
					t.Errorf("%s after Close = %v, want ErrClosed", name, err)
				}
			}
			if _, err := b.inv.Device(ctx, "d1"); !errors.Is(err, sqlstore.ErrClosed) {
				t.Errorf("Device after Close = %v, want ErrClosed", err)
			}
			for _, err := range b.inv.Devices(ctx) {
				if !errors.Is(err, sqlstore.ErrClosed) {
					t.Errorf("Devices after Close yielded %v, want ErrClosed", err)
				}
			}
		}},
	}
	for _, tg := range invTargets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					tt.check(t, setupInventory(t, tg))
				})
			}
		})
	}
}

// A task Manager reading the store's inventory resolves a group scope on
// Start.
func TestInventoryTaskManagerStartsGroupTask(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := invTargets()[0].open(t)
	inv := s.Devices()
	if err := inv.PutGroups(ctx, scope.AdminGroup{ID: "office", Name: "Office"}, scope.AdminGroup{ID: "lab", Parent: "office", Name: "Lab"}); err != nil {
		t.Fatal(err)
	}
	primary := scope.ServerRef{ID: "main", Role: scope.Primary}
	if err := inv.PutDevices(ctx,
		scope.Device{ID: "pc-2", GroupID: "office", Connected: true, Server: primary},
		scope.Device{ID: "pc-1", GroupID: "lab", Connected: true, Server: primary},
		scope.Device{ID: "pc-9", Connected: true, Server: primary}, // unassigned: not in scope
	); err != nil {
		t.Fatal(err)
	}
	type scan struct {
		Deep bool `json:"deep"`
	}
	reg := task.NewRegistry()
	if err := reg.Register(task.TaskType{Application: "Endpoint Security", Name: "virus_scan", Settings: scan{}}); err != nil {
		t.Fatal(err)
	}
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC))
	m, err := task.New(task.Config{Store: s, Registry: reg, Inventory: s.Inventory(), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	admin := task.Actor{ID: "admin"}
	created, err := m.Create(ctx, admin, task.Task{
		Name: "Scan the office", Application: "Endpoint Security", Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Group, Group: "office"},
	})
	if err != nil {
		t.Fatal(err)
	}
	run, err := m.Start(ctx, admin, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]scope.DeviceID{"pc-1", "pc-2"}, run.Devices); diff != "" {
		t.Errorf("Start(group task) devices (-want +got):\n%s", diff)
	}
	// A group that does not exist is refused when the task is created.
	_, err = m.Create(ctx, admin, task.Task{
		Name: "Scan nowhere", Application: "Endpoint Security", Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Group, Group: "nowhere"},
	})
	if !errors.Is(err, task.ErrInvalid) {
		t.Errorf("Create(scope of a missing group) = %v, want ErrInvalid", err)
	}
}

// benchFleet returns n devices spread over 100 groups under one root (ids
// zero-padded, so byte order is numeric order), with typical facts.
func benchFleet(n int) ([]scope.AdminGroup, []scope.Device) {
	groups := []scope.AdminGroup{{ID: "root", Name: "Root"}}
	for g := range 100 {
		groups = append(groups, scope.AdminGroup{ID: scope.GroupID(fmt.Sprintf("g%03d", g)), Parent: "root", Name: fmt.Sprintf("Group %d", g)})
	}
	seen := time.Date(2026, 11, 20, 7, 30, 0, 0, time.UTC)
	devices := make([]scope.Device, n)
	for i := range devices {
		id := fmt.Sprintf("dev-%07d", i)
		devices[i] = scope.Device{
			ID: scope.DeviceID(id), NetBIOSName: "PC-" + id, DNSName: id + ".corp.example",
			IPs:     []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})},
			GroupID: groups[1+i%100].ID, Tags: []string{"office"},
			OS:           &scope.OS{Name: "Windows 11 Pro", Version: "23H2", Platform: "windows"},
			Applications: map[string]scope.AppState{"KES": {Installed: true, Running: true}},
			TimeZone:     "Europe/Berlin", LastSeen: seen, Connected: true,
			Server: scope.ServerRef{ID: "main", Role: scope.Primary},
		}
	}
	return groups, devices
}

const benchDevices = 100_000

// benchTargets are the databases the inventory benchmarks run on: a
// SQLite file (the embedded default the issue's figures are for) and
// PostgreSQL when TASKFLEET_TEST_POSTGRES is set.
func benchTargets() []invTarget {
	return []invTarget{
		{"SQLite", func(t testing.TB) *sqlstore.Store { return openSQLiteFile(t) }},
		{"Postgres", func(t testing.TB) *sqlstore.Store { return openPG(t) }},
	}
}

// BenchmarkInventoryPutDevices100k loads 100,000 devices into an empty
// database with one PutDevices call (one transaction).
func BenchmarkInventoryPutDevices100k(b *testing.B) {
	ctx := context.Background()
	groups, devices := benchFleet(benchDevices)
	for _, tg := range benchTargets() {
		b.Run(tg.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				s := tg.open(b)
				if err := s.Devices().PutGroups(ctx, groups...); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := s.Devices().PutDevices(ctx, devices...); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				_ = s.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchDevices, "ns/device")
		})
	}
}

// BenchmarkInventoryResolveGroup100k resolves group scopes over 100,000
// devices: the root (every device, through GroupMembers) and one group of
// 1,000.
func BenchmarkInventoryResolveGroup100k(b *testing.B) {
	ctx := context.Background()
	groups, devices := benchFleet(benchDevices)
	for _, tg := range benchTargets() {
		b.Run(tg.name, func(b *testing.B) {
			s := tg.open(b)
			defer s.Close()
			if err := s.Devices().PutGroups(ctx, groups...); err != nil {
				b.Fatal(err)
			}
			if err := s.Devices().PutDevices(ctx, devices...); err != nil {
				b.Fatal(err)
			}
			for _, bc := range []struct {
				name  string
				group scope.GroupID
				want  int
			}{{"Root", "root", benchDevices}, {"OneGroup", "g042", benchDevices / 100}} {
				b.Run(bc.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						r, err := scope.Resolve(ctx, scope.Scope{Kind: scope.Group, Group: bc.group}, s.Inventory())
						if err != nil {
							b.Fatal(err)
						}
						if len(r.Devices) != bc.want {
							b.Fatalf("resolved %d devices, want %d", len(r.Devices), bc.want)
						}
					}
				})
			}
		})
	}
}

// Devices pages through the table by key: more devices than one page come
// back each once, in byte order (ids chosen so that byte order differs
// from numeric and case-insensitive order), and stopping in the middle of
// a later page ends the iteration.
func TestInventoryDevicesPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tg := range invTargets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			s := tg.open(t)
			const n = 2500 // devicesPage is 1000
			var devices []scope.Device
			var want []scope.DeviceID
			for i := range n {
				id := scope.DeviceID(fmt.Sprintf("%s-%d", []string{"B", "a", "Z", "é"}[i%4], i))
				devices = append(devices, scope.Device{ID: id})
				want = append(want, id)
			}
			slices.Sort(want) // Go compares strings byte-wise
			if err := s.Devices().PutDevices(ctx, devices...); err != nil {
				t.Fatal(err)
			}
			var got []scope.DeviceID
			for d, err := range s.Inventory().Devices(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, d.ID)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Devices over several pages (-want +got):\n%s", diff)
			}
			k := 0
			for _, err := range s.Inventory().Devices(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				if k++; k == 1500 {
					break
				}
			}
			if k != 1500 {
				t.Errorf("stopped after %d devices, want 1500", k)
			}
			exist, err := s.Devices().ExistingDevices(ctx, append(slices.Clone(want[:1200]), want[3], "nobody"))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want[:1200], exist); diff != "" {
				t.Errorf("ExistingDevices of 1200 ids (-want +got):\n%s", diff)
			}
		})
	}
}

// randomDevice returns a device whose every fact is, at random, unknown,
// known and empty, or set (with strings beyond ASCII).
func randomDevice(r *rand.Rand, id string, groups []scope.GroupID) scope.Device {
	pick := func() int { return r.IntN(3) } // 0 unknown, 1 empty, 2 set
	word := func() string {
		return []string{"", "a", "Äpfel", "日本", "x y", `q"uote\`, "ǅ"}[r.IntN(7)]
	}
	d := scope.Device{ID: scope.DeviceID(id), GroupID: groups[r.IntN(len(groups))], Connected: r.IntN(2) == 0}
	d.NetBIOSName, d.DNSName, d.TimeZone = word(), word(), word()
	d.Server = scope.ServerRef{ID: word(), Role: []scope.ServerRole{"", scope.Primary, scope.Secondary, scope.Virtual}[r.IntN(4)]}
	if r.IntN(2) == 0 {
		d.LastSeen = time.UnixMicro(r.Int64N(1 << 52)).UTC()
	}
	switch pick() {
	case 1:
		d.IPs = []netip.Addr{}
	case 2:
		d.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(256)), 1}), netip.MustParseAddr("fe80::1%eth0")}
	}
	switch pick() {
	case 1:
		d.Tags = []string{}
	case 2:
		d.Tags = []string{word(), word()}
	}
	switch pick() {
	case 1:
		d.Software = []scope.Software{}
	case 2:
		d.Software = []scope.Software{{Name: word(), Version: word(), Vendor: word()}}
	}
	switch pick() {
	case 1:
		d.OS = &scope.OS{}
	case 2:
		d.OS = &scope.OS{Name: word(), Version: word(), Build: word(), Platform: word()}
	}
	switch pick() {
	case 1:
		d.Applications = map[string]scope.AppState{}
	case 2:
		d.Applications = map[string]scope.AppState{word(): {Installed: true}, "KES": {Installed: true, Running: r.IntN(2) == 0}}
	}
	return d
}

// Property: whatever mix of unknown, empty and set facts a device has, it
// reads back exactly as put, from Device and from Devices.
func TestInventoryFactsRoundTripProperty(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tg := range invTargets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			s := tg.open(t)
			r := rand.New(rand.NewPCG(6, 2026))
			if err := s.Devices().PutGroups(ctx, scope.AdminGroup{ID: "g"}, scope.AdminGroup{ID: "h", Parent: "g"}); err != nil {
				t.Fatal(err)
			}
			var devices []scope.Device
			for i := range 400 {
				devices = append(devices, randomDevice(r, fmt.Sprintf("d%03d", i), []scope.GroupID{"", "g", "h"}))
			}
			if err := s.Devices().PutDevices(ctx, devices...); err != nil {
				t.Fatal(err)
			}
			addr := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
			i := 0
			for got, err := range s.Inventory().Devices(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(devices[i], *got, addr); diff != "" {
					t.Fatalf("Devices()[%d] (-put +read):\n%s", i, diff)
				}
				one, err := s.Inventory().Device(ctx, got.ID)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(devices[i], *one, addr); diff != "" {
					t.Fatalf("Device(%s) (-put +read):\n%s", got.ID, diff)
				}
				i++
			}
			if i != len(devices) {
				t.Fatalf("Devices yielded %d devices, want %d", i, len(devices))
			}
		})
	}
}

// A DeleteGroup racing a PutDevices into the same group: exactly one
// wins (the device is stored and the delete is a conflict, or the group
// is gone and the put is invalid), and no device is ever left in a
// missing group. Two PutGroups racing to hang x under y and y under x
// never both succeed.
func TestInventoryConcurrentTreeChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tg := range invTargets() {
		if tg.name == "SQLiteMemory" {
			continue // one connection: no concurrency to test
		}
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			s := tg.open(t)
			inv := s.Devices()
			const rounds = 20
			for i := range rounds {
				g := scope.GroupID(fmt.Sprintf("g%d", i))
				if err := inv.PutGroups(ctx, scope.AdminGroup{ID: g}); err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				var putErr, delErr error
				wg.Add(2)
				go func() {
					defer wg.Done()
					putErr = inv.PutDevices(ctx, scope.Device{ID: scope.DeviceID(fmt.Sprintf("d%d", i)), GroupID: g})
				}()
				go func() {
					defer wg.Done()
					delErr = inv.DeleteGroup(ctx, g)
				}()
				wg.Wait()
				switch {
				case putErr == nil && errors.Is(delErr, sqlstore.ErrConflict):
				case delErr == nil && errors.Is(putErr, sqlstore.ErrInvalid):
				default:
					t.Fatalf("round %d: PutDevices = %v, DeleteGroup = %v; want one to win and the other refused", i, putErr, delErr)
				}

				x, y := scope.GroupID(fmt.Sprintf("x%d", i)), scope.GroupID(fmt.Sprintf("y%d", i))
				if err := inv.PutGroups(ctx, scope.AdminGroup{ID: x}, scope.AdminGroup{ID: y}); err != nil {
					t.Fatal(err)
				}
				var e1, e2 error
				wg.Add(2)
				go func() { defer wg.Done(); e1 = inv.PutGroups(ctx, scope.AdminGroup{ID: x, Parent: y}) }()
				go func() { defer wg.Done(); e2 = inv.PutGroups(ctx, scope.AdminGroup{ID: y, Parent: x}) }()
				wg.Wait()
				if (e1 == nil) == (e2 == nil) {
					t.Fatalf("round %d: PutGroups x under y = %v, y under x = %v; want exactly one refused", i, e1, e2)
				}
			}
			groups, err := inv.Groups(ctx)
			if err != nil {
				t.Fatal(err)
			}
			have := map[scope.GroupID]bool{}
			for _, g := range groups {
				have[g.ID] = true
			}
			for d, err := range inv.Devices(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				if d.GroupID != "" && !have[d.GroupID] {
					t.Errorf("device %s is in missing group %s", d.ID, d.GroupID)
				}
			}
		})
	}
}

// A database created by a taskfleet with schema version 1 (no inventory)
// is migrated to the inventory schema on Open, keeping its tasks.
func TestInventoryMigratesVersion1(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			dsn := tg.dsn(t)
			v1, err := os.ReadFile(filepath.Join("migrations", string(tg.dialect), "0001_init.sql"))
			if err != nil {
				t.Fatal(err)
			}
			driver := map[sqlstore.Dialect]string{sqlstore.SQLite: "sqlite", sqlstore.Postgres: "pgx"}[tg.dialect]
			db, err := sqlx.Open(driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			for _, stmt := range []string{
				string(v1),
				`CREATE TABLE taskfleet_schema (version integer PRIMARY KEY, name text NOT NULL, applied_at text NOT NULL DEFAULT CURRENT_TIMESTAMP)`,
				`INSERT INTO taskfleet_schema (version, name) VALUES (1, '0001_init')`,
			} {
				if _, err := db.Exec(stmt); err != nil {
					t.Fatalf("creating a version 1 database: %v", err)
				}
			}
			_ = db.Close()

			s := open(t, tg.dialect, dsn)
			defer s.Close()
			rows := schemaRows(t, s)
			if len(rows) != sqlstore.SchemaVersion() || rows[1].Version != 2 || rows[1].Name != "0002_inventory" || sqlstore.SchemaVersion() < 2 {
				t.Fatalf("schema rows %+v, SchemaVersion %d; want versions 1 and 2 (0002_inventory)", rows, sqlstore.SchemaVersion())
			}
			if err := s.Devices().PutGroups(ctx, scope.AdminGroup{ID: "g"}); err != nil {
				t.Fatal(err)
			}
			if err := s.Devices().PutDevices(ctx, scope.Device{ID: "d", GroupID: "g"}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Inventory().Device(ctx, "d"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A host keeps its device inventory in the store: groups and devices are
// written through Devices, and the same inventory (Inventory) resolves
// scopes and feeds a task.Manager (task.Config.Inventory).
func ExampleStore_Inventory() {
	ctx := context.Background()
	s, err := sqlstore.OpenSQLite(ctx, ":memory:")
	if err != nil {
		panic(err)
	}
	defer s.Close()

	inv := s.Devices()
	if err := inv.PutGroups(ctx,
		scope.AdminGroup{ID: "office", Name: "Office"},
		scope.AdminGroup{ID: "lab", Parent: "office", Name: "Lab"},
	); err != nil {
		panic(err)
	}
	if err := inv.PutDevices(ctx,
		scope.Device{ID: "pc-2", GroupID: "office", NetBIOSName: "PC-2", Server: scope.ServerRef{Role: scope.Primary}},
		scope.Device{ID: "pc-1", GroupID: "lab", NetBIOSName: "PC-1", Server: scope.ServerRef{Role: scope.Primary}},
	); err != nil {
		panic(err)
	}
	// A device in a group that does not exist is refused; nothing is stored.
	err = inv.PutDevices(ctx, scope.Device{ID: "pc-3", GroupID: "attic"})
	fmt.Println(err)

	r, err := scope.Resolve(ctx, scope.Scope{Kind: scope.Group, Group: "office"}, s.Inventory())
	if err != nil {
		panic(err)
	}
	fmt.Println("office:", r.Devices)

	// A group with devices cannot be deleted.
	err = inv.DeleteGroup(ctx, "lab")
	fmt.Println(errors.Is(err, sqlstore.ErrConflict))
	// Output:
	// invalid devices[0].group_id "attic": no such group
	// office: [pc-1 pc-2]
	// true
}

// FuzzInventoryDeviceRoundTrip puts devices built from arbitrary strings
// (inventory facts come from agents and directory syncs): the store either
// refuses the device with ErrInvalid and stores nothing, or reads back
// exactly what was put — never a silently altered string, and names are
// found under their folded form.
func FuzzInventoryDeviceRoundTrip(f *testing.F) {
	f.Add("d1", "PC-1", "pc-1.corp.example.", "office", "Europe/Berlin", "KES", int64(1763623800000000))
	f.Add("é", "ǅ", "日本.example", "", "", "", int64(0))
	f.Add("bad\xff", "x\x00y", "", "t", "", "a\x00", int64(-62135596800000000))
	f.Add("d2", "", "", "", "", "", int64(1<<62))
	ctx := context.Background()
	s, err := sqlstore.OpenSQLite(ctx, ":memory:")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	inv := s.Devices()
	addr := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	f.Fuzz(func(t *testing.T, id, netbios, dns, tag, zone, app string, seenMicros int64) {
		d := scope.Device{
			ID: scope.DeviceID(id), NetBIOSName: netbios, DNSName: dns, Tags: []string{tag}, TimeZone: zone,
			Software:     []scope.Software{{Name: app, Vendor: tag}},
			OS:           &scope.OS{Name: netbios, Platform: zone},
			Applications: map[string]scope.AppState{app: {Installed: true}},
		}
		if seenMicros != 0 {
			d.LastSeen = time.UnixMicro(seenMicros).UTC()
		}
		err := inv.PutDevices(ctx, d)
		if err != nil {
			if !errors.Is(err, sqlstore.ErrInvalid) {
				t.Fatalf("PutDevices = %v, want nil or ErrInvalid", err)
			}
			if _, err := inv.Device(ctx, d.ID); !errors.Is(err, scope.ErrNotFound) {
				t.Fatalf("a refused device is readable: %v", err)
			}
			return
		}
		got, err := inv.Device(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(d, *got, addr); diff != "" {
			t.Fatalf("Device after PutDevices (-put +read):\n%s", diff)
		}
		if netbios != "" {
			ids, err := inv.DevicesByName(ctx, scope.Address{Kind: scope.NetBIOSName, Name: strings.ToUpper(netbios)})
			if err != nil || !slices.Contains(ids, d.ID) {
				t.Fatalf("DevicesByName(NetBIOS %q) = %v, %v; want it to contain %q", netbios, ids, err, d.ID)
			}
		}
		if err := inv.DeleteDevice(ctx, d.ID); err != nil {
			t.Fatal(err)
		}
	})
}
