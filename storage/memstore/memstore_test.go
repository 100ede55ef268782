package memstore_test

import (
	"context"
	"testing"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inventorytest"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{
		New:      func(t *testing.T) storage.Store { return memstore.New() },
		Features: storagetest.Features{Hierarchy: true},
	})
}

// The inventory memstore carries passes the scope inventory suite.
func TestInventoryConformance(t *testing.T) {
	inventorytest.Run(t, func(t *testing.T, groups []scope.AdminGroup, devices []scope.Device) scope.Inventory {
		s := memstore.New()
		if err := s.Devices().PutGroups(context.Background(), groups...); err != nil {
			t.Fatal(err)
		}
		if err := s.Devices().PutDevices(context.Background(), devices...); err != nil {
			t.Fatal(err)
		}
		return s.Inventory()
	})
}
