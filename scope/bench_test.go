package scope_test

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
)

// The fleet of the bar: 1,000,000 devices in a 10,000-group tree.
const (
	benchDevices = 1_000_000
	benchGroups  = 10_000
)

type fleet struct {
	inv            *inmem.Inventory
	bytesPerDevice float64
}

var (
	fleetOnce sync.Once
	theFleet  fleet
)

func benchGroupID(i int) scope.GroupID { return scope.GroupID(fmt.Sprintf("g%05d", i)) }

// benchFleet builds the shared fleet once: a 10-ary group tree (group i's
// parent is (i-1)/10), device i in group i%10000 with IPv4 address
// 10.x.y.z = 10.0.0.0 + i, a unique NetBIOS and DNS name, and software, OS,
// application and tag facts shared from small pools (as a real inventory
// interns them). One device in 100 has no OS facts and one in 100 is
// managed by a secondary server.
func benchFleet(tb testing.TB) *inmem.Inventory {
	fleetOnce.Do(func() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		inv := inmem.New()
		groups := make([]scope.AdminGroup, benchGroups)
		for i := range groups {
			groups[i] = scope.AdminGroup{ID: benchGroupID(i), Name: fmt.Sprintf("Group %d", i)}
			if i > 0 {
				groups[i].Parent = benchGroupID((i - 1) / 10)
			}
		}
		if err := inv.PutGroups(context.Background(), groups...); err != nil {
			panic(err)
		}
		oses := []*scope.OS{
			{Name: "Windows 11 Pro", Version: "23H2", Build: "22631", Platform: "windows"},
			{Name: "Windows 10 Pro", Version: "22H2", Build: "19045", Platform: "windows"},
			{Name: "Ubuntu", Version: "24.04", Platform: "linux"},
			{Name: "macOS", Version: "15.1", Platform: "macos"},
		}
		softs := [][]scope.Software{
			{{Name: "Mozilla Firefox", Version: "115.0", Vendor: "Mozilla"}, {Name: "7-Zip", Version: "23.01", Vendor: "Igor Pavlov"}},
			{{Name: "Mozilla Firefox", Version: "130.0", Vendor: "Mozilla"}},
			{{Name: "LibreOffice", Version: "24.2", Vendor: "The Document Foundation"}, {Name: "X", Version: "1.0", Vendor: "X Corp"}},
			{},
		}
		apps := []map[string]scope.AppState{
			{"Kaspersky Endpoint Security": {Installed: true, Running: true}},
			{"Kaspersky Endpoint Security": {Installed: true, Running: false}, "X": {Installed: true, Running: true}},
			{},
		}
		tags := [][]string{{"accounting"}, {"sales", "berlin"}, {}}
		seen := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		devs := make([]scope.Device, benchDevices)
		for i := range devs {
			d := &devs[i]
			d.ID = scope.DeviceID(fmt.Sprintf("d%07d", i))
			d.NetBIOSName = fmt.Sprintf("PC%07d", i)
			d.DNSName = fmt.Sprintf("pc%07d.corp.example", i)
			d.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}
			d.GroupID = benchGroupID(i % benchGroups)
			d.Tags = tags[i%len(tags)]
			d.Software = softs[i%len(softs)]
			if i%100 != 99 {
				d.OS = oses[i%len(oses)]
			}
			d.TimeZone = "Europe/Berlin"
			d.Applications = apps[i%len(apps)]
			d.LastSeen = seen
			d.Connected = i%10 != 0
			d.Server = scope.ServerRef{ID: "ksc-1", Role: scope.Primary}
			if i%100 == 42 {
				d.Server = scope.ServerRef{ID: "ksc-2", Role: scope.Secondary}
			}
		}
		if err := inv.PutDevices(context.Background(), devs...); err != nil {
			panic(err)
		}
		devs = nil
		// Build the sorted snapshot now, so it is counted and timed here.
		for range inv.Devices(context.Background()) {
			break
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		theFleet = fleet{inv: inv, bytesPerDevice: float64(after.HeapAlloc-before.HeapAlloc) / benchDevices}
	})
	return theFleet.inv
}

// reportCPU reports the process CPU time per operation as cpu-ms/op; call
// as `defer reportCPU(b)()` right before the loop.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(processCPU()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		}
	}
}

// BenchmarkInventoryMemory reports the heap the in-memory inventory holds
// per device of the benchmark fleet (runtime.MemStats before and after).
func BenchmarkInventoryMemory(b *testing.B) {
	benchFleet(b)
	for b.Loop() {
	}
	b.ReportMetric(theFleet.bytesPerDevice, "B/device")
}

// Bar: <= 50 ms.
func BenchmarkResolveGroup1MWith100Exclusions(b *testing.B) {
	inv := benchFleet(b)
	s := scope.Scope{Kind: scope.Group, Group: benchGroupID(0)}
	for i := 111; i < 211; i++ { // 100 depth-3 groups with their subtrees
		s.ExcludedGroups = append(s.ExcludedGroups, benchGroupID(i))
	}
	ctx := context.Background()
	var n int
	defer reportCPU(b)()
	for b.Loop() {
		r, err := scope.Resolve(ctx, s, inv)
		if err != nil {
			b.Fatal(err)
		}
		n = len(r.Devices)
	}
	b.ReportMetric(float64(n), "devices")
}

// Bar: <= 100 ms.
func BenchmarkResolveAddresses1000Rules1M(b *testing.B) {
	inv := benchFleet(b)
	s := scope.Scope{Kind: scope.Addresses}
	for i := range 1000 {
		var text string
		base := i * 997 // spread over the fleet's 10.0.0.0/12
		if i%2 == 0 {
			text = fmt.Sprintf("10.%d.%d.0/24", base>>8&15, base&255)
		} else {
			text = fmt.Sprintf("10.%d.%d.1-10.%d.%d.100", base>>8&15, base&255, base>>8&15, base&255)
		}
		a, err := scope.ParseAddress(text)
		if err != nil {
			b.Fatal(err)
		}
		s.Addresses = append(s.Addresses, a)
	}
	ctx := context.Background()
	var n int
	defer reportCPU(b)()
	for b.Loop() {
		r, err := scope.Resolve(ctx, s, inv)
		if err != nil {
			b.Fatal(err)
		}
		n = len(r.Devices)
	}
	b.ReportMetric(float64(n), "devices")
}

// Bar: <= 1 s on 2 cores.
func BenchmarkResolveSelection1M(b *testing.B) {
	inv := benchFleet(b)
	s := scope.Scope{Kind: scope.Selection, Selection: `device.os.name.startsWith("Windows 11") && !("X" in device.applications) && "accounting" in device.tags`}
	ctx := context.Background()
	var n, u int
	defer reportCPU(b)()
	for b.Loop() {
		r, err := scope.Resolve(ctx, s, inv)
		if err != nil {
			b.Fatal(err)
		}
		n, u = len(r.Devices), len(r.Unknown)
	}
	b.ReportMetric(float64(n), "devices")
	b.ReportMetric(float64(u), "unknown")
}

func BenchmarkResolveSelectionSoftware1M(b *testing.B) {
	inv := benchFleet(b)
	s := scope.Scope{Kind: scope.Selection, Selection: `device.software.exists(s, s.name == "Mozilla Firefox" && s.version.startsWith("115."))`}
	ctx := context.Background()
	var n int
	defer reportCPU(b)()
	for b.Loop() {
		r, err := scope.Resolve(ctx, s, inv)
		if err != nil {
			b.Fatal(err)
		}
		n = len(r.Devices)
	}
	b.ReportMetric(float64(n), "devices")
}

// BenchmarkInventoryMemoryUniqueFacts reports the heap per device when no
// facts are shared: every device of a 100,000-device inventory has its own
// 20-entry software list, tags, OS and application map (the benchmark
// fleet above shares them from pools, as an inventory that interns facts
// would).
func BenchmarkInventoryMemoryUniqueFacts(b *testing.B) {
	const n = 100_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	inv := inmem.New()
	if err := inv.PutGroups(context.Background(), scope.AdminGroup{ID: "g"}); err != nil {
		b.Fatal(err)
	}
	devs := make([]scope.Device, n)
	for i := range devs {
		sw := make([]scope.Software, 20)
		for j := range sw {
			sw[j] = scope.Software{Name: fmt.Sprintf("Product %d", (i+j)%500), Version: fmt.Sprintf("%d.%d", j, i%10), Vendor: fmt.Sprintf("Vendor %d", j)}
		}
		devs[i] = scope.Device{
			ID: scope.DeviceID(fmt.Sprintf("d%07d", i)), NetBIOSName: fmt.Sprintf("PC%07d", i), DNSName: fmt.Sprintf("pc%07d.corp.example", i),
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}, GroupID: "g",
			Tags: []string{fmt.Sprintf("tag-%d", i%50)}, Software: sw,
			OS:           &scope.OS{Name: "Windows 11 Pro", Version: "23H2", Build: "22631", Platform: "windows"},
			TimeZone:     "Europe/Berlin",
			Applications: map[string]scope.AppState{"Kaspersky Endpoint Security": {Installed: true, Running: true}},
			LastSeen:     time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Connected: true,
			Server: scope.ServerRef{ID: "ksc-1", Role: scope.Primary},
		}
	}
	if err := inv.PutDevices(context.Background(), devs...); err != nil {
		b.Fatal(err)
	}
	devs = nil
	for range inv.Devices(context.Background()) {
		break
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(inv)
	for b.Loop() {
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/device")
}
