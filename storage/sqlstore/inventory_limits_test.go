package sqlstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/scope"
)

// TestInventoryRefusesOversizeDevice (issue #14 item 4): a device whose
// facts exceed the inventory limits (here a 16 KiB OS name, and too many
// tags) is refused with a typed error naming it, and its good neighbours
// in the same call are stored; a selection over the inventory then only
// sees devices within the limits its cost estimate assumes.
func TestInventoryRefusesOversizeDevice(t *testing.T) {
	t.Parallel()
	for _, tg := range invTargets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			inv := tg.open(t).Devices()
			err := inv.PutDevices(ctx,
				scope.Device{ID: "z-good-1", OS: &scope.OS{Name: "Windows 11"}},
				scope.Device{ID: "z-hostile-os", OS: &scope.OS{Name: strings.Repeat("W", 16<<10)}},
				scope.Device{ID: "z-good-2", Tags: []string{"ok"}},
				scope.Device{ID: "z-hostile-tags", Tags: make([]string, scope.MaxFactListLength+1)},
			)
			var over *scope.OversizeDevicesError
			if !errors.As(err, &over) || !errors.Is(err, scope.ErrInvalid) {
				t.Fatalf("PutDevices = %v, want *scope.OversizeDevicesError matching ErrInvalid", err)
			}
			if diff := cmp.Diff([]int{1, 3}, over.Devices); diff != "" {
				t.Errorf("refused devices (-want +got):\n%s", diff)
			}
			var fields []string
			for _, e := range over.Errors {
				fields = append(fields, e.Field)
			}
			if diff := cmp.Diff([]string{"devices[1].os.name", "devices[3].tags"}, fields); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			for id, want := range map[scope.DeviceID]bool{"z-good-1": true, "z-good-2": true, "z-hostile-os": false, "z-hostile-tags": false} {
				_, err := inv.Device(ctx, id)
				if stored := err == nil; stored != want {
					t.Errorf("%s stored = %v (%v), want %v", id, stored, err, want)
				}
			}
			// Only oversize devices: nothing stored, the same error.
			if err := inv.PutDevices(ctx, scope.Device{ID: "z-only", DNSName: strings.Repeat("d", scope.MaxFactLength+1)}); !errors.As(err, &over) {
				t.Fatalf("a lone oversize device: %v", err)
			}
			if _, err := inv.Device(ctx, "z-only"); !errors.Is(err, scope.ErrNotFound) {
				t.Errorf("z-only: %v, want ErrNotFound", err)
			}
		})
	}
}
