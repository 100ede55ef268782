package scope_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
)

// exampleInventory is a small office: HQ with an Accounting subgroup and
// its Lab, and one device whose managing server is not known yet.
func exampleInventory() *inmem.Inventory {
	inv := inmem.New()
	_ = inv.PutGroups(context.Background(),
		scope.AdminGroup{ID: "g-hq", Name: "HQ"},
		scope.AdminGroup{ID: "g-acct", Parent: "g-hq", Name: "Accounting"},
		scope.AdminGroup{ID: "g-lab", Parent: "g-acct", Name: "Lab"},
	)
	primary := scope.ServerRef{ID: "ksc", Role: scope.Primary}
	win11 := &scope.OS{Name: "Windows 11 Pro", Platform: "windows"}
	_ = inv.PutDevices(context.Background(),
		scope.Device{ID: "d-1", NetBIOSName: "RECEPTION", GroupID: "g-hq", Server: primary, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.10")},
			OS: win11, Tags: []string{}, Applications: map[string]scope.AppState{}, Connected: true},
		scope.Device{ID: "d-2", NetBIOSName: "ACCT-01", GroupID: "g-acct", Server: primary, IPs: []netip.Addr{netip.MustParseAddr("10.0.1.20")},
			OS: win11, Tags: []string{"accounting"}, Applications: map[string]scope.AppState{}, Connected: true},
		scope.Device{ID: "d-3", NetBIOSName: "LAB-01", GroupID: "g-lab", Server: primary, IPs: []netip.Addr{netip.MustParseAddr("10.0.1.30")},
			OS: &scope.OS{Name: "Ubuntu", Platform: "linux"}, Tags: []string{"accounting"}, Applications: map[string]scope.AppState{}, Connected: true},
		scope.Device{ID: "d-4", NetBIOSName: "ACCT-02", GroupID: "g-acct", Server: scope.ServerRef{ID: "branch-7", Role: "regional"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.1.40")},
			OS: win11, Tags: []string{"accounting"}, Applications: map[string]scope.AppState{"X": {Installed: true, Running: true}}},
	)
	return inv
}

// A group task for HQ, distributed to subgroups (the default) except the
// Lab. The device whose managing Administration Server is unknown is
// neither included nor dropped: it is reported.
func ExampleResolve_group() {
	ctx := context.Background()
	s := scope.Scope{Kind: scope.Group, Group: "g-hq", ExcludedGroups: []scope.GroupID{"g-lab"}}
	res, err := scope.Resolve(ctx, s, exampleInventory())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("devices:", res.Devices)
	for _, u := range res.Unknown {
		fmt.Println("unknown:", u.ID, "-", u.Reason)
	}
	fmt.Println("runs on server:", s.RunsOnServer())
	// Output:
	// devices: [d-1 d-2]
	// unknown: d-4 - unknown fact device.server.role: unrecognized role "regional"
	// runs on server: false
}

// Excluding a group that is not a subgroup is an error naming the group.
func ExampleResolve_badExclusion() {
	s := scope.Scope{Kind: scope.Group, Group: "g-acct", ExcludedGroups: []scope.GroupID{"g-hq"}}
	_, err := scope.Resolve(context.Background(), s, exampleInventory())
	fmt.Println(err)
	// Output:
	// invalid excluded_groups[0] "g-hq": must be a strict subgroup of group "g-acct"
}

func ExampleExplain() {
	ctx := context.Background()
	inv := exampleInventory()
	s := scope.Scope{Kind: scope.Group, Group: "g-hq", ExcludedGroups: []scope.GroupID{"g-acct"}}
	for _, id := range []scope.DeviceID{"d-1", "d-3"} {
		e, err := scope.Explain(ctx, s, inv, id)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(e)
	}
	// Output:
	// d-1: in (group): the device is directly in group "HQ" (g-hq)
	// d-3: out (excluded_group): the device's group "Lab" (g-lab) is inside excluded group "Accounting" (g-acct) (excluded_groups[0])
}

// Importing a TXT list: every problem is reported at once, with its line,
// and nothing is imported until the file is clean.
func ExampleImportAddressList() {
	list := "# accounting PCs\r\n" +
		"ACCT-01\r\n" +
		"10.0.1.0/24\r\n" +
		"10.0.2.9-10.0.2.1\r\n" +
		"acct 03\r\n" +
		"10.0.3.0/33\r\n"
	_, err := scope.ImportAddressList(context.Background(), strings.NewReader(list), exampleInventory())
	if list, ok := err.(scope.ValidationErrors); ok {
		for _, e := range list {
			fmt.Printf("line %d: %s\n", e.Line, e.Reason)
		}
	}

	// Names must belong to devices the server already knows.
	_, err = scope.ImportAddressList(context.Background(), strings.NewReader("ACCT-01\nACCT-99\n"), exampleInventory())
	fmt.Println(err)
	// Output:
	// line 4: range is reversed: start 10.0.2.9 is after end 10.0.2.1
	// line 5: invalid character ' ' in NetBIOS name (allowed: letters, digits and -_!@#$%^&'(){}~)
	// line 6: subnet prefix length must be 0-32 for IPv4, 0-128 for IPv6
	// invalid value (line 2) "ACCT-99": no device with this name is in the inventory
}

// A device selection is evaluated by the server, on connected devices
// only; a device whose facts decide nothing is not silently dropped.
func ExampleCompileSelection() {
	inv := exampleInventory()
	s := scope.Scope{Kind: scope.Selection, SelectionName: "Windows 11 devices without application X",
		Selection: `device.os.name.startsWith("Windows 11") && !("X" in device.applications)`}
	res, err := scope.Resolve(context.Background(), s, inv)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("devices:", res.Devices, "runs on server:", s.RunsOnServer())

	_, err = scope.CompileSelection(`device.os.nmae == "Ubuntu"`)
	fmt.Println(err)
	// Output:
	// devices: [d-1 d-2] runs on server: true
	// invalid selection (column 10) "device.os.nmae == \"Ubuntu\"": undefined field 'nmae'
}

func ExampleParseAddress() {
	for _, s := range []string{"10.0.1.0/24", "10.0.0.1-10.0.0.50", "Acct-01", "PC7.Corp.Example.", "10.0.0.1/24"} {
		a, err := scope.ParseAddress(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(a.Kind, a)
	}
	// Output:
	// subnet 10.0.1.0/24
	// range 10.0.0.1-10.0.0.50
	// netbios ACCT-01
	// dns pc7.corp.example
	// invalid value "10.0.0.1/24": subnet has host bits set; the subnet is 10.0.0.0/24
}
