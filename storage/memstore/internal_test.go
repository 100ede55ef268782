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

// TestEventKeyCollision: a key whose hash another key took is new (kept
// in collided, then a duplicate), and a purged event's key stays
// reserved, while a different key colliding with it is new.
func TestEventKeyCollision(t *testing.T) {
	var l eventList
	var k eventKeys
	add := func(key string) bool {
		id := int64(l.len() + 1)
		if !k.add(&l, key, id) {
			return false
		}
		l.append(storage.EventRecord{ID: id, Key: key})
		return true
	}
	if !add("a") || add("a") {
		t.Fatal("a: want new, then a duplicate")
	}
	// Make "b" collide with "a" (its hash points at a's event).
	k.byHash[maphash.String(hashSeed, "b")] = 1
	if !add("b") || add("b") || len(k.collided) != 1 {
		t.Fatalf("b: want new, then a duplicate; collided %v", k.collided)
	}
	if add("a") {
		t.Fatal("a again after b: want a duplicate")
	}
	// Purge a: its key stays reserved; "c", colliding with it, is new.
	l.filter(func(e *storedEvent) bool {
		if string(l.key(e)) == "a" {
			k.purge(&l, e)
			return false
		}
		return true
	})
	if add("a") {
		t.Fatal("a after its purge: want a duplicate")
	}
	k.byHash[maphash.String(hashSeed, "c")] = 0
	if !add("c") || add("c") {
		t.Fatal("c colliding with a purged key: want new, then a duplicate")
	}
	// Purging the collided b keeps it reserved in collided.
	l.filter(func(e *storedEvent) bool {
		if string(l.key(e)) == "b" {
			k.purge(&l, e)
			return false
		}
		return true
	})
	if add("b") {
		t.Fatal("b after its purge: want a duplicate")
	}
}
