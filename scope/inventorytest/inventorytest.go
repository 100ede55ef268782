// Package inventorytest is the conformance suite for scope.Inventory
// implementations (the host's inventory, SQL storage backends). Every
// implementation runs it from a test:
//
//	func TestConformance(t *testing.T) {
//		inventorytest.Run(t, func(t *testing.T, groups []scope.AdminGroup, devices []scope.Device) scope.Inventory {
//			return newLoadedInventory(t, groups, devices)
//		})
//	}
//
// The suite checks the documented contract of scope.Inventory and of the
// optional interfaces the implementation chooses to offer: ErrNotFound,
// ascending order, each device once, early stop, cancellation, facts stored
// without turning "unknown" (nil) into "none" (empty) or back, and that
// Resolve gives the same answer as the reference in-memory inventory.
//
// An inventory that implements scope.SelectionStore (saved selections) is
// also checked for that contract: revisions and conflicts, validation on
// save (the CEL compiler and its cost limit), history, that an edit
// changes what a scope referring to the selection resolves to, that
// Explain names the selection, and that a selection in use cannot be
// deleted. An inventory without it is checked to refuse a scope with a
// SelectionID with ErrInvalid.
package inventorytest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
)

// Harness returns a new, independent inventory holding exactly groups and
// devices. It is called several times, possibly from parallel subtests.
type Harness func(t *testing.T, groups []scope.AdminGroup, devices []scope.Device) scope.Inventory

// Fixture returns the groups and devices the suite loads: a small tree,
// unassigned devices, devices managed by secondary and virtual servers,
// and devices with every fact unknown, empty and set.
func Fixture() ([]scope.AdminGroup, []scope.Device) {
	groups := []scope.AdminGroup{
		{ID: "g-root", Name: "Root"},
		{ID: "g-a", Parent: "g-root", Name: "A"},
		{ID: "g-a1", Parent: "g-a", Name: "A1"},
		{ID: "g-a2", Parent: "g-a", Name: "A2"},
		{ID: "g-b", Parent: "g-root", Name: "B"},
		{ID: "g-b1", Parent: "g-b", Name: "B1 (virtual server)"},
	}
	seen := time.Date(2026, 11, 20, 7, 30, 0, 0, time.UTC)
	full := func(id, group string, ip string, role scope.ServerRole) scope.Device {
		return scope.Device{
			ID: scope.DeviceID(id), NetBIOSName: "PC-" + id, DNSName: "pc-" + id + ".corp.example",
			IPs: []netip.Addr{netip.MustParseAddr(ip)}, GroupID: scope.GroupID(group),
			Tags:         []string{"t-" + group},
			Software:     []scope.Software{{Name: "Mozilla Firefox", Version: "115.0", Vendor: "Mozilla"}},
			OS:           &scope.OS{Name: "Windows 11 Pro", Version: "23H2", Build: "22631", Platform: "windows"},
			TimeZone:     "Europe/Berlin",
			Applications: map[string]scope.AppState{"KES": {Installed: true, Running: true}},
			LastSeen:     seen, Connected: true,
			Server: scope.ServerRef{ID: "ksc-" + string(role), Role: role},
		}
	}
	devices := []scope.Device{
		full("d-07", "g-a1", "10.0.1.7", scope.Primary),
		full("d-01", "g-root", "10.0.0.1", scope.Primary),
		full("d-03", "g-a", "10.0.0.3", scope.Primary),
		full("d-04", "g-a2", "2001:db8::4", scope.Primary),
		full("d-05", "g-b1", "10.0.2.5", scope.Virtual),
		full("d-06", "g-b", "10.0.2.6", scope.Secondary),
		full("d-10", "", "10.0.9.10", scope.Primary), // unassigned
		{ID: "d-02", GroupID: "g-a1"},                // every fact unknown
		{ID: "d-08", GroupID: "g-b", IPs: []netip.Addr{}, Tags: []string{}, Software: []scope.Software{}, // every list known and empty
			Applications: map[string]scope.AppState{}, OS: &scope.OS{}, Server: scope.ServerRef{Role: scope.Primary}},
		{ID: "d-09"}, // unassigned, nothing known
	}
	devices[1].IPs = append(devices[1].IPs, netip.MustParseAddr("2001:db8::1"))
	devices[1].Applications["X"] = scope.AppState{Installed: true}
	devices[1].Connected = false
	return groups, devices
}

// Run runs the conformance suite against the inventories h returns.
func Run(t *testing.T, h Harness) {
	t.Helper()
	groups, devices := Fixture()
	ctx := context.Background()
	load := func(t *testing.T) scope.Inventory {
		g, d := Fixture() // fresh copies: the harness may keep them
		return h(t, g, d)
	}
	sorted := slices.Clone(devices)
	slices.SortFunc(sorted, func(a, b scope.Device) int { return cmpID(a.ID, b.ID) })

	t.Run("DeviceFactsRoundTrip", func(t *testing.T) {
		t.Parallel()
		inv := load(t)
		for _, want := range devices {
			got, err := inv.Device(ctx, want.ID)
			if err != nil {
				t.Fatalf("Device(%s) = %v", want.ID, err)
			}
			if diff := cmp.Diff(want, *got, addrCmp); diff != "" {
				t.Errorf("Device(%s) (-want +got), nil (unknown) and empty (none) must be kept apart:\n%s", want.ID, diff)
			}
			if !got.LastSeen.IsZero() && got.LastSeen.Location() != time.UTC {
				t.Errorf("Device(%s).LastSeen is in %v, want UTC", want.ID, got.LastSeen.Location())
			}
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		inv := load(t)
		if _, err := inv.Device(ctx, "no-such-device"); !errors.Is(err, scope.ErrNotFound) {
			t.Errorf("Device(missing) error = %v, want one matching scope.ErrNotFound", err)
		}
		if _, err := inv.Group(ctx, "no-such-group"); !errors.Is(err, scope.ErrNotFound) {
			t.Errorf("Group(missing) error = %v, want one matching scope.ErrNotFound", err)
		}
	})
	t.Run("Groups", func(t *testing.T) {
		t.Parallel()
		inv := load(t)
		got, err := inv.Groups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(got, func(a, b scope.AdminGroup) int { return cmpID(a.ID, b.ID) })
		want := slices.Clone(groups)
		slices.SortFunc(want, func(a, b scope.AdminGroup) int { return cmpID(a.ID, b.ID) })
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Groups (-want +got):\n%s", diff)
		}
		for _, w := range groups {
			g, err := inv.Group(ctx, w.ID)
			if err != nil || *g != w {
				t.Errorf("Group(%s) = %v, %v; want %v", w.ID, g, err, w)
			}
		}
	})
	t.Run("DevicesAscendingOnce", func(t *testing.T) {
		t.Parallel()
		inv := load(t)
		var got []scope.DeviceID
		for d, err := range inv.Devices(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, d.ID)
		}
		var want []scope.DeviceID
		for _, d := range sorted {
			want = append(want, d.ID)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Devices must yield every device once in ascending ID order (-want +got):\n%s", diff)
		}
	})
	t.Run("EarlyStopAndCancel", func(t *testing.T) {
		t.Parallel()
		inv := load(t)
		n := 0
		for _, err := range inv.Devices(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			if n++; n == 2 {
				break
			}
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		var last error
		count := 0
		for _, err := range inv.Devices(cctx) {
			count++
			if err != nil {
				last = err
			}
		}
		if last != nil && !errors.Is(last, context.Canceled) {
			t.Errorf("Devices with a cancelled context yielded %v, want context.Canceled (or nothing)", last)
		}
		if _, err := scope.Resolve(cctx, scope.Scope{Kind: scope.Selection, Selection: "true"}, inv); !errors.Is(err, context.Canceled) {
			t.Errorf("Resolve with a cancelled context = %v, want context.Canceled", err)
		}
	})
	t.Run("GroupMemberLister", func(t *testing.T) {
		t.Parallel()
		inv := load(t)
		gl, ok := inv.(scope.GroupMemberLister)
		if !ok {
			t.Log("scope.GroupMemberLister not implemented: nothing to check")
			return
		}
		for _, set := range [][]scope.GroupID{{"g-a1"}, {"g-a", "g-a1", "g-a2"}, {"g-b", "g-root", "g-b1"}, {"g-missing"}, {}} {
			var got, want []scope.Member
			for m, err := range gl.GroupMembers(ctx, set) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, m)
			}
			for _, d := range sorted {
				if slices.Contains(set, d.GroupID) {
					want = append(want, scope.Member{ID: d.ID, Role: d.Server.Role})
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("GroupMembers(%v) (-want +got):\n%s", set, diff)
			}
		}
	})
	t.Run("NameResolver", func(t *testing.T) {
		t.Parallel()
		inv := load(t)
		nr, ok := inv.(scope.NameResolver)
		if !ok {
			t.Log("scope.NameResolver not implemented: nothing to check")
			return
		}
		for _, tt := range []struct {
			name string
			want []scope.DeviceID
		}{
			{"pc-d-07", []scope.DeviceID{"d-07"}},
			{"PC-D-01", []scope.DeviceID{"d-01"}},
			{"Pc-d-03.Corp.Example", []scope.DeviceID{"d-03"}},
			{"nobody", nil},
			{"nobody.corp.example", nil},
		} {
			a, err := scope.ParseAddress(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			got, err := nr.DevicesByName(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 {
				got = nil
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DevicesByName(%s) (-want +got):\n%s", tt.name, diff)
			}
		}
	})
	t.Run("DeviceChecker", func(t *testing.T) {
		t.Parallel()
		inv := load(t)
		dc, ok := inv.(scope.DeviceChecker)
		if !ok {
			t.Log("scope.DeviceChecker not implemented: nothing to check")
			return
		}
		got, err := dc.ExistingDevices(ctx, []scope.DeviceID{"d-09", "gone", "d-01", "d-09", "d-10"})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]scope.DeviceID{"d-01", "d-09", "d-10"}, got); diff != "" {
			t.Errorf("ExistingDevices (-want +got):\n%s", diff)
		}
		if got, err := dc.ExistingDevices(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("ExistingDevices(nil) = %v, %v", got, err)
		}
	})
	t.Run("ConnectionChecker", func(t *testing.T) {
		t.Parallel()
		inv := load(t)
		cc, ok := inv.(scope.ConnectionChecker)
		if !ok {
			t.Log("scope.ConnectionChecker not implemented: nothing to check")
			return
		}
		// d-01 and d-02 are not connected; "gone" does not exist.
		got, err := cc.ConnectedDevices(ctx, []scope.DeviceID{"d-07", "gone", "d-01", "d-07", "d-10", "d-02"})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]scope.DeviceID{"d-07", "d-10"}, got); diff != "" {
			t.Errorf("ConnectedDevices (-want +got):\n%s", diff)
		}
		if got, err := cc.ConnectedDevices(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("ConnectedDevices(nil) = %v, %v", got, err)
		}
	})
	t.Run("SavedSelections", func(t *testing.T) {
		t.Parallel()
		runSavedSelections(t, load(t))
	})
	t.Run("ResolveMatchesReference", func(t *testing.T) {
		t.Parallel()
		inv := load(t)
		ref := inmem.New()
		if err := ref.PutGroups(ctx, groups...); err != nil {
			t.Fatal(err)
		}
		if err := ref.PutDevices(ctx, devices...); err != nil {
			t.Fatal(err)
		}
		for _, s := range Scopes() {
			want, werr := scope.Resolve(ctx, s, ref)
			got, gerr := scope.Resolve(ctx, s, inv)
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("Resolve(%+v): reference error %v, implementation error %v", s, werr, gerr)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Resolve(%+v) differs from the reference (-reference +implementation):\n%s", s, diff)
			}
			for _, d := range devices {
				we, _ := scope.Explain(ctx, s, ref, d.ID)
				ge, err := scope.Explain(ctx, s, inv, d.ID)
				if werr == nil && err != nil {
					t.Fatalf("Explain(%s) = %v", d.ID, err)
				}
				if diff := cmp.Diff(we, ge); diff != "" {
					t.Errorf("Explain(%+v, %s) differs from the reference (-reference +implementation):\n%s", s, d.ID, diff)
				}
			}
		}
	})
}

// Scopes returns the scopes the suite resolves against the fixture: every
// kind and option.
func Scopes() []scope.Scope {
	addr := func(s ...string) []scope.Address {
		out := make([]scope.Address, len(s))
		for i, x := range s {
			a, err := scope.ParseAddress(x)
			if err != nil {
				panic(fmt.Sprintf("inventorytest: bad address %q: %v", x, err))
			}
			out[i] = a
		}
		return out
	}
	return []scope.Scope{
		{Kind: scope.Local, Device: "d-03"},
		{Kind: scope.Server},
		{Kind: scope.Group, Group: "g-root"},
		{Kind: scope.Group, Group: "g-root", DistributeToServers: true},
		{Kind: scope.Group, Group: "g-root", ExcludedGroups: []scope.GroupID{"g-a1", "g-b"}},
		{Kind: scope.Group, Group: "g-a", GroupOnly: true},
		{Kind: scope.Devices, Devices: []scope.DeviceID{"d-09", "d-01", "d-gone"}},
		{Kind: scope.Addresses, Addresses: addr("10.0.0.0/24", "2001:db8::/64", "pc-d-07", "pc-d-06.corp.example", "ghost")},
		{Kind: scope.Addresses, Addresses: addr("pc-d-10", "ghost.corp.example")},
		{Kind: scope.Selection, Selection: `device.os.platform == "windows" && device.software.exists(s, s.name == "Mozilla Firefox")`},
		{Kind: scope.Selection, Selection: `"X" in device.applications || "t-g-b" in device.tags`},
	}
}

func cmpID[T ~string](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
