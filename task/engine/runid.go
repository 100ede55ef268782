package engine

import (
	"time"

	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

var _ task.RunPlanner = (*Server)(nil)

// ManualRunID implements task.RunPlanner: a manual start at `at` has the
// same time-derived id in the Manager's Run, in storage and on the devices;
// Start records the run's per-device results.
func (s *Server) ManualRunID(_ *task.Task, at time.Time) int64 {
	return transport.RunID(at, transport.Manual)
}
