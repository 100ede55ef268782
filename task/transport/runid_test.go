package transport_test

import (
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/task/transport"
)

func TestRunIDOrdersByTimeAndIsDeterministic(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		a, b int64
		less bool
	}{
		{transport.RunID(at, transport.Scheduled), transport.RunID(at.Add(time.Millisecond), transport.Scheduled), true},
		{transport.RunID(at, transport.Scheduled), transport.RunID(at, transport.Manual), true},
		{transport.RunID(at, transport.Triggered), transport.RunID(at.Add(time.Millisecond), transport.Scheduled), true},
		{transport.RunID(at, transport.Manual), transport.RunID(at.In(time.FixedZone("x", 3600)), transport.Manual), false},
	}
	for i, c := range cases {
		if got := c.a < c.b; got != c.less {
			t.Errorf("case %d: %d < %d = %v", i, c.a, c.b, got)
		}
	}
	if transport.RunID(at, transport.Manual) != transport.RunID(at.In(time.FixedZone("x", 3600)), transport.Manual) {
		t.Error("run id depends on the zone")
	}
}
