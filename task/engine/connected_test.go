package engine_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
)

// countingInventory counts the Device and ConnectedDevices calls of the
// engine.
type countingInventory struct {
	*inmem.Inventory
	device, batch atomic.Int64
}

func (c *countingInventory) Device(ctx context.Context, id scope.DeviceID) (*scope.Device, error) {
	c.device.Add(1)
	return c.Inventory.Device(ctx, id)
}

func (c *countingInventory) ConnectedDevices(ctx context.Context, ids []scope.DeviceID) ([]scope.DeviceID, error) {
	c.batch.Add(1)
	return c.Inventory.ConnectedDevices(ctx, ids)
}

// TestStartChecksConnectionsInOneCall: a manual start on 25,000 devices
// asks a scope.ConnectionChecker inventory which are connected in one
// call per 10,000 devices, not once per device (a run on 100,000
// devices was 100,000 store queries with the server's lock held), and
// the devices that are not connected are still recorded missed.
func TestStartChecksConnectionsInOneCall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	groups, devs := fleet(25000)
	for i := range devs {
		devs[i].Connected = i%10 != 3
	}
	base := inmem.New()
	must(t, base.PutGroups(ctx, groups...))
	must(t, base.PutDevices(ctx, devs...))
	inv := &countingInventory{Inventory: base}
	store := memstore.New()
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Location: time.UTC, SingleReplica: true})
	must(t, err)
	m, err := task.New(task.Config{Store: store, Registry: registry(t), Inventory: inv, Location: time.UTC, Dispatcher: srv})
	must(t, err)
	must(t, srv.Open(ctx, m, &recorder{}))
	tk, err := m.Create(ctx, task.System, task.Task{Name: "scan", Application: appES, Type: "virus_scan", Scope: groupScope("g-all"), Schedule: sched(schedule.Manual, nil)})
	must(t, err)
	before, beforeBatch := inv.device.Load(), inv.batch.Load()
	_, err = m.Start(ctx, task.System, tk.ID)
	must(t, err)
	if n := inv.device.Load() - before; n != 0 {
		t.Errorf("the start made %d Device calls, want 0 (one ConnectedDevices call per 10,000 devices)", n)
	}
	if n := inv.batch.Load() - beforeBatch; n != 3 {
		t.Errorf("%d ConnectedDevices calls for 25,000 devices, want 3", n)
	}
	missed, scheduled := 0, 0
	after := ""
	for {
		page, err := store.ListResults(ctx, storage.ListResultsParams{TaskID: tk.ID, AfterDevice: after, Limit: storage.MaxListLimit})
		must(t, err)
		for _, r := range page {
			switch task.State(r.State) {
			case task.Missed:
				missed++
			case task.Scheduled:
				scheduled++
			}
		}
		if len(page) < storage.MaxListLimit {
			break
		}
		after = page[len(page)-1].DeviceID
	}
	if missed != 2500 || scheduled != 22500 {
		t.Fatalf("%d missed, %d scheduled; want 2,500 missed (not connected) and 22,500 scheduled", missed, scheduled)
	}
}
