package engine

import (
	"context"
	"time"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

var _ task.RunPlanner = (*Server)(nil)

// ManualRunID implements task.RunPlanner: a manual start at `at` has the
// same time-derived id in the Manager's Run, in storage and on the devices;
// Start records the run's per-device results.
//
// A new manual run is always the task's latest: when the server's clock
// was set back (or a device's clock ran ahead), the time-derived id could
// be older than a run the task already has, and the devices' results of
// the new run would lose to the old ones. The id is then the next one
// after the task's newest run id (its instant a millisecond later), so
// run ordering never depends on the wall clock alone.
func (s *Server) ManualRunID(t *task.Task, at time.Time) int64 {
	id := transport.RunID(at, transport.Manual)
	if t == nil {
		return id
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.tasks[t.ID]
	if ts == nil {
		return id
	}
	if last := s.latestRun(context.Background(), ts); id <= last {
		id = transport.RunID(time.UnixMilli(last/4+1), transport.Manual)
	}
	return id
}

// latestRun returns the newest run id of a task: seen by this server, or
// stored (read once per task and process).
func (s *Server) latestRun(ctx context.Context, ts *taskState) int64 {
	if !ts.maxRunOK {
		after := ""
		for {
			page, err := s.cfg.Store.ListResults(ctx, storage.ListResultsParams{TaskID: ts.t.ID, AfterDevice: after, Limit: storage.MaxListLimit})
			if err != nil {
				s.log.Error().Err(err).Str("task", ts.t.ID).Msg("engine: read the task's latest run")
				return ts.maxRun // try again at the next start
			}
			for _, r := range page {
				ts.maxRun = max(ts.maxRun, r.RunID)
			}
			if len(page) < storage.MaxListLimit {
				break
			}
			after = page[len(page)-1].DeviceID
		}
		ts.maxRunOK = true
	}
	return ts.maxRun
}

// sawRun notes a run id of a task (a start or a result).
func (ts *taskState) sawRun(id int64) {
	if id > ts.maxRun {
		ts.maxRun = id
	}
}
