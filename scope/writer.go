package scope

import "context"

// InventoryWriter is how a host fills an inventory: the write side shared
// by the inventories this module ships (scope/inmem and the SQL inventory
// of storage/sqlstore), so setup code, simulations (enginetest) and
// migrations work on either. Each call is all or nothing: a bad entry is
// reported in ValidationErrors naming it ("devices[3].group_id") and
// nothing of the call is stored.
type InventoryWriter interface {
	// PutGroups adds or replaces administration groups; a parent must
	// exist or be in the same call.
	PutGroups(ctx context.Context, groups ...AdminGroup) error
	// DeleteGroup removes an empty group (ErrNotFound if there is none).
	DeleteGroup(ctx context.Context, id GroupID) error
	// PutDevices adds or replaces devices by ID; each GroupID must be ""
	// or an existing group.
	PutDevices(ctx context.Context, devices ...Device) error
	// DeleteDevice removes a device (ErrNotFound if there is none).
	DeleteDevice(ctx context.Context, id DeviceID) error
}
