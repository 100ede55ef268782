package engine

import (
	"context"
	"slices"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

// The catalog: the tasks the engine knows (state in catalog), kept
// current by the Manager through TaskSaved and TaskDeleted, and their
// scopes resolved against the inventory.

// TaskSaved implements task.Dispatcher: the task's scope is resolved
// again, device tasks are delivered to the connected devices of the scope
// (and withdrawn from devices that left it; heartbeats repair any loss),
// and a server-run schedule restarts from the saved settings (an
// Immediately schedule fires at once). Suspending a task sends PauseRun
// to the devices running it, resuming sends ResumeRun to the devices
// whose run is paused (both retried until answered). Devices that join
// the scope of a server-run Manually/Once task with "run missed tasks"
// get its last start.
func (s *Server) TaskSaved(ctx context.Context, t *task.Task) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.live("TaskSaved"); err != nil {
		return err
	}
	if !s.opened {
		return nil // Open loads every task
	}
	settingsChanged := true
	now := s.clk.Now()
	var before []scope.DeviceID
	wasSuspended, known := false, false
	if old := s.cat.tasks[t.ID]; old != nil {
		before, wasSuspended, known = old.devices, old.t.Suspended, true
		settingsChanged = old.t.SettingsRevision != t.SettingsRevision
	}
	ts := s.load(ctx, t, now)
	s.dev.invalidate()
	if known && ts.t.Suspended != wasSuspended {
		s.suspendChanged(ctx, ts, now)
	}
	if ts.onServer {
		if known && !s.refires(ts, settingsChanged) {
			s.joinedMissed(ctx, ts, joined(before, ts.devices), now)
		}
		return nil
	}
	s.rescoped(ts, before) // the connected devices get their new slots below
	for _, d := range before {
		if !ts.has(d) {
			_ = s.send(ctx, transport.Message{Kind: transport.Withdraw, Device: d, TaskID: t.ID})
		}
	}
	def := s.definition(ts)
	conn, _ := s.splitConnected(ctx, ts.devices)
	for _, d := range conn {
		if s.send(ctx, transport.Message{Kind: transport.Deliver, Device: d, Definition: def, Slot: slotOf(ts, d)}) == nil {
			s.stats.Delivered++
		}
	}
	return nil
}

// TaskDeleted implements task.Dispatcher.
func (s *Server) TaskDeleted(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.live("TaskDeleted"); err != nil {
		return err
	}
	ts := s.cat.tasks[id]
	if ts == nil {
		return nil
	}
	delete(s.cat.tasks, id)
	s.cat.ids, s.cat.trig = nil, nil
	for k := range s.disp.pending {
		if k.task == id {
			s.disp.drop(k)
		}
	}
	for k := range s.ctl.controls {
		if k.task == id {
			s.dropControl(k)
		}
	}
	s.dev.invalidate()
	for _, d := range ts.devices {
		_ = s.send(ctx, transport.Message{Kind: transport.Withdraw, Device: d, TaskID: id})
	}
	return nil
}

// refires reports whether a saved server-run task fires again because of
// the save (its Immediately schedule or a Once start still ahead), so
// devices that joined its scope get that start rather than the last one.
func (s *Server) refires(ts *taskState, settingsChanged bool) bool {
	switch ts.t.Schedule.Kind {
	case schedule.Immediately:
		return settingsChanged
	case schedule.Once:
		return ts.t.Schedule.At.After(ts.cursor)
	}
	return false
}

// startRevision is the randomized-offset revision of a start: the run id
// of a manual start (a manual start moves the offsets), the settings
// revision otherwise.
func startRevision(ts *taskState, st transport.Start) int64 {
	if st.Manual {
		return st.RunID
	}
	return ts.t.SettingsRevision
}

// startOf rebuilds a start from its time-derived run id (transport.RunID).
func startOf(taskID string, runID int64) transport.Start {
	at := time.UnixMilli(runID / 4).UTC()
	return transport.Start{TaskID: taskID, RunID: runID, At: at, Due: at, Manual: transport.RunKind(runID%4) == transport.Manual}
}

// joined returns the devices of after that are not in before (both
// sorted).
func joined(before, after []scope.DeviceID) []scope.DeviceID {
	var out []scope.DeviceID
	for _, d := range after {
		if _, ok := slices.BinarySearch(before, d); !ok {
			out = append(out, d)
		}
	}
	return out
}

// rescoped reports whether a device task's scope changed from before, and
// then plans its Wake-on-LAN times again (they follow the delay slots).
func (s *Server) rescoped(ts *taskState, before []scope.DeviceID) bool {
	if ts.onServer || slices.Equal(before, ts.devices) {
		return false
	}
	ts.wakes, ts.nextWake = nil, time.Time{}
	return true
}

func (s *Server) sortedIDs() []string {
	if s.cat.ids == nil {
		s.cat.ids = make([]string, 0, len(s.cat.tasks))
		for id := range s.cat.tasks {
			s.cat.ids = append(s.cat.ids, id)
		}
		sortStrings(s.cat.ids)
	}
	return s.cat.ids
}

// refresh re-resolves every scope: devices that joined a device task's
// scope get it with their next heartbeat, and connected devices whose
// automatic-delay slot moved get it now; devices joining a server-run
// Manually/Once/Immediately task with "run missed tasks" get its last
// start (once).
func (s *Server) refresh(ctx context.Context, now time.Time) {
	for _, id := range s.sortedIDs() {
		ts := s.cat.tasks[id]
		before := ts.devices
		added := s.resolve(ctx, ts)
		s.joinedMissed(ctx, ts, added, now)
		s.reslot(ctx, ts, before)
	}
	s.dev.invalidate()
}

// load (re)computes a task's state; it does not send anything.
func (s *Server) load(ctx context.Context, t *task.Task, now time.Time) *taskState {
	ts := s.cat.tasks[t.ID]
	settingsChanged := ts == nil || ts.t.SettingsRevision != t.SettingsRevision
	if ts == nil {
		ts = &taskState{}
		s.cat.tasks[t.ID] = ts
		s.cat.ids = nil
	}
	ts.t = t
	ts.def = nil
	ts.onServer = t.RunsOnServer()
	s.cat.trig = nil
	if settingsChanged || !automaticDelay(ts) {
		ts.slots = nil // a new layout (settings edited)
	}
	if settingsChanged {
		ts.since = t.UpdatedAt
		ts.cursor = now
		if t.Schedule.Kind == schedule.Immediately || t.Schedule.Kind == schedule.Once {
			ts.cursor = t.UpdatedAt.Add(-time.Nanosecond)
			if t.Schedule.Kind == schedule.Once && t.Schedule.At.Before(ts.cursor) {
				ts.cursor = now
			}
		}
		ts.next = time.Time{}
	}
	s.resolve(ctx, ts)
	return ts
}

// resolve refreshes a task's device list.
func (s *Server) resolve(ctx context.Context, ts *taskState) []scope.DeviceID {
	var devs []scope.DeviceID
	if ts.t.Scope.Kind == scope.Server {
		devs = []scope.DeviceID{task.ServerDevice}
	} else {
		sc := ts.t.Scope
		// "Distribute to secondary and virtual Administration Servers":
		// the devices those servers manage are in the task's scope, but
		// their own server runs the task on them (its inherited copy,
		// package task/hierarchy) and reports their figures up; this
		// server runs it on the devices it manages, so each device runs
		// each run once and is counted once.
		sc.DistributeToServers = false
		res, err := scope.Resolve(ctx, sc, s.cfg.Inventory)
		if err != nil {
			s.log.Error().Err(err).Str("task", ts.t.ID).Msg("engine: resolve scope")
			return nil
		}
		devs = res.Devices
		if ts.onServer {
			devs = append(slices.Clone(res.Devices), res.Offline...)
			slices.Sort(devs)
		}
	}
	var added []scope.DeviceID
	if ts.resolved {
		added = joined(ts.devices, devs)
	}
	ts.devices, ts.resolved = devs, true
	ts.followSlots()
	return added
}

func (s *Server) definition(ts *taskState) *transport.Definition {
	if n := slotCount(ts); ts.def == nil || ts.def.Devices != n || ts.def.LastManual != ts.manual {
		var sp transport.TaskSpec
		if ts.def != nil {
			sp = ts.def.Task // the task is unchanged (a change clears def)
		} else {
			var err error
			if sp, err = specOf(ts.t); err != nil {
				s.log.Error().Err(err).Str("task", ts.t.ID).Msg("engine: the task's settings do not encode; devices get none")
			}
		}
		ts.def = &transport.Definition{Task: sp, Since: ts.since, Devices: n, LastManual: ts.manual}
	}
	return ts.def
}
