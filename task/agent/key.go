package agent

import (
	"strconv"

	"github.com/taskfleet/taskfleet/task/transport"
)

// resultKey is the outbox key of a result update,
// "r/<device>/<task>/<run>/<seq>", built in one allocation (results are
// the agent's most frequent messages).
func resultKey(device transport.DeviceID, taskID string, runID, seq int64) string {
	// Built on the stack (a key is short): the string is the only
	// allocation.
	var buf [160]byte
	b := buf[:0]
	b = append(b, "r/"...)
	b = append(b, device...)
	b = append(b, '/')
	b = append(b, taskID...)
	b = append(b, '/')
	b = strconv.AppendInt(b, runID, 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, seq, 10)
	return string(b)
}
