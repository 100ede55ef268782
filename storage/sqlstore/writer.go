package sqlstore

import "github.com/taskfleet/taskfleet/scope"

// The SQL inventory has the write side of every shipped inventory.
var _ scope.InventoryWriter = (*Inventory)(nil)
