package scope_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
)

// quadraticOSName is a selection the compiler accepts (its worst case,
// estimated with device.os.name at MaxFactLength bytes, is under
// MaxSelectionCost) whose real cost grows with the square of the name's
// length: with a 4 KiB name one evaluation took 20 s (issue #14 item 4
// saw 256 MiB and 1.5 s with a 16 KiB name and another such selection).
const quadraticOSName = `device.os.name.split("").exists(a, device.os.name.split("").exists(b, a + b == "zz"))`

// TestDeviceFactLimits checks CheckDeviceFacts at and just over every
// documented limit.
func TestDeviceFactLimits(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", scope.MaxFactLength+1)
	atLimit := strings.Repeat("x", scope.MaxFactLength)
	max := fullDevice()
	max.OS.Name, max.NetBIOSName, max.Tags = atLimit, atLimit, make([]string, scope.MaxFactListLength)
	if err := scope.CheckDeviceFacts(max); err != nil {
		t.Fatalf("a device at the limits: %v", err)
	}
	tests := []struct {
		name  string
		edit  func(d *scope.Device)
		field string
	}{
		{"id", func(d *scope.Device) { d.ID = scope.DeviceID(long) }, "id"},
		{"group", func(d *scope.Device) { d.GroupID = scope.GroupID(long) }, "group_id"},
		{"netbios", func(d *scope.Device) { d.NetBIOSName = long }, "netbios_name"},
		{"dns", func(d *scope.Device) { d.DNSName = long }, "dns_name"},
		{"zone", func(d *scope.Device) { d.TimeZone = long }, "time_zone"},
		{"server id", func(d *scope.Device) { d.Server.ID = long }, "server.id"},
		{"server role", func(d *scope.Device) { d.Server.Role = scope.ServerRole(long) }, "server.role"},
		{"os name", func(d *scope.Device) { d.OS.Name = long }, "os.name"},
		{"os version", func(d *scope.Device) { d.OS.Version = long }, "os.version"},
		{"os build", func(d *scope.Device) { d.OS.Build = long }, "os.build"},
		{"os platform", func(d *scope.Device) { d.OS.Platform = long }, "os.platform"},
		{"tag", func(d *scope.Device) { d.Tags[1] = long }, "tags[1]"},
		{"software name", func(d *scope.Device) { d.Software[1].Name = long }, "software[1].name"},
		{"software version", func(d *scope.Device) { d.Software[0].Version = long }, "software[0].version"},
		{"software vendor", func(d *scope.Device) { d.Software[0].Vendor = long }, "software[0].vendor"},
		{"application name", func(d *scope.Device) { d.Applications[long] = scope.AppState{} }, "applications"},
		{"tags count", func(d *scope.Device) { d.Tags = make([]string, scope.MaxFactListLength+1) }, "tags"},
		{"software count", func(d *scope.Device) { d.Software = make([]scope.Software, scope.MaxFactListLength+1) }, "software"},
		{"ips count", func(d *scope.Device) { d.IPs = make([]netip.Addr, scope.MaxFactListLength+1) }, "ips"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := fullDevice()
			tt.edit(d)
			err := scope.CheckDeviceFacts(d)
			if !errors.Is(err, scope.ErrInvalid) {
				t.Fatalf("error = %v, want ErrInvalid", err)
			}
			var ve *scope.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field {
				t.Fatalf("error = %v, want field %q", err, tt.field)
			}
			if len(err.Error()) > 1000 {
				t.Errorf("error is %d bytes long", len(err.Error()))
			}
		})
	}
}

// TestPutDevicesRejectsOversizeDevice: a device whose facts exceed the
// inventory limits is refused with a typed error naming it, and its good
// neighbours in the same call are stored.
func TestPutDevicesRejectsOversizeDevice(t *testing.T) {
	t.Parallel()
	inv := inmem.New()
	hostile := scope.Device{ID: "d-hostile", OS: &scope.OS{Name: strings.Repeat("W", 16<<10)}}
	err := inv.PutDevices(context.Background(), scope.Device{ID: "d-1"}, hostile, scope.Device{ID: "d-2", Tags: []string{"ok"}})
	var over *scope.OversizeDevicesError
	if !errors.As(err, &over) || !errors.Is(err, scope.ErrInvalid) {
		t.Fatalf("PutDevices = %v, want *scope.OversizeDevicesError matching ErrInvalid", err)
	}
	if diff := cmp.Diff([]int{1}, over.Devices); diff != "" {
		t.Errorf("rejected devices (-want +got):\n%s", diff)
	}
	if len(over.Errors) != 1 || over.Errors[0].Field != "devices[1].os.name" {
		t.Errorf("errors = %v, want devices[1].os.name", over.Errors)
	}
	if len(err.Error()) > 1000 {
		t.Errorf("error is %d bytes long", len(err.Error()))
	}
	var got []scope.DeviceID
	for d, err := range inv.Devices(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d.ID)
	}
	if diff := cmp.Diff([]scope.DeviceID{"d-1", "d-2"}, got); diff != "" {
		t.Errorf("stored devices (-want +got):\n%s", diff)
	}
	// A structural error still refuses the whole call.
	if err := inv.PutDevices(context.Background(), scope.Device{ID: "d-3"}, scope.Device{ID: "d-4", GroupID: "nowhere"}); errors.As(err, &over) || !errors.Is(err, scope.ErrInvalid) {
		t.Fatalf("unknown group: %v", err)
	}
	if _, err := inv.Device(t.Context(), "d-3"); !errors.Is(err, scope.ErrNotFound) {
		t.Errorf("a refused call stored d-3: %v", err)
	}
}

// TestSelectionRefusesOversizeFacts: a device from an inventory that does
// not enforce the limits (a host's own) is Unknown for a selection that
// reads the oversize fact, naming the limit, instead of costing what the
// estimate did not allow for; selections that do not read it are
// unaffected.
func TestSelectionRefusesOversizeFacts(t *testing.T) {
	t.Parallel()
	p, err := scope.CompileSelection(quadraticOSName)
	if err != nil {
		t.Fatalf("the quadratic selection must compile (its estimate is within the limit): %v", err)
	}
	for _, tt := range []struct {
		name string
		edit func(d *scope.Device)
		expr string
	}{
		{"os name", func(d *scope.Device) { d.OS.Name = strings.Repeat("W", 16<<10) }, quadraticOSName},
		{"tag", func(d *scope.Device) { d.Tags[0] = strings.Repeat("t", 16<<10) }, `device.tags.exists(t, t.split("").size() > 3)`},
		{"software vendor", func(d *scope.Device) { d.Software[1].Vendor = strings.Repeat("v", 16<<10) }, `device.software.exists(s, s.vendor.contains("zz"))`},
		{"application name", func(d *scope.Device) { d.Applications[strings.Repeat("a", 16<<10)] = scope.AppState{} }, `device.applications.exists(k, k.contains("zz"))`},
		{"dns name", func(d *scope.Device) { d.DNSName = strings.Repeat("d", 16<<10) }, `device.dns_name.contains("zz")`},
		{"id", func(d *scope.Device) { d.ID = scope.DeviceID(strings.Repeat("i", 16<<10)) }, `device.id.contains("zz")`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := fullDevice()
			tt.edit(d)
			q := p
			if tt.expr != quadraticOSName {
				var err error
				if q, err = scope.CompileSelection(tt.expr); err != nil {
					t.Fatal(err)
				}
			}
			if got, reason := q.Evaluate(d); got != scope.Unknown || !strings.Contains(reason, "MaxFactLength") {
				t.Errorf("%s: %s %q, want Unknown naming MaxFactLength", tt.expr, got, reason)
			}
			c, _ := scope.CompileSelection(`device.connected`)
			if got, _ := c.Evaluate(d); got != scope.In {
				t.Errorf("device.connected = %s", got)
			}
		})
	}
}
