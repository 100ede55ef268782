package agent

import (
	"fmt"
	"testing"

	"github.com/taskfleet/taskfleet/task/transport"
)

func TestResultKeyMatchesTheFormat(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		device, task string
		run, seq     int64
	}{
		{"d00001", "t-1", 1767225600000000001, 0},
		{"@server", "backup", -3, 42},
		{"", "", 0, -9223372036854775808},
	} {
		want := fmt.Sprintf("r/%s/%s/%d/%d", c.device, c.task, c.run, c.seq)
		if got := resultKey(transport.DeviceID(c.device), c.task, c.run, c.seq); got != want {
			t.Errorf("resultKey = %q, want %q", got, want)
		}
	}
}
