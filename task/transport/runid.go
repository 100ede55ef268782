package transport

import "time"

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
