package agent

import (
	"strconv"

	"github.com/taskfleet/taskfleet/task/transport"
)

// resultKey is the outbox key of a result update,
// "r/<device>/<task>/<run>/<seq>", built in one allocation (results are
// the agent's most frequent messages).
func resultKey(device transport.DeviceID, taskID string, runID, seq int64) string {
	b := make([]byte, 0, len("r///")+len(device)+len(taskID)+2*20+1)
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
