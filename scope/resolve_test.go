package scope_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
)

type bundle struct {
	ctx context.Context
	inv *inmem.Inventory
}

func ips(s ...string) []netip.Addr {
	out := []netip.Addr{}
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	return out
}

// setup builds a small inventory:
//
//	g-root "Root"              d-01
//	├─ g-hq "HQ"               d-02, d-09
//	│  ├─ g-acct "Accounting"  d-03, d-10
//	│  │  └─ g-lab "Lab"       d-04
//	│  └─ g-sales "Sales"      d-05 (secondary server), d-07 (unrecognized server role)
//	└─ g-branch "Branch"
//	   └─ g-vs "Virtual"       d-06 (virtual server)
//	unassigned                 d-08 (IP addresses unknown)
func setup(t *testing.T) bundle {
	t.Helper()
	inv := inmem.New()
	if err := inv.PutGroups(context.Background(),
		scope.AdminGroup{ID: "g-root", Name: "Root"},
		scope.AdminGroup{ID: "g-hq", Parent: "g-root", Name: "HQ"},
		scope.AdminGroup{ID: "g-acct", Parent: "g-hq", Name: "Accounting"},
		scope.AdminGroup{ID: "g-lab", Parent: "g-acct", Name: "Lab"},
		scope.AdminGroup{ID: "g-sales", Parent: "g-hq", Name: "Sales"},
		scope.AdminGroup{ID: "g-branch", Parent: "g-root", Name: "Branch"},
		scope.AdminGroup{ID: "g-vs", Parent: "g-branch", Name: "Virtual"},
	); err != nil {
		t.Fatal(err)
	}
	win11 := &scope.OS{Name: "Windows 11 Pro", Version: "23H2", Platform: "windows"}
	primary := scope.ServerRef{ID: "ksc-1", Role: scope.Primary}
	seen := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	dev := func(id, group string, addrs []netip.Addr, role scope.ServerRef) scope.Device {
		return scope.Device{ID: scope.DeviceID(id), GroupID: scope.GroupID(group), IPs: addrs, Server: role,
			NetBIOSName: strings.ToUpper("pc" + id[2:]), DNSName: "pc" + id[2:] + ".corp.example",
			Tags: []string{}, Software: []scope.Software{}, OS: win11, TimeZone: "Europe/Berlin",
			Applications: map[string]scope.AppState{}, LastSeen: seen, Connected: true}
	}
	d03 := dev("d-03", "g-acct", ips("10.0.2.3"), primary)
	d03.Tags = []string{"accounting"}
	d08 := dev("d-08", "", nil, scope.ServerRef{})
	d08.NetBIOSName = "UNASSIGNED8"
	d09 := dev("d-09", "g-hq", ips("2001:db8::9"), primary)
	d09.OS, d09.Connected = nil, false
	d10 := dev("d-10", "g-acct", ips("10.0.2.10"), primary)
	d10.Tags, d10.Connected = []string{"accounting"}, false
	if err := inv.PutDevices(context.Background(),
		dev("d-01", "g-root", ips("10.0.0.1"), primary),
		dev("d-02", "g-hq", ips("10.0.1.2"), primary),
		d03,
		dev("d-04", "g-lab", ips("10.0.2.4"), primary),
		dev("d-05", "g-sales", ips("10.0.3.5"), scope.ServerRef{ID: "ksc-2", Role: scope.Secondary}),
		dev("d-06", "g-vs", ips("10.0.4.6"), scope.ServerRef{ID: "ksc-v", Role: scope.Virtual}),
		dev("d-07", "g-sales", ips("10.0.3.7"), scope.ServerRef{ID: "ksc-?", Role: "regional"}),
		d08, d09, d10,
	); err != nil {
		t.Fatal(err)
	}
	return bundle{ctx: context.Background(), inv: inv}
}

func ids(s ...string) []scope.DeviceID {
	out := []scope.DeviceID{}
	for _, x := range s {
		out = append(out, scope.DeviceID(x))
	}
	return out
}

func TestResolve(t *testing.T) {
	t.Parallel()
	b := setup(t)
	roleUnknown := []scope.UnknownDevice{{ID: "d-07", Reason: `unknown fact device.server.role: unrecognized role "regional"`}}
	tests := []struct {
		name string
		s    scope.Scope
		want scope.Resolution
	}{
		{"local", scope.Scope{Kind: scope.Local, Device: "d-03"},
			scope.Resolution{Kind: scope.Local, Devices: ids("d-03")}},
		{"local deleted device", scope.Scope{Kind: scope.Local, Device: "d-99"},
			scope.Resolution{Kind: scope.Local, Devices: ids(), Missing: []scope.MissingRef{{Field: "device", Value: "d-99"}}}},
		{"server", scope.Scope{Kind: scope.Server},
			scope.Resolution{Kind: scope.Server, OnServer: true, Devices: ids()}},
		{"group with subgroups", scope.Scope{Kind: scope.Group, Group: "g-hq"},
			scope.Resolution{Kind: scope.Group, Devices: ids("d-02", "d-03", "d-04", "d-09", "d-10"), Unknown: roleUnknown}},
		{"group only", scope.Scope{Kind: scope.Group, Group: "g-hq", GroupOnly: true},
			scope.Resolution{Kind: scope.Group, Devices: ids("d-02", "d-09")}},
		{"group with exclusion", scope.Scope{Kind: scope.Group, Group: "g-hq", ExcludedGroups: []scope.GroupID{"g-acct"}},
			scope.Resolution{Kind: scope.Group, Devices: ids("d-02", "d-09"), Unknown: roleUnknown}},
		{"group with nested exclusions", scope.Scope{Kind: scope.Group, Group: "g-root", ExcludedGroups: []scope.GroupID{"g-lab", "g-sales", "g-acct"}},
			scope.Resolution{Kind: scope.Group, Devices: ids("d-01", "d-02", "d-09")}},
		{"group to secondary and virtual servers", scope.Scope{Kind: scope.Group, Group: "g-root", DistributeToServers: true},
			scope.Resolution{Kind: scope.Group, Devices: ids("d-01", "d-02", "d-03", "d-04", "d-05", "d-06", "d-07", "d-09", "d-10")}},
		{"group of a virtual server, not distributed", scope.Scope{Kind: scope.Group, Group: "g-branch"},
			scope.Resolution{Kind: scope.Group, Devices: ids()}},
		{"devices including unassigned", scope.Scope{Kind: scope.Devices, Devices: ids("d-08", "d-01", "d-77")},
			scope.Resolution{Kind: scope.Devices, Devices: ids("d-01", "d-08"), Missing: []scope.MissingRef{{Field: "devices[2]", Value: "d-77"}}}},
		{"addresses", scope.Scope{Kind: scope.Addresses, Addresses: mustAddrs(t, "10.0.2.0/24", "10.0.0.1-10.0.1.2", "unassigned8", "PC05.corp.example.", "ghost", "2001:db8::/64")},
			scope.Resolution{Kind: scope.Addresses, Devices: ids("d-01", "d-02", "d-03", "d-04", "d-05", "d-08", "d-09", "d-10"),
				Missing: []scope.MissingRef{{Field: "addresses[4]", Value: "GHOST"}}}},
		{"addresses with IP rules and unknown IPs", scope.Scope{Kind: scope.Addresses, Addresses: mustAddrs(t, "10.0.3.0/24")},
			scope.Resolution{Kind: scope.Addresses, Devices: ids("d-05", "d-07"), Unknown: []scope.UnknownDevice{{ID: "d-08", Reason: "unknown fact device.ips"}}}},
		{"addresses by name only", scope.Scope{Kind: scope.Addresses, Addresses: mustAddrs(t, "pc03", "pc03.corp.example", "pc04.corp.example", "nobody.example")},
			scope.Resolution{Kind: scope.Addresses, Devices: ids("d-03", "d-04"), Missing: []scope.MissingRef{{Field: "addresses[3]", Value: "nobody.example"}}}},
		{"selection", scope.Scope{Kind: scope.Selection, Selection: `"accounting" in device.tags || device.os.name.startsWith("Windows 12")`},
			scope.Resolution{Kind: scope.Selection, Devices: ids("d-03"), Offline: ids("d-10"), Unknown: []scope.UnknownDevice{{ID: "d-09", Reason: "unknown fact device.os"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, inv := range []scope.Inventory{b.inv, plain{inv: b.inv}, plain{inv: b.inv, reverse: true}} {
				got, err := scope.Resolve(b.ctx, tt.s, inv)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Fatalf("Resolve with %T (-want +got):\n%s", inv, diff)
				}
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name string
		s    scope.Scope
		want []fieldErr
	}{
		{"invalid scope", scope.Scope{Kind: scope.Group}, []fieldErr{{"group", "", "is required"}}},
		{"group missing", scope.Scope{Kind: scope.Group, Group: "g-gone"}, []fieldErr{{"group", "g-gone", "no such group"}}},
		{"excluded group not a subgroup", scope.Scope{Kind: scope.Group, Group: "g-hq", ExcludedGroups: []scope.GroupID{"g-acct", "g-branch", "g-root", "g-gone"}},
			[]fieldErr{
				{"excluded_groups[1]", "g-branch", `must be a strict subgroup of group "g-hq"`},
				{"excluded_groups[2]", "g-root", `must be a strict subgroup of group "g-hq"`},
				{"excluded_groups[3]", "g-gone", "no such group"},
			}},
		{"bad selection", scope.Scope{Kind: scope.Selection, Selection: "device.os"}, []fieldErr{{"selection", "device.os", "must evaluate to bool"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := scope.Resolve(b.ctx, tt.s, b.inv)
			matchErrs(t, fieldErrs(t, err), tt.want)
			_, err = scope.Explain(b.ctx, tt.s, b.inv, "d-01")
			matchErrs(t, fieldErrs(t, err), tt.want)
		})
	}
}

func TestValidateWith(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name string
		s    scope.Scope
		want []fieldErr
	}{
		{"ok group", scope.Scope{Kind: scope.Group, Group: "g-root", ExcludedGroups: []scope.GroupID{"g-lab"}}, nil},
		{"ok addresses", scope.Scope{Kind: scope.Addresses, Addresses: mustAddrs(t, "pc01", "pc02.corp.example", "10.9.9.9")}, nil},
		{"ok server", scope.Scope{Kind: scope.Server}, nil},
		{"structural errors first", scope.Scope{Kind: scope.Devices}, []fieldErr{{"devices", "", "at least one"}}},
		{"local missing", scope.Scope{Kind: scope.Local, Device: "d-99"}, []fieldErr{{"device", "d-99", "no such device"}}},
		{"excluded sibling", scope.Scope{Kind: scope.Group, Group: "g-acct", ExcludedGroups: []scope.GroupID{"g-sales"}},
			[]fieldErr{{"excluded_groups[0]", "g-sales", "strict subgroup"}}},
		{"devices missing", scope.Scope{Kind: scope.Devices, Devices: ids("d-01", "d-98", "d-99")},
			[]fieldErr{{"devices[1]", "d-98", "no such device"}, {"devices[2]", "d-99", "no such device"}}},
		{"names missing", scope.Scope{Kind: scope.Addresses, Addresses: mustAddrs(t, "pc01", "ghost", "10.0.0.0/8", "ghost.corp.example")},
			[]fieldErr{{"addresses[1]", "GHOST", "no device with this name"}, {"addresses[3]", "ghost.corp.example", "no device with this name"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, inv := range []scope.Inventory{b.inv, plain{inv: b.inv}} {
				matchErrs(t, fieldErrs(t, tt.s.ValidateWith(b.ctx, inv)), tt.want)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	type row struct {
		Device     scope.DeviceID
		Membership scope.Membership
		Rule       string
		Field      string
	}
	group := scope.Scope{Kind: scope.Group, Group: "g-hq", ExcludedGroups: []scope.GroupID{"g-lab"}}
	tests := []struct {
		s    scope.Scope
		want []row
	}{
		{group, []row{
			{"d-01", scope.Out, "other_group", "group"},
			{"d-02", scope.In, "group", "group"},
			{"d-03", scope.In, "subgroup", "group"},
			{"d-04", scope.Out, "excluded_group", "excluded_groups[0]"},
			{"d-05", scope.Out, "server_role", "distribute_to_servers"},
			{"d-06", scope.Out, "other_group", "group"},
			{"d-07", scope.Unknown, "unknown_fact", "distribute_to_servers"},
			{"d-08", scope.Out, "unassigned", "group"},
		}},
		{scope.Scope{Kind: scope.Group, Group: "g-hq", GroupOnly: true}, []row{
			{"d-02", scope.In, "group", "group"},
			{"d-03", scope.Out, "group_only", "group_only"},
		}},
		{scope.Scope{Kind: scope.Local, Device: "d-02"}, []row{
			{"d-02", scope.In, "local", "device"},
			{"d-03", scope.Out, "local", "device"},
		}},
		{scope.Scope{Kind: scope.Server}, []row{{"d-01", scope.Out, "server", ""}}},
		{scope.Scope{Kind: scope.Devices, Devices: ids("d-05", "d-08")}, []row{
			{"d-08", scope.In, "device_list", "devices[1]"},
			{"d-01", scope.Out, "device_list", ""},
		}},
		{scope.Scope{Kind: scope.Addresses, Addresses: mustAddrs(t, "pc01", "pc02.corp.example", "10.0.2.0/24")}, []row{
			{"d-01", scope.In, "address", "addresses[0]"},
			{"d-02", scope.In, "address", "addresses[1]"},
			{"d-03", scope.In, "address", "addresses[2]"},
			{"d-05", scope.Out, "no_address", "addresses"},
			{"d-08", scope.Unknown, "unknown_fact", "addresses"},
		}},
		{scope.Scope{Kind: scope.Selection, Selection: `"accounting" in device.tags && device.os.platform == "windows"`}, []row{
			{"d-03", scope.In, "selection", "selection"},
			{"d-10", scope.Out, "offline", "selection"},
			{"d-01", scope.Out, "selection", "selection"},
		}},
		{scope.Scope{Kind: scope.Selection, Selection: `device.os.platform == "windows"`}, []row{
			{"d-09", scope.Unknown, "unknown_fact", "selection"},
		}},
	}
	for _, tt := range tests {
		for _, w := range tt.want {
			e, err := scope.Explain(b.ctx, tt.s, b.inv, w.Device)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(w, row{e.Device, e.Membership, e.Rule, e.Field}); diff != "" {
				t.Errorf("Explain(%s, %s) (-want +got):\n%s\nreason: %s", tt.s.Kind, w.Device, diff, e.Reason)
			}
			if e.Reason == "" || !strings.Contains(e.String(), e.Reason) {
				t.Errorf("Explain(%s, %s): empty reason or String() %q", tt.s.Kind, w.Device, e)
			}
		}
	}
	e, _ := scope.Explain(b.ctx, group, b.inv, "d-04")
	if want := `the device's group "Lab" (g-lab) is excluded (excluded_groups[0])`; e.Reason != want {
		t.Errorf("exclusion reason = %q, want %q", e.Reason, want)
	}
	e, _ = scope.Explain(b.ctx, scope.Scope{Kind: scope.Group, Group: "g-root", ExcludedGroups: []scope.GroupID{"g-hq"}}, b.inv, "d-04")
	if want := `the device's group "Lab" (g-lab) is inside excluded group "HQ" (g-hq) (excluded_groups[0])`; e.Reason != want {
		t.Errorf("nested exclusion reason = %q, want %q", e.Reason, want)
	}
	e, _ = scope.Explain(b.ctx, scope.Scope{Kind: scope.Group, Group: "g-root"}, b.inv, "d-04")
	if want := `the device's group "Lab" (g-lab) is a subgroup of "Root" (g-root) (path "Root" (g-root) / "HQ" (g-hq) / "Accounting" (g-acct) / "Lab" (g-lab))`; e.Reason != want {
		t.Errorf("subgroup reason = %q, want %q", e.Reason, want)
	}
	e, _ = scope.Explain(b.ctx, scope.Scope{Kind: scope.Addresses, Addresses: mustAddrs(t, "10.0.2.0/24")}, b.inv, "d-03")
	if want := `addresses[0] 10.0.2.0/24 contains the device's IP address 10.0.2.3`; e.Reason != want {
		t.Errorf("address reason = %q, want %q", e.Reason, want)
	}
	if _, err := scope.Explain(b.ctx, group, b.inv, "d-404"); !errors.Is(err, scope.ErrNotFound) {
		t.Errorf("Explain of a missing device: error = %v, want ErrNotFound", err)
	}
}

func TestImportAddressList(t *testing.T) {
	t.Parallel()
	b := setup(t)
	got, err := scope.ImportAddressList(b.ctx, strings.NewReader("pc01\r\n10.0.0.0/8\r\npc02.corp.example\r\n"), b.inv)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].String() != "PC01" {
		t.Fatalf("ImportAddressList = %v", got)
	}
	in := "pc01\nghost\n# comment\n10.0.0.300\nghost.corp.example\n"
	for _, inv := range []scope.Inventory{b.inv, plain{inv: b.inv}} {
		got, err = scope.ImportAddressList(b.ctx, strings.NewReader(in), inv)
		if got != nil {
			t.Fatalf("addresses = %v, want nil (nothing half-imported)", got)
		}
		var list scope.ValidationErrors
		if !errors.As(err, &list) {
			t.Fatalf("error = %v, want ValidationErrors", err)
		}
		var lines []string
		for _, e := range list {
			lines = append(lines, fmt.Sprintf("%d %s %s", e.Line, e.Value, e.Reason))
		}
		want := []string{
			"4 10.0.0.300 not a valid IPv4 or IPv6 address",
		}
		// A malformed list is reported before names are looked up.
		if diff := cmp.Diff(want, lines); diff != "" {
			t.Fatalf("errors (-want +got):\n%s", diff)
		}
		got, err = scope.ImportAddressList(b.ctx, strings.NewReader(strings.ReplaceAll(in, "10.0.0.300", "10.0.0.3")), inv)
		if got != nil || !errors.As(err, &list) {
			t.Fatalf("ImportAddressList = %v, %v", got, err)
		}
		lines = nil
		for _, e := range list {
			lines = append(lines, fmt.Sprintf("%d %s %s", e.Line, e.Value, e.Reason))
		}
		want = []string{
			"2 GHOST no device with this name is in the inventory",
			"5 ghost.corp.example no device with this name is in the inventory",
		}
		if diff := cmp.Diff(want, lines); diff != "" {
			t.Fatalf("errors (-want +got):\n%s", diff)
		}
	}
}

func TestResolveCancelledAndFailingInventory(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, s := range []scope.Scope{
		{Kind: scope.Group, Group: "g-root"},
		{Kind: scope.Addresses, Addresses: mustAddrs(t, "10.0.0.0/8")},
		{Kind: scope.Selection, Selection: "true"},
		{Kind: scope.Devices, Devices: ids("d-01")},
	} {
		if _, err := scope.Resolve(ctx, s, b.inv); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: error = %v", s.Kind, err)
		}
		if _, err := scope.Resolve(b.ctx, s, failing{}); !errors.Is(err, errBackend) {
			t.Errorf("%s with a failing inventory: error = %v, want the backend's error wrapped", s.Kind, err)
		}
	}
	if err := (scope.Scope{Kind: scope.Local, Device: "d-01"}).ValidateWith(b.ctx, failing{}); !errors.Is(err, errBackend) {
		t.Errorf("ValidateWith with a failing inventory: error = %v", err)
	}
	if _, err := scope.ImportAddressList(b.ctx, strings.NewReader("pc01"), failing{}); !errors.Is(err, errBackend) {
		t.Errorf("ImportAddressList with a failing inventory: error = %v", err)
	}
}

// TestResolveAgreesWithExplain is a property test on random inventories
// and scopes: every device's Explain membership agrees with Resolve, the
// fast paths (inmem) agree with the plain four-method path, and results
// are sorted and free of duplicates.
func TestResolveAgreesWithExplain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for seed := range uint64(12) {
		r := rand.New(rand.NewPCG(seed, 99))
		inv := inmem.New()
		const ngroups, ndevices = 30, 150
		for i := range ngroups {
			g := scope.AdminGroup{ID: scope.GroupID(fmt.Sprintf("g%02d", i)), Name: fmt.Sprint("G", i)}
			if i > 0 {
				g.Parent = scope.GroupID(fmt.Sprintf("g%02d", r.IntN(i)))
			}
			if err := inv.PutGroups(ctx, g); err != nil {
				t.Fatal(err)
			}
		}
		roles := []scope.ServerRole{scope.Primary, scope.Primary, scope.Primary, scope.Secondary, scope.Virtual, "", "tertiary"}
		for i := range ndevices {
			d := scope.Device{ID: scope.DeviceID(fmt.Sprintf("d%03d", r.IntN(1000))), Connected: r.IntN(3) > 0,
				Server: scope.ServerRef{ID: "s", Role: roles[r.IntN(len(roles))]}}
			if r.IntN(8) > 0 {
				d.GroupID = scope.GroupID(fmt.Sprintf("g%02d", r.IntN(ngroups)))
			}
			if r.IntN(5) > 0 {
				d.IPs = ips(fmt.Sprintf("10.0.%d.%d", r.IntN(4), r.IntN(256)))
			}
			if r.IntN(4) > 0 {
				d.NetBIOSName = fmt.Sprintf("PC%d", i)
			}
			if r.IntN(4) > 0 {
				d.Tags = []string{[]string{"a", "b", "c"}[r.IntN(3)]}
			}
			if r.IntN(4) > 0 {
				d.OS = &scope.OS{Platform: []string{"windows", "linux", ""}[r.IntN(3)]}
			}
			if err := inv.PutDevices(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		var scopes []scope.Scope
		for range 15 {
			g := fmt.Sprintf("g%02d", r.IntN(ngroups/3))
			s := scope.Scope{Kind: scope.Group, Group: scope.GroupID(g), DistributeToServers: r.IntN(2) == 0}
			tree, _ := inv.Groups(ctx)
			for _, x := range tree {
				if r.IntN(6) == 0 && isStrictSub(tree, s.Group, x.ID) {
					s.ExcludedGroups = append(s.ExcludedGroups, x.ID)
				}
			}
			if len(s.ExcludedGroups) == 0 && !s.DistributeToServers && r.IntN(2) == 0 {
				s.GroupOnly = true
			}
			scopes = append(scopes, s)
			var addrs []string
			for range 1 + r.IntN(4) {
				switch r.IntN(3) {
				case 0:
					addrs = append(addrs, fmt.Sprintf("10.0.%d.0/%d", r.IntN(4), 24+r.IntN(8)*0))
				case 1:
					lo := r.IntN(200)
					addrs = append(addrs, fmt.Sprintf("10.0.%d.%d-10.0.%d.%d", r.IntN(4), lo, r.IntN(4)+4, lo+r.IntN(50)))
				case 2:
					addrs = append(addrs, fmt.Sprintf("PC%d", r.IntN(ndevices)))
				}
			}
			scopes = append(scopes,
				scope.Scope{Kind: scope.Addresses, Addresses: mustAddrs(t, addrs...)},
				scope.Scope{Kind: scope.Selection, Selection: []string{
					`"a" in device.tags || device.os.platform == "linux"`,
					`device.connected && "b" in device.tags`,
					`has(device.os) && device.os.platform == "windows"`,
				}[r.IntN(3)]},
			)
		}
		var all []scope.DeviceID
		for d := range inv.Devices(ctx) {
			all = append(all, d.ID)
		}
		for _, s := range scopes {
			res, err := scope.Resolve(ctx, s, inv)
			if err != nil {
				t.Fatalf("seed %d: Resolve(%+v) = %v", seed, s, err)
			}
			slow, err := scope.Resolve(ctx, s, plain{inv: inv, reverse: true})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(res, slow); diff != "" {
				t.Fatalf("seed %d: %+v: fast and plain paths differ (-fast +plain):\n%s", seed, s, diff)
			}
			if !slices.IsSorted(res.Devices) || len(slices.Compact(slices.Clone(res.Devices))) != len(res.Devices) {
				t.Fatalf("seed %d: Devices not sorted and unique: %v", seed, res.Devices)
			}
			unknown := map[scope.DeviceID]string{}
			for _, u := range res.Unknown {
				unknown[u.ID] = u.Reason
			}
			for _, id := range all {
				e, err := scope.Explain(ctx, s, inv, id)
				if err != nil {
					t.Fatal(err)
				}
				want := scope.Out
				if slices.Contains(res.Devices, id) {
					want = scope.In
				} else if _, ok := unknown[id]; ok {
					want = scope.Unknown
				}
				if e.Membership != want {
					t.Fatalf("seed %d: scope %+v device %s: Explain = %s (%s), Resolve says %s", seed, s, id, e.Membership, e.Reason, want)
				}
				if want == scope.Unknown && !strings.Contains(e.Reason, unknown[id]) {
					t.Fatalf("seed %d: device %s: Explain reason %q does not name Resolve's %q", seed, id, e.Reason, unknown[id])
				}
				if slices.Contains(res.Offline, id) != (e.Rule == "offline") {
					t.Fatalf("seed %d: device %s: Offline and Explain rule %q disagree", seed, id, e.Rule)
				}
			}
		}
	}
}

func isStrictSub(tree []scope.AdminGroup, anc, g scope.GroupID) bool {
	parent := map[scope.GroupID]scope.GroupID{}
	for _, x := range tree {
		parent[x.ID] = x.Parent
	}
	for p := parent[g]; p != ""; p = parent[p] {
		if p == anc {
			return true
		}
	}
	return false
}

// plain hides the optional interfaces of an inventory, and can yield
// devices in the wrong (descending) order to check that Resolve still
// returns sorted results.
type plain struct {
	inv     scope.Inventory
	reverse bool
}

func (p plain) Device(ctx context.Context, id scope.DeviceID) (*scope.Device, error) {
	return p.inv.Device(ctx, id)
}

func (p plain) Group(ctx context.Context, id scope.GroupID) (*scope.AdminGroup, error) {
	return p.inv.Group(ctx, id)
}

func (p plain) Groups(ctx context.Context) ([]scope.AdminGroup, error) { return p.inv.Groups(ctx) }

func (p plain) Devices(ctx context.Context) iter.Seq2[*scope.Device, error] {
	if !p.reverse {
		return p.inv.Devices(ctx)
	}
	return func(yield func(*scope.Device, error) bool) {
		var all []*scope.Device
		for d, err := range p.inv.Devices(ctx) {
			if err != nil {
				yield(nil, err)
				return
			}
			all = append(all, d)
		}
		for i := len(all) - 1; i >= 0; i-- {
			if !yield(all[i], nil) {
				return
			}
		}
	}
}

var errBackend = errors.New("backend down")

// failing is an inventory whose every call fails.
type failing struct{}

func (failing) Device(context.Context, scope.DeviceID) (*scope.Device, error) { return nil, errBackend }
func (failing) Group(context.Context, scope.GroupID) (*scope.AdminGroup, error) {
	return nil, errBackend
}
func (failing) Groups(context.Context) ([]scope.AdminGroup, error) { return nil, errBackend }
func (failing) Devices(context.Context) iter.Seq2[*scope.Device, error] {
	return func(yield func(*scope.Device, error) bool) { yield(nil, errBackend) }
}

func TestUnrecognizedServerRoleIsUnknown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := b.inv.PutDevices(context.Background(), scope.Device{ID: "d-11", GroupID: "g-lab", Server: scope.ServerRef{ID: "x", Role: "tertiary"}}); err != nil {
		t.Fatal(err)
	}
	s := scope.Scope{Kind: scope.Group, Group: "g-lab"}
	res, err := scope.Resolve(b.ctx, s, b.inv)
	if err != nil {
		t.Fatal(err)
	}
	want := scope.Resolution{Kind: scope.Group, Devices: ids("d-04"),
		Unknown: []scope.UnknownDevice{{ID: "d-11", Reason: `unknown fact device.server.role: unrecognized role "tertiary"`}}}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Fatalf("Resolve (-want +got):\n%s", diff)
	}
	e, err := scope.Explain(b.ctx, s, b.inv, "d-11")
	if err != nil || e.Membership != scope.Unknown || !strings.Contains(e.Reason, `unrecognized role "tertiary"`) {
		t.Fatalf("Explain = %v, %v", e, err)
	}
	// Distributed to all servers, the role does not matter.
	s.DistributeToServers = true
	if res, _ = scope.Resolve(b.ctx, s, b.inv); !cmp.Equal(res.Devices, ids("d-04", "d-11")) || res.Unknown != nil {
		t.Fatalf("with distribute_to_servers: %+v", res)
	}
}

// A host without a server hierarchy leaves Server zero: its devices are the
// primary server's, in group scopes and in selections alike; only a role
// outside the documented three is unknown.
func TestZeroServerRefIsThePrimaryServer(t *testing.T) {
	t.Parallel()
	inv := inmem.New()
	if err := inv.PutGroups(context.Background(), scope.AdminGroup{ID: "g", Name: "G"}); err != nil {
		t.Fatal(err)
	}
	if err := inv.PutDevices(context.Background(),
		scope.Device{ID: "plain", GroupID: "g", Connected: true},
		scope.Device{ID: "second", GroupID: "g", Connected: true, Server: scope.ServerRef{ID: "s2", Role: scope.Secondary}},
		scope.Device{ID: "odd", GroupID: "g", Connected: true, Server: scope.ServerRef{ID: "s3", Role: "regional"}},
	); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := scope.Resolve(ctx, scope.Scope{Kind: scope.Group, Group: "g"}, inv)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]scope.DeviceID{"plain"}, res.Devices); d != "" || len(res.Unknown) != 1 || res.Unknown[0].ID != "odd" {
		t.Fatalf("devices (-want +got):\n%s\nunknown %+v", d, res.Unknown)
	}
	sel, err := scope.Resolve(ctx, scope.Scope{Kind: scope.Selection, Selection: `device.server.role == "primary"`}, inv)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]scope.DeviceID{"plain"}, sel.Devices); d != "" {
		t.Fatalf("selection (-want +got):\n%s", d)
	}
}
