package inmem_test

import (
	"context"
	"testing"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/scope/inventorytest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	inventorytest.Run(t, func(t *testing.T, groups []scope.AdminGroup, devices []scope.Device) scope.Inventory {
		inv := inmem.New()
		if err := inv.PutGroups(context.Background(), groups...); err != nil {
			t.Fatal(err)
		}
		if err := inv.PutDevices(context.Background(), devices...); err != nil {
			t.Fatal(err)
		}
		return inv
	})
}
