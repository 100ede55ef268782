package scope

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"cel.dev/cel-go/cel"
)

// TestSelectionCostAtFactLimits checks that the static cost estimate
// CompileSelection enforces is a true bound for a device whose facts are
// at the inventory limits (every string MaxFactLength bytes): the actual
// cost of each accepted selection, measured by CEL's cost tracker, is at
// most its estimate, and the estimate at most MaxSelectionCost.
func TestSelectionCostAtFactLimits(t *testing.T) {
	t.Parallel()
	d := deviceAtFactLimits()
	exprs := costSelections()
	env, err := celEnv()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, expr := range exprs {
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatalf("%s: %v", expr, iss.Err())
		}
		est, err := env.EstimateCost(ast, sizeBounds{})
		if err != nil {
			t.Fatal(err)
		}
		if est.Max > MaxSelectionCost {
			continue // CompileSelection refuses it
		}
		prg, err := env.Program(ast, cel.CostTracking(nil))
		if err != nil {
			t.Fatal(err)
		}
		checked++
		_, det, _ := prg.Eval(deviceActivation{d})
		if got := *det.ActualCost(); got > est.Max {
			t.Errorf("%s: actual cost %d at the fact limits exceeds the estimate %d", expr, got, est.Max)
		}
	}
	if checked < 12 {
		t.Fatalf("only %d of %d selections were within the cost limit", checked, len(exprs))
	}
}

// deviceAtFactLimits has every string fact at MaxFactLength bytes.
func deviceAtFactLimits() *Device {
	s := func(c byte) string { return strings.Repeat(string(c), MaxFactLength) }
	d := &Device{
		ID: DeviceID(s('i')), NetBIOSName: s('n'), DNSName: s('d'), GroupID: GroupID(s('g')), TimeZone: s('z'),
		IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, OS: &OS{Name: s('o'), Version: s('v'), Build: s('b'), Platform: s('p')},
		Server: ServerRef{ID: s('s'), Role: Secondary}, Connected: true,
	}
	for i := 0; i < 64; i++ {
		d.Tags = append(d.Tags, strings.Repeat(strconv.Itoa(i%10), MaxFactLength))
		d.Software = append(d.Software, Software{Name: s('a' + byte(i%26)), Version: s('1'), Vendor: s('V')})
	}
	d.Applications = map[string]AppState{s('A'): {Installed: true}, s('B'): {}}
	return d
}

// costSelections are selections whose cost grows fast with fact sizes,
// and the example selections.
func costSelections() []string {
	exprs := []string{
		`device.os.name.split("").exists(a, device.os.name.split("").exists(b, a + b == "zz"))`,
		`device.os.name.split("").exists(a, device.os.name.contains(a + "zz"))`,
		`device.os.name.split("").exists(a, device.os.name.indexOf(a+a) < 0)`,
		`device.os.name.split("").map(a, device.os.name).exists(s, s.contains("zz"))`,
		`device.tags.exists(a, device.tags.exists(b, a + b == device.os.name))`,
		`device.software.exists(x, x.name.split("").exists(c, x.vendor.contains(c + c)))`,
		`device.applications.exists(k, k.split("").exists(c, device.dns_name.contains(c)))`,
		`device.id.split("").exists(c, device.group.contains(c + device.time_zone))`,
		`(device.netbios_name + device.dns_name + device.server.id).split("").size() == 3`,
		`device.os.name.lowerAscii().replace("o", "oo").size() < 3`,
	}
	for _, n := range ExampleSelections() {
		exprs = append(exprs, n.Expr)
	}
	return exprs
}

// FuzzSelectionCostAtFactLimits: for any selection CompileSelection
// accepts, the actual cost on a device at the fact limits is within the
// estimate (so within MaxSelectionCost).
func FuzzSelectionCostAtFactLimits(f *testing.F) {
	for _, e := range costSelections() {
		f.Add(e)
	}
	d := deviceAtFactLimits()
	env, err := celEnv()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		if _, err := CompileSelection(expr); err != nil {
			return
		}
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatalf("accepted %q does not compile: %v", expr, iss.Err())
		}
		est, err := env.EstimateCost(ast, sizeBounds{})
		if err != nil {
			t.Fatal(err)
		}
		prg, err := env.Program(ast, cel.CostTracking(nil))
		if err != nil {
			t.Fatal(err)
		}
		_, det, _ := prg.Eval(deviceActivation{d})
		if got := *det.ActualCost(); got > est.Max || got > MaxSelectionCost {
			t.Fatalf("%s: actual cost %d, estimate %d", expr, got, est.Max)
		}
	})
}
