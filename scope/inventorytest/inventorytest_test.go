package inventorytest_test

import (
	"context"
	"iter"
	"testing"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/scope/inventorytest"
)

// minimal has only the four required methods, so the suite's paths for
// inventories without the optional interfaces run too.
type minimal struct{ inv *inmem.Inventory }

func (m minimal) Device(ctx context.Context, id scope.DeviceID) (*scope.Device, error) {
	return m.inv.Device(ctx, id)
}
func (m minimal) Group(ctx context.Context, id scope.GroupID) (*scope.AdminGroup, error) {
	return m.inv.Group(ctx, id)
}
func (m minimal) Groups(ctx context.Context) ([]scope.AdminGroup, error) { return m.inv.Groups(ctx) }
func (m minimal) Devices(ctx context.Context) iter.Seq2[*scope.Device, error] {
	return m.inv.Devices(ctx)
}

func TestMinimalInventoryConforms(t *testing.T) {
	t.Parallel()
	inventorytest.Run(t, func(t *testing.T, groups []scope.AdminGroup, devices []scope.Device) scope.Inventory {
		inv := inmem.New()
		if err := inv.PutGroups(context.Background(), groups...); err != nil {
			t.Fatal(err)
		}
		if err := inv.PutDevices(context.Background(), devices...); err != nil {
			t.Fatal(err)
		}
		return minimal{inv}
	})
}

func TestScopesAreValid(t *testing.T) {
	t.Parallel()
	for _, s := range inventorytest.Scopes() {
		if err := s.Validate(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
}
