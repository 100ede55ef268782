package engine

import (
	"context"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Follow-ups of a recorded device result, the last step of a device
// message's one-way path (Handle → intake checks → flushResults records →
// afterResult): the dispatch is settled, a control order it answers
// ends, and tasks that wait for it fire.

// afterResult settles the dispatch of a reported run and fires "on
// completing another task" tasks.
func (s *Server) afterResult(ctx context.Context, trig *plan, r task.Result, now time.Time) {
	k := dkey{r.TaskID, r.DeviceID}
	if ts := s.cat.tasks[r.TaskID]; ts != nil {
		ts.sawRun(r.RunID)
	}
	if dp := s.disp.pending[k]; dp != nil && r.Seq >= transport.SeqDevice && r.RunID >= dp.start.RunID {
		s.disp.drop(k)
	}
	s.controlResult(ctx, k, r, now)
	var status schedule.CompletionStatus
	switch r.State {
	case task.Completed, task.CompletedWithWarnings:
		status = schedule.Completed
	case task.Failed, task.FailedTimeout:
		status = schedule.Failed
	default:
		return
	}
	if !s.triggered()[r.TaskID] {
		return
	}
	at := r.FinishedAt
	if at.IsZero() {
		at = r.UpdatedAt
	}
	for _, id := range s.sortedIDs() {
		ts := s.cat.tasks[id]
		sch := ts.t.Schedule
		if sch.Kind != schedule.OnTaskCompletion || sch.TaskID != r.TaskID || sch.Status != status || ts.t.Suspended || !ts.has(r.DeviceID) {
			continue
		}
		if trig := s.cat.tasks[r.TaskID]; trig == nil || !trig.has(r.DeviceID) {
			continue // both tasks must be assigned to the device
		}
		st := transport.Start{TaskID: id, RunID: transport.RunID(at, transport.Triggered), At: at}
		if s.known(ctx, id, r.DeviceID, st.RunID) {
			continue // a redelivered result: this run was started already
		}
		s.plan(ctx, trig, ts, st, []scope.DeviceID{r.DeviceID}, ts.t.SettingsRevision, now)
	}
}
