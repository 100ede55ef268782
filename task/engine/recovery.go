package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Recovery after a restart (Open) and the leader's reconciliation:
// control orders are rebuilt from the stored results and the engine
// state's stop orders.

// recoverRuns restores on Open what the previous server kept in memory:
// the pause and resume orders its devices may not have received (a
// suspended task's running devices, a resumed task's paused ones), the
// stop orders of runs still in progress that a stop marker covers, and
// the last start of server-run Manually/Once/Immediately tasks and the
// last manual start of device tasks with those schedules, when they run
// missed tasks, from the stored results (the newest run id among them; run ids are
// time-derived, so the start is rebuilt exactly). Devices that joined
// such a server-run task's scope while no server ran get that start now.
//
// With controlsOnly (the leader's periodic reconciliation, see Tick) only
// the pause, resume and stop orders are rebuilt: a replica that received
// an order and died before every device answered leaves it to the leader.
func (s *Server) recoverRuns(ctx context.Context, now time.Time, controlsOnly bool) error {
	for _, id := range s.sortedIDs() {
		ts := s.cat.tasks[id]
		state, kind := task.Paused, transport.ResumeRun
		if ts.t.Suspended {
			state, kind = task.Running, transport.PauseRun
		}
		serverRun := !controlsOnly && ts.onServer && ts.t.Schedule.RunMissed && lastStartKinds(ts.t.Schedule.Kind)
		deviceRun := !controlsOnly && !ts.onServer && ts.t.Schedule.RunMissed && lastStartKinds(ts.t.Schedule.Kind)
		var states []string
		if !serverRun && !deviceRun {
			// only the orders to restore: pause/resume, and stops
			states = []string{string(task.Running), string(task.Paused), string(task.Pending)}
		}
		var last int64
		have := map[scope.DeviceID]int64{}
		var live []storage.ResultRecord // runs a stop marker may still apply to
		after := ""
		for {
			page, err := s.cfg.Store.ListResults(ctx, storage.ListResultsParams{TaskID: id, States: states, AfterDevice: after, Limit: storage.MaxListLimit})
			if err != nil {
				return fmt.Errorf("engine: recover runs of %q: %w", id, err)
			}
			if len(page) == 0 {
				break
			}
			for _, r := range page {
				d := scope.DeviceID(r.DeviceID)
				if task.State(r.State) == state {
					s.order(ctx, kind, dkey{id, d}, r.RunID, ts.t.Revision, now)
				}
				switch task.State(r.State) {
				case task.Running, task.Paused:
					live = append(live, r)
				case task.Pending:
					if r.Seq >= transport.SeqDispatched {
						live = append(live, r)
					}
				}
				have[d] = r.RunID
				if r.RunID > last && (serverRun || transport.RunKind(r.RunID%4) == transport.Manual) {
					last = r.RunID
				}
			}
			after = page[len(page)-1].DeviceID
		}
		if err := s.recoverStops(ctx, id, live, now); err != nil {
			return err
		}
		if last == 0 {
			continue
		}
		st := startOf(id, last)
		if deviceRun {
			if ts.manual == nil || ts.manual.RunID < last {
				ts.manual, ts.def = &st, nil
			}
			continue
		}
		if ts.lastFire == nil || ts.lastFire.RunID < last {
			ts.lastFire = &st
		}
		var devs []scope.DeviceID
		for _, d := range ts.devices {
			if have[d] < last {
				devs = append(devs, d)
			}
		}
		if len(devs) > 0 {
			s.startOn(ctx, ts, st, devs, startRevision(ts, st), now)
		}
	}
	return nil
}

// recoverStops sends StopRun again to the runs in live (results still in
// progress) that the task's latest stop marker covers: a run due at or
// before the stop was running, paused or dispatched when it was stopped
// and has not reported a final state since.
func (s *Server) recoverStops(ctx context.Context, id string, live []storage.ResultRecord, now time.Time) error {
	if len(live) == 0 {
		return nil
	}
	from := live[0].DueAt
	for _, r := range live[1:] {
		if r.DueAt.Before(from) {
			from = r.DueAt
		}
	}
	var stopAt time.Time
	p := storage.ListEngineStateParams{TaskID: id, Kind: storage.EngineStateStop, Limit: storage.MaxListLimit}
	for {
		recs, err := s.cfg.Store.ListEngineState(ctx, p)
		if err != nil {
			return fmt.Errorf("engine: recover stops of %q: %w", id, err)
		}
		for _, r := range recs {
			if !r.At.Before(from) && r.At.After(stopAt) {
				stopAt = r.At
			}
		}
		if len(recs) < p.Limit {
			break
		}
		p.AfterID = recs[len(recs)-1].ID
	}
	if stopAt.IsZero() {
		return nil
	}
	for _, r := range live {
		if !r.DueAt.After(stopAt) {
			s.order(ctx, transport.StopRun, dkey{id, scope.DeviceID(r.DeviceID)}, r.RunID, 0, now)
		}
	}
	return nil
}
