package engine

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/scope"
)

// TestDispatchingByDevice: put and drop keep the per-device index
// (byDev) exactly the pending map's keys: a key put twice is listed once,
// dropping an unknown key changes nothing, a device with nothing left
// has no entry.
func TestDispatchingByDevice(t *testing.T) {
	d := dispatching{pending: map[dkey]*dispatch{}}
	d.put(dkey{"t1", "a"}, &dispatch{})
	d.put(dkey{"t2", "a"}, &dispatch{})
	d.put(dkey{"t1", "b"}, &dispatch{})
	d.put(dkey{"t1", "a"}, &dispatch{sent: 2}) // replaced, not listed twice
	d.drop(dkey{"t9", "a"})                    // unknown
	d.drop(dkey{"t1", "b"})
	want := map[scope.DeviceID][]string{"a": {"t1", "t2"}}
	if diff := cmp.Diff(want, d.byDev); diff != "" {
		t.Fatalf("byDev (-want +got):\n%s", diff)
	}
	if len(d.pending) != 2 || d.pending[dkey{"t1", "a"}].sent != 2 {
		t.Fatalf("pending %v", d.pending)
	}
	d.drop(dkey{"t1", "a"})
	d.drop(dkey{"t2", "a"})
	if len(d.byDev) != 0 || len(d.pending) != 0 {
		t.Fatalf("after dropping all: byDev %v, pending %v", d.byDev, d.pending)
	}
}
