package memstore

import (
	"hash/maphash"
	"testing"

	"github.com/taskfleet/taskfleet/storage"
)

// Two devices whose hashes collide must both stay addressable: the second
// goes to the overflow map.
func TestResultSlotCollision(t *testing.T) {
	tr := &taskResults{slot: map[uint64]int32{}, counts: map[string]int{}}
	tr.add(storage.ResultRecord{DeviceID: "a", State: "running"})
	// Make "b" collide with "a": its hash points at a's row.
	tr.slot[maphash.String(hashSeed, "b")] = 0
	tr.add(storage.ResultRecord{DeviceID: "b", State: "completed"})
	if len(tr.overflow) != 1 {
		t.Fatalf("overflow = %v, want b", tr.overflow)
	}
	for dev, state := range map[string]string{"a": "running", "b": "completed"} {
		i, ok := tr.find(dev)
		if !ok || tr.rows[i].State != state {
			t.Fatalf("find(%q) = %d, %v", dev, i, ok)
		}
	}
	if _, ok := tr.find("c"); ok {
		t.Fatal("found a device never added")
	}
}
