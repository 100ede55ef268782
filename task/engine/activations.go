package engine

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Scheduling activations: server-run tasks fire on the server's clock
// (Tick), on updates downloaded, on virus outbreaks and after other
// tasks; a fire writes its marker to the engine state first, so a run
// fires once whatever the replicas and restarts (state: scheduling,
// updatesState; the per-task cursors in taskState).

// UpdatesDownloaded records that the repository received new updates
// (key de-duplicates repeated reports): "when new updates are downloaded"
// tasks run on the server's devices now and on device tasks' devices at
// their next synchronization.
func (s *Server) UpdatesDownloaded(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.live("UpdatesDownloaded"); err != nil {
		return err
	}
	s.updatesDownloaded(ctx, key, s.clk.Now())
	return nil
}

func (s *Server) updatesDownloaded(ctx context.Context, key string, now time.Time) {
	if key != "" {
		if s.upd.updKeys[key] {
			return
		}
		if len(s.upd.updKeys) >= maxOutbreakKeys {
			s.upd.updKeys = map[string]bool{} // bounded: devices choose the keys
		}
		s.upd.updKeys[key] = true
	}
	s.upd.updAt = now.UTC()
	gen := now.UnixMilli()
	if gen <= s.upd.updGen {
		gen = s.upd.updGen + 1
	}
	s.upd.updGen = gen
	for _, id := range s.sortedIDs() {
		ts := s.cat.tasks[id]
		if ts.onServer && ts.t.Schedule.Kind == schedule.OnUpdates && !ts.t.Suspended {
			s.fire(ctx, ts, now, now, transport.Triggered)
		}
	}
	sync := &transport.SyncInfo{UpdatesGeneration: s.upd.updGen, UpdatesAt: s.upd.updAt}
	for n, d := range s.dev.ids {
		if tss, _ := s.deviceTasks(int32(n)); len(tss) > 0 && s.dev.visibleAt(int32(n), now, s.cfg.VisibilityTimeout) {
			_ = s.send(ctx, transport.Message{Kind: transport.Sync, Device: d, SyncInfo: sync})
		}
	}
}

// VirusOutbreak starts the "on virus outbreak" tasks whose application
// types include appType, on the devices of their scopes. Reports of the
// same outbreak (same at) start each task once.
func (s *Server) VirusOutbreak(ctx context.Context, appType schedule.AppTypes, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.live("VirusOutbreak"); err != nil {
		return err
	}
	s.virusOutbreak(ctx, appType, at, s.clk.Now())
	return nil
}

func (s *Server) virusOutbreak(ctx context.Context, appType schedule.AppTypes, at, now time.Time) {
	for _, id := range s.sortedIDs() {
		ts := s.cat.tasks[id]
		sch := ts.t.Schedule
		if sch.Kind != schedule.OnVirusOutbreak || !sch.AppTypes.Has(appType) || ts.t.Suspended {
			continue
		}
		if ts.onServer {
			s.fire(ctx, ts, at, now, transport.Triggered)
			continue
		}
		st := transport.Start{TaskID: id, RunID: transport.RunID(at, transport.Triggered), At: at}
		s.startOn(ctx, ts, st, ts.devices, ts.t.SettingsRevision, now)
	}
}

// triggered returns the ids of tasks that some "on completing another
// task" task waits for (rebuilt with the task list).
func (s *Server) triggered() map[string]bool {
	if s.cat.trig == nil {
		s.cat.trig = map[string]bool{}
		for _, ts := range s.cat.tasks {
			if ts.t.Schedule.Kind == schedule.OnTaskCompletion {
				s.cat.trig[ts.t.Schedule.TaskID] = true
			}
		}
	}
	return s.cat.trig
}

// lastStartKinds are the schedules whose last start a device joining the
// scope runs when the task runs missed tasks (the product documentation).
func lastStartKinds(k schedule.Kind) bool {
	return k == schedule.Manual || k == schedule.Once || k == schedule.Immediately
}

// joinedMissed starts the last start of a server-run Manually, Once or
// Immediately task with "run missed tasks" on the devices that joined its
// scope, once per device (a device that left and came back, or whose
// start is recorded already, is not started again).
func (s *Server) joinedMissed(ctx context.Context, ts *taskState, added []scope.DeviceID, now time.Time) {
	if len(added) == 0 || !ts.onServer || !ts.t.Schedule.RunMissed || ts.lastFire == nil || !lastStartKinds(ts.t.Schedule.Kind) {
		return
	}
	st := *ts.lastFire
	var devs []scope.DeviceID
	for _, d := range added {
		if !s.known(ctx, ts.t.ID, d, st.RunID) {
			devs = append(devs, d)
		}
	}
	if len(devs) > 0 {
		s.startOn(ctx, ts, st, devs, startRevision(ts, st), now)
	}
}

// FireMarkerRetention is how long the engine keeps the fire marker of an
// activation (storage.EngineStateFire) when RecoveryWindow is shorter:
// a restarted or second replica never fires an activation this recent
// twice. Older markers are purged when the task fires again, so the
// newest marker of a task is always kept.
const FireMarkerRetention = 31 * 24 * time.Hour

// fire runs an activation of a server-run task on the devices of its
// scope that are connected now (the selection is resolved at fire time).
func (s *Server) fire(ctx context.Context, ts *taskState, act, now time.Time, kind transport.RunKind) {
	st := transport.Start{TaskID: ts.t.ID, RunID: transport.RunID(act, kind), At: act}
	// The fire marker is engine state, not history: history settings and
	// retention never touch it, and no device event can take its key.
	n, err := s.cfg.Store.PutEngineState(ctx, storage.PutEngineStateParams{Records: []storage.EngineStateRecord{{
		TaskID: ts.t.ID, Kind: storage.EngineStateFire, Key: strconv.FormatInt(st.RunID, 10), RunID: st.RunID, At: storage.UTC(now),
	}}})
	if err != nil {
		s.log.Error().Err(err).Str("task", ts.t.ID).Msg("engine: fire marker")
		return
	}
	if n == 0 {
		return // fired before (a server restart): its starts are recovered from storage
	}
	if _, err := s.cfg.Store.PurgeEngineState(ctx, storage.PurgeEngineStateParams{TaskID: ts.t.ID, Kind: storage.EngineStateFire, Before: storage.UTC(now.Add(-max(FireMarkerRetention, s.cfg.RecoveryWindow)))}); err != nil {
		s.log.Error().Err(err).Str("task", ts.t.ID).Msg("engine: purge old fire markers")
	}
	if ts.t.Notifications.Stores(task.EventProgress) {
		if _, err := s.cfg.Store.AppendEvents(ctx, storage.AppendEventsParams{Events: []storage.EventRecord{{
			TaskID: ts.t.ID, RunID: st.RunID, At: storage.UTC(now), Level: string(task.EventProgress), Severity: string(task.SeverityInfo),
			Message: fmt.Sprintf("scheduled start at %s", act.UTC().Format(time.RFC3339)),
		}}}); err != nil {
			s.log.Error().Err(err).Str("task", ts.t.ID).Msg("engine: fire history event")
		}
	}
	s.stats.Fired++
	s.met.fired.Add(ctx, 1)
	if late := now.Sub(act); late > s.cfg.RetryInterval {
		s.log.Info().Str("task", ts.t.ID).Time("activation", act.UTC()).Dur("late", late).Msg("engine: catch-up run: an activation the server missed fires now")
	}
	s.resolve(ctx, ts)
	ts.lastFire = &st
	s.startOn(ctx, ts, st, ts.devices, ts.t.SettingsRevision, now)
}

// clockBack follows the server's clock stepping back by step: resends,
// scope refreshes and the other periodic duties are due within their
// intervals of the new time rather than an interval after the old one (a
// start waiting for a resend would otherwise wait for the length of the
// step), and the starts not yet answered are due step earlier: their due
// times were computed on the old clock. Schedules keep their cursors:
// nothing fires twice.
func (s *Server) clockBack(now time.Time, step time.Duration) {
	clamp := func(t *time.Time, every time.Duration) {
		if t.After(now.Add(every)) {
			*t = now
		}
	}
	for _, dp := range s.disp.pending {
		clamp(&dp.next, s.cfg.RetryInterval)
		if dp.start.Due.After(now) {
			dp.start.Due = dp.start.Due.Add(-step)
		}
	}
	if !s.disp.nextDisp.IsZero() {
		clamp(&s.disp.nextDisp, s.cfg.RetryInterval)
	}
	for _, c := range s.ctl.controls {
		clamp(&c.next, s.cfg.RetryInterval)
	}
	if !s.ctl.nextCtl.IsZero() {
		clamp(&s.ctl.nextCtl, s.cfg.RetryInterval)
	}
	clamp(&s.sched.nextScope, s.cfg.ScopeRefresh)
	clamp(&s.sched.nextPurge, s.cfg.PurgeEvery)
	clamp(&s.lead.nextReconcile, s.cfg.ScopeRefresh)
	for _, ts := range s.cat.tasks {
		ts.nextWake, ts.wakes = time.Time{}, nil
	}
}

// updatesFallback fires the server-run "when new updates are downloaded"
// tasks (device selections, Administration Server tasks) every
// UpdatesFallbackEvery while the repository got no new updates for
// UpdatesOverdue, as the agent does for device tasks: the activations
// are at base+UpdatesOverdue+k*UpdatesFallbackEvery (base: the last
// download, or Open), the latest due one fires (one catch-up after a
// stall, none twice: a clock stepping back fires nothing until it passes
// the last one again).
func (s *Server) updatesFallback(ctx context.Context, now time.Time) {
	base := s.upd.updAt
	if base.IsZero() {
		base = s.sched.openedAt
	}
	first := base.Add(UpdatesOverdue)
	if first.After(now) {
		return
	}
	act := first.Add(now.Sub(first) / UpdatesFallbackEvery * UpdatesFallbackEvery)
	if !act.After(s.upd.lastFall) {
		return
	}
	s.upd.lastFall = act
	for _, id := range s.sortedIDs() {
		ts := s.cat.tasks[id]
		if ts.onServer && ts.t.Schedule.Kind == schedule.OnUpdates && !ts.t.Suspended {
			s.fire(ctx, ts, act, now, transport.Scheduled)
		}
	}
}
