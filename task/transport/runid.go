package transport

import (
	"time"

	"github.com/taskfleet/taskfleet/schedule"
)

// RunKind says what started a run; it is encoded in the run id.
type RunKind int64

// Run kinds.
const (
	Scheduled RunKind = 0
	Manual    RunKind = 1
	Triggered RunKind = 2
)

// RunID returns the run id of a run of kind k whose nominal time is at:
// the Unix millisecond of at times 4 plus k. Run ids therefore increase with
// time, so storage's (run, seq) ordering keeps the newest run, and the same
// activation always gets the same id, in every process.
func RunID(at time.Time, k RunKind) int64 { return at.UnixMilli()*4 + int64(k) }

// Sequence numbers of results within a run: the server writes SeqScheduled
// and SeqDispatched, devices start at SeqDevice.
const (
	SeqScheduled  int64 = 0
	SeqDispatched int64 = 1
	SeqDevice     int64 = 2
)

// Slot is a device's place among the Of devices of a task's scope (0-based
// Index in device id order), which spreads an automatic randomized delay
// evenly instead of by chance.
type Slot struct {
	Index int `json:"index"`
	Of    int `json:"of"`
}

// Offset returns the randomized start delay of a device. For an automatic
// delay with a slot it is stratified: the window is cut into Of equal
// parts and the device starts in its own part, at a deterministic
// schedule.RandomOffset inside it, so no second sees more starts than the
// budget (schedule.DefaultStartsPerSecond) plus one. Otherwise it is
// schedule.RandomOffset over the whole window. Both are deterministic per
// task, device and revision.
func Offset(s schedule.Schedule, devices int, slot *Slot, taskID, deviceID string, revision int64) time.Duration {
	window := s.DelayWindow(devices)
	if s.RandomDelay.Mode == schedule.DelayAutomatic && slot != nil && slot.Of > 0 && slot.Index >= 0 && slot.Index < slot.Of && window > 0 {
		part := window / time.Duration(slot.Of)
		return part*time.Duration(slot.Index) + schedule.RandomOffset(part, taskID, deviceID, revision)
	}
	return schedule.RandomOffset(window, taskID, deviceID, revision)
}
