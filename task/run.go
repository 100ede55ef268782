package task

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
)

// resultBatch is how many results are written per store call.
const resultBatch = 10000

// Start starts a task now on every device of its scope (the product documentation's
// "Starting a task manually"). The scope is resolved against the
// inventory; every device in it gets a pending result for the new run.
// For tasks the server runs (device selections), devices not connected to
// the server are recorded as missed. Devices whose membership is unknown
// are returned in Run.Unknown and get no result.
//
// Errors: ErrNotFound, ErrPermission, ErrInvalid (the task is suspended,
// or its scope needs an inventory and the Manager has none).
func (m *Manager) Start(ctx context.Context, actor Actor, id string) (Run, error) {
	t, err := m.Get(ctx, actor, id)
	if err != nil {
		return Run{}, err
	}
	if err := m.authorize(ctx, actor, OpExecute, t); err != nil {
		return Run{}, err
	}
	return m.start(ctx, actor, t, nil)
}

// StartFor starts a task for the selected devices (the product documentation's "Starting a
// task for selected devices"): the task's scope becomes exactly these
// devices (a new revision) and the task starts on them at once. Its
// schedule is not changed. Only global tasks (devices, addresses or a
// selection) can be re-targeted this way; at least one device is needed.
//
// Errors: ErrNotFound, ErrPermission, ErrConflict (expectRevision is
// stale), ErrInvalid.
func (m *Manager) StartFor(ctx context.Context, actor Actor, id string, expectRevision int64, devices []scope.DeviceID) (Run, error) {
	cur, err := m.Get(ctx, actor, id)
	if err != nil {
		return Run{}, err
	}
	if err := m.authorize(ctx, actor, OpExecute, cur); err != nil {
		return Run{}, err
	}
	if cur.Kind() != Global {
		return Run{}, errs.Invalid("scope.kind", string(cur.Scope.Kind), fmt.Sprintf("a %s task cannot be started for selected devices; only tasks for specific devices can", cur.Kind()))
	}
	if len(devices) == 0 {
		return Run{}, errs.Invalid("devices", "", "select at least one device")
	}
	next := *cur
	next.Revision = expectRevision
	next.Scope = scope.Scope{Kind: scope.Devices, Devices: slices.Clone(devices)}
	t, err := m.update(ctx, actor, next, ActionStartForDevices, nil)
	if err != nil {
		return Run{}, err
	}
	return m.start(ctx, actor, t, devices)
}

func (m *Manager) start(ctx context.Context, actor Actor, t *Task, only []scope.DeviceID) (Run, error) {
	if t.Suspended {
		return Run{}, errs.Invalid("suspended", "true", "the task is suspended; resume it before starting it")
	}
	var res scope.Resolution
	switch {
	case t.Scope.Kind == scope.Server:
		res = scope.Resolution{Kind: scope.Server, OnServer: true, Devices: []scope.DeviceID{ServerDevice}}
	case m.inv != nil:
		var err error
		if res, err = scope.Resolve(ctx, t.Scope, m.inv); err != nil {
			return Run{}, fmt.Errorf("task %q: resolve scope: %w", t.ID, err)
		}
	case t.Scope.Kind == scope.Local:
		res = scope.Resolution{Kind: scope.Local, Devices: []scope.DeviceID{t.Scope.Device}}
	case t.Scope.Kind == scope.Devices:
		res = scope.Resolution{Kind: scope.Devices, Devices: slices.Clone(t.Scope.Devices)}
		slices.Sort(res.Devices)
		res.Devices = slices.Compact(res.Devices)
	default:
		return Run{}, errs.Invalid("scope.kind", string(t.Scope.Kind), "starting this scope needs a device inventory (Config.Inventory)")
	}
	if res.OnServer {
		res.Devices = []scope.DeviceID{ServerDevice}
	}
	now := m.now()
	var runID int64
	planner, planned := m.disp.(RunPlanner)
	if planned {
		// The engine's ids identify a run in every process; use them so
		// the Run returned here is the run the devices report.
		runID = planner.ManualRunID(t, now)
	} else {
		var err error
		if runID, err = m.store.AllocateRunID(ctx, t.ID); err != nil {
			return Run{}, m.storeErr(err, "start task %q", t.ID)
		}
	}
	run := Run{TaskID: t.ID, ID: runID, Manual: true, At: now, Devices: res.Devices, Skipped: res.Offline, Unknown: res.Unknown, Missing: res.Missing}
	batch := make([]storage.ResultRecord, 0, min(resultBatch, len(res.Devices)+len(res.Offline)))
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := m.store.UpsertResults(ctx, storage.UpsertResultsParams{Results: batch})
		batch = batch[:0]
		return err
	}
	add := func(d scope.DeviceID, st State, msg string) error {
		batch = append(batch, storage.ResultRecord{TaskID: t.ID, DeviceID: string(d), RunID: runID, State: string(st), UpdatedAt: now, Message: msg})
		if len(batch) == resultBatch {
			return flush()
		}
		return nil
	}
	// A RunPlanner records the per-device results of its runs itself.
	for _, d := range res.Devices {
		if planned {
			break
		}
		if err := add(d, Pending, ""); err != nil {
			return Run{}, m.storeErr(err, "start task %q", t.ID)
		}
	}
	for _, d := range res.Offline {
		if planned {
			break
		}
		if err := add(d, Missed, "the device is not connected to the Administration Server"); err != nil {
			return Run{}, m.storeErr(err, "start task %q", t.ID)
		}
	}
	if err := flush(); err != nil {
		return Run{}, m.storeErr(err, "start task %q", t.ID)
	}
	msg := fmt.Sprintf("run %d started by %s on %d devices", runID, actor.ID, len(res.Devices))
	if len(only) > 0 {
		msg = fmt.Sprintf("run %d started by %s for %d selected devices", runID, actor.ID, len(res.Devices))
	}
	if len(res.Unknown) > 0 {
		msg += fmt.Sprintf("; %d devices with unknown membership were not started", len(res.Unknown))
	}
	m.appendEvents(ctx, t, []storage.EventRecord{{TaskID: t.ID, RunID: runID, At: now, Level: string(EventProgress), Severity: string(SeverityInfo), Message: msg, Key: fmt.Sprintf("start/%d", runID)}})
	m.log.Info().Str("task", t.ID).Int64("run", runID).Int("devices", len(res.Devices)).Str("actor", actor.ID).Msg("task started")
	if m.disp != nil {
		if err := m.disp.StartRun(ctx, t, run); err != nil {
			m.log.Error().Err(err).Str("task", t.ID).Int64("run", runID).Msg("dispatcher did not take the run")
		}
	}
	return run, nil
}

// Stop stops the task's runs in progress. With a Dispatcher, the engine
// stops the devices and they report "stopped"; without one, the Manager
// records "stopped" for every pending, running or paused device itself.
//
// Errors: ErrNotFound, ErrPermission.
func (m *Manager) Stop(ctx context.Context, actor Actor, id string) error {
	t, err := m.Get(ctx, actor, id)
	if err != nil {
		return err
	}
	if err := m.authorize(ctx, actor, OpExecute, t); err != nil {
		return err
	}
	now := m.now()
	m.appendEvents(ctx, t, []storage.EventRecord{{TaskID: t.ID, At: now, Level: string(EventProgress), Severity: string(SeverityInfo), Message: "stop requested by " + actor.ID}})
	if m.disp != nil {
		if err := m.disp.StopRun(ctx, t); err != nil {
			return fmt.Errorf("task %q: stop: %w", id, err)
		}
		return nil
	}
	after := ""
	for {
		page, err := m.store.ListResults(ctx, storage.ListResultsParams{TaskID: id, States: []string{string(Pending), string(Running), string(Paused)}, AfterDevice: after, Limit: resultBatch})
		if err != nil {
			return m.storeErr(err, "stop task %q", id)
		}
		if len(page) == 0 {
			return nil
		}
		for i := range page {
			page[i].Seq++
			page[i].State = string(Stopped)
			page[i].FinishedAt = now
			page[i].UpdatedAt = now
		}
		if _, err := m.store.UpsertResults(ctx, storage.UpsertResultsParams{Results: page}); err != nil {
			return m.storeErr(err, "stop task %q", id)
		}
		after = page[len(page)-1].DeviceID
	}
}

// Suspend holds the task's scheduled starts and pauses its running
// instances (the engine reads Task.Suspended). Suspending a suspended task
// is a no-op. It records a revision but not a settings revision.
//
// Errors: ErrNotFound, ErrPermission, ErrConflict.
func (m *Manager) Suspend(ctx context.Context, actor Actor, id string) (*Task, error) {
	return m.setSuspended(ctx, actor, id, true)
}

// Resume undoes Suspend.
func (m *Manager) Resume(ctx context.Context, actor Actor, id string) (*Task, error) {
	return m.setSuspended(ctx, actor, id, false)
}

func (m *Manager) setSuspended(ctx context.Context, actor Actor, id string, v bool) (*Task, error) {
	for attempt := 0; ; attempt++ {
		t, err := m.Get(ctx, actor, id)
		if err != nil {
			return nil, err
		}
		if t.Suspended == v {
			return t, nil
		}
		if err := m.authorize(ctx, actor, OpExecute, t); err != nil {
			return nil, err
		}
		t.Suspended = v
		action := ActionResume
		if v {
			action = ActionSuspend
		}
		out, err := m.update(ctx, actor, *t, action, nil)
		if errors.Is(err, ErrConflict) && attempt < 3 {
			continue // a concurrent edit: suspend the newest revision
		}
		return out, err
	}
}

// ResultsParams filter and page per-device results.
type ResultsParams struct {
	// States keeps only these states (all when empty). UnknownMembership
	// is accepted: it keeps the devices of unknown membership.
	States []State
	// After is the last DeviceID of the previous page.
	After scope.DeviceID
	// Limit is the page size (default 100, at most 10,000).
	Limit int
}

// Results returns a task's per-device results ordered by device id. The
// devices of the task's scope whose membership is unknown now and that
// have no result are listed among them in state UnknownMembership, with
// the reason scope.Explain gives in Message (for example "selection
// \"Windows\" cannot be decided for this device: unknown fact device.os").
//
// Cost: besides the page of stored results, each call resolves a group,
// address or selection scope against the inventory and checks its
// unknown devices for results (see Statistics), and explains each unknown
// device on the page (one scope.Explain each, so at most Limit).
//
// Errors: ErrNotFound, ErrPermission, ErrInvalid.
func (m *Manager) Results(ctx context.Context, actor Actor, id string, p ResultsParams) ([]Result, error) {
	t, err := m.Get(ctx, actor, id)
	if err != nil {
		return nil, err
	}
	if p.Limit < 0 || p.Limit > storage.MaxListLimit {
		return nil, errs.Range("limit", p.Limit, 0, storage.MaxListLimit)
	}
	limit := p.Limit
	if limit == 0 {
		limit = storage.DefaultListLimit
	}
	states := make([]string, 0, len(p.States))
	withUnknown := len(p.States) == 0
	for i, s := range p.States {
		if s == UnknownMembership {
			withUnknown = true
			continue
		}
		if !s.Valid() {
			return nil, errs.Invalid(fmt.Sprintf("states[%d]", i), string(s), "is not a result state")
		}
		states = append(states, string(s))
	}
	var recs []storage.ResultRecord
	if len(p.States) == 0 || len(states) > 0 {
		recs, err = m.store.ListResults(ctx, storage.ListResultsParams{TaskID: id, States: states, AfterDevice: string(p.After), Limit: limit})
		if err != nil {
			return nil, m.storeErr(err, "results of task %q", id)
		}
	}
	out := make([]Result, len(recs))
	for i, r := range recs {
		out[i] = fromResultRecord(r)
	}
	if !withUnknown {
		return out, nil
	}
	unknown, err := m.unknownMembers(ctx, t)
	if err != nil || len(unknown) == 0 {
		return out, err
	}
	return m.mergeUnknown(ctx, t, out, unknown, p.After, limit)
}

// Result returns one device's result: its stored result, or, for a
// device of the task's scope whose membership is unknown now and that has
// none, a Result in state UnknownMembership with scope.Explain's reason.
//
// Errors: ErrNotFound, ErrPermission.
func (m *Manager) Result(ctx context.Context, actor Actor, id string, device scope.DeviceID) (Result, error) {
	t, err := m.Get(ctx, actor, id)
	if err != nil {
		return Result{}, err
	}
	r, err := m.store.GetResult(ctx, id, string(device))
	if err == nil {
		return fromResultRecord(r), nil
	}
	if !errors.Is(err, ErrNotFound) || m.inv == nil {
		return Result{}, m.storeErr(err, "result of task %q on %q", id, device)
	}
	switch t.Scope.Kind {
	case scope.Group, scope.Addresses, scope.Selection:
		e, xerr := scope.Explain(ctx, t.Scope, m.inv, device)
		if xerr == nil && e.Membership == scope.Unknown {
			return m.unknownResult(ctx, t, scope.UnknownDevice{ID: device, Reason: e.Reason})
		}
		if xerr != nil && !errors.Is(xerr, ErrNotFound) && !errors.Is(xerr, ErrInvalid) {
			return Result{}, fmt.Errorf("task %q: explain device %q: %w", id, device, xerr)
		}
	}
	return Result{}, m.storeErr(err, "result of task %q on %q", id, device)
}

func fromResultRecord(r storage.ResultRecord) Result {
	return Result{
		TaskID: r.TaskID, DeviceID: scope.DeviceID(r.DeviceID), RunID: r.RunID, Seq: r.Seq, State: State(r.State),
		DueAt: r.DueAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, UpdatedAt: r.UpdatedAt,
		Progress: r.Progress, Message: r.Message, RestartRequired: r.RestartRequired,
	}
}

// Statistics returns a task's device counts per state. The devices of
// the task's scope whose membership is unknown now and that have no
// result are counted in Unknown and in ByState[UnknownMembership], and
// are part of Total (so PercentComplete stays below 100 while some
// devices cannot be decided).
//
// Cost: the counts of stored results come from the store; the unknown
// devices are computed at read time, never stored: a group, address or
// selection scope is resolved against the inventory (the work of Start),
// then each unknown device is checked for a result (one store read each,
// or one paged walk over the task's results when there are more than
// 64). Device, local and server scopes cost nothing extra.
//
// Errors: ErrNotFound, ErrPermission, and the inventory's errors.
func (m *Manager) Statistics(ctx context.Context, actor Actor, id string) (Statistics, error) {
	t, err := m.Get(ctx, actor, id)
	if err != nil {
		return Statistics{}, err
	}
	st, err := m.store.TaskStatistics(ctx, id)
	if err != nil {
		return Statistics{}, m.storeErr(err, "statistics of task %q", id)
	}
	out := Statistics{ByState: make(map[State]int, len(st.ByState)+1), Total: st.Total, RestartRequired: st.RestartRequired}
	for k, v := range st.ByState {
		s := State(k)
		out.ByState[s] = v
		if s.Final() {
			out.Finished += v
		}
	}
	unknown, err := m.unknownMembers(ctx, t)
	if err != nil {
		return Statistics{}, err
	}
	if len(unknown) > 0 {
		out.Unknown = len(unknown)
		out.ByState[UnknownMembership] = len(unknown)
		out.Total += len(unknown)
	}
	if out.Total > 0 {
		out.PercentComplete = float64(out.Finished) * 100 / float64(out.Total)
	}
	return out, nil
}

// MaxResultMessage is the longest result message, in bytes.
const MaxResultMessage = 4096

// recordResults (Runtime.RecordResults) stores per-device result updates from the engine or the
// device channel. Each update replaces the device's result only when its
// (RunID, Seq) is newer, so retried and reordered deliveries are
// harmless. For every applied update an event is stored according to the
// task's history level (de-duplicated by task, device, run and seq), and
// final states are passed to the Notifier according to the task's
// notification settings. Updates for deleted tasks are ignored.
//
// It returns how many updates were applied. Errors: ErrInvalid (naming
// the index of each bad update; nothing is written then).
func (m *Manager) recordResults(ctx context.Context, results []Result) (int, error) {
	var bad ValidationErrors
	bufp := recordBuffers.Get().(*[]storage.ResultRecord)
	if cap(*bufp) < len(results) {
		*bufp = make([]storage.ResultRecord, len(results))
	}
	recs := (*bufp)[:len(results)]
	defer func() {
		clear(recs) // only what this call used, not the largest batch's length
		recordBuffers.Put(bufp)
	}()
	now := m.now()
	for i, r := range results {
		f := resultField(i)
		switch {
		case r.TaskID == "":
			bad = append(bad, errs.Invalid(f.String()+".task_id", "", "is required"))
		case r.DeviceID == "":
			bad = append(bad, errs.Invalid(f.String()+".device_id", "", "is required"))
		case !r.State.Valid():
			bad = append(bad, errs.Invalid(f.String()+".state", string(r.State), "is not a result state"))
		case r.Progress < 0 || r.Progress > 100:
			bad = append(bad, errs.Range(f.String()+".progress", r.Progress, 0, 100))
		case r.RunID < 0 || r.Seq < 0:
			bad = append(bad, errs.Invalid(f.String()+".run_id", fmt.Sprint(r.RunID), "run id and seq must not be negative"))
		case len(r.Message) > MaxResultMessage:
			bad = append(bad, errs.Invalid(f.String()+".message", "", fmt.Sprintf("must be at most %d bytes", MaxResultMessage)))
		}
		upd := r.UpdatedAt
		if upd.IsZero() {
			upd = now
		}
		recs[i] = storage.ResultRecord{
			TaskID: r.TaskID, DeviceID: string(r.DeviceID), RunID: r.RunID, Seq: r.Seq, State: string(r.State),
			DueAt: storage.UTC(r.DueAt), StartedAt: storage.UTC(r.StartedAt), FinishedAt: storage.UTC(r.FinishedAt),
			UpdatedAt: storage.UTC(upd), Progress: r.Progress, Message: r.Message,
			RestartRequired: r.RestartRequired || r.State == RestartRequired,
		}
	}
	if err := bad.Err(); err != nil {
		return 0, err
	}
	tasks := m.loadTasks(ctx, recs)
	// Results that notify are written one by one, so the store's applied
	// count tells whether this delivery is the first (a redelivery must
	// not notify twice); the rest are written in batches.
	batch, notifying := recs, []storage.ResultRecord(nil)
	for i := range recs {
		if m.notify == nil {
			break
		}
		if m.wantsNotification(tasks[recs[i].TaskID], State(recs[i].State)) {
			batch = make([]storage.ResultRecord, 0, len(recs))
			for _, r := range recs {
				if m.wantsNotification(tasks[r.TaskID], State(r.State)) {
					notifying = append(notifying, r)
				} else {
					batch = append(batch, r)
				}
			}
			break
		}
	}
	// History first: its events are keyed, so writing them again on a
	// redelivery adds nothing, while a result already applied would not
	// be applied (nor notified) again. A failed event write fails the
	// call before any result is written, so the caller's retry brings
	// both.
	if err := m.recordResultEvents(ctx, tasks, recs); err != nil {
		return 0, m.storeErr(err, "record result history")
	}
	applied := 0
	for start := 0; start < len(batch); start += resultBatch {
		chunk := batch[start:min(start+resultBatch, len(batch))]
		n, err := m.store.UpsertResults(ctx, storage.UpsertResultsParams{Results: chunk})
		if err != nil {
			return applied, m.storeErr(err, "record results")
		}
		applied += n
	}
	var notify []storage.ResultRecord
	for _, r := range notifying {
		n, err := m.store.UpsertResults(ctx, storage.UpsertResultsParams{Results: []storage.ResultRecord{r}})
		if err != nil {
			return applied, m.storeErr(err, "record results")
		}
		applied += n
		if n == 1 {
			notify = append(notify, r)
		}
	}
	for _, r := range notify {
		t := tasks[r.TaskID]
		err := m.notify.Notify(ctx, Notification{TaskID: t.ID, TaskName: t.Name, DeviceID: scope.DeviceID(r.DeviceID), RunID: r.RunID, State: State(r.State), Message: r.Message, At: r.UpdatedAt, Email: slices.Clone(t.Notifications.Email)})
		if err != nil {
			m.log.Error().Err(err).Str("task", t.ID).Msg("notification failed")
		}
	}
	return applied, nil
}

// recordBuffers recycles RecordResults' conversion buffers: stores copy
// what they keep, so a buffer is free again when the call returns.
var recordBuffers = sync.Pool{New: func() any { return new([]storage.ResultRecord) }}

// eventBuffers recycles the history events of recordResultEvents the same
// way (an event per result was a tenth of a simulated fleet's allocations).
var eventBuffers = sync.Pool{New: func() any { return new([]storage.EventRecord) }}

// resultField names results[i] in errors; it formats only when called
// from an error path's string concatenation.
type resultField int

func (i resultField) String() string { return fmt.Sprintf("results[%d]", int(i)) }

// loadTasks loads the tasks the results belong to (nil for deleted ones).
func (m *Manager) loadTasks(ctx context.Context, recs []storage.ResultRecord) map[string]*Task {
	tasks := map[string]*Task{}
	for _, r := range recs {
		if _, ok := tasks[r.TaskID]; ok {
			continue
		}
		t, err := m.loadShared(ctx, r.TaskID)
		if err != nil {
			t = nil // deleted meanwhile: the store ignores its results
		}
		tasks[r.TaskID] = t
	}
	return tasks
}

// wantsNotification reports whether a result in state st of task t is
// passed to the Notifier.
func (m *Manager) wantsNotification(t *Task, st State) bool {
	if m.notify == nil || t == nil || !st.Final() {
		return false
	}
	return !t.Notifications.ErrorsOnly || st.IsError()
}

// recordResultEvents stores history events for result updates according
// to each task's history level. Events are keyed so a redelivered update
// adds nothing.
func (m *Manager) recordResultEvents(ctx context.Context, tasks map[string]*Task, recs []storage.ResultRecord) error {
	bufp := eventBuffers.Get().(*[]storage.EventRecord)
	if cap(*bufp) < len(recs) {
		*bufp = make([]storage.EventRecord, 0, len(recs))
	}
	events := (*bufp)[:0]
	defer func() {
		clear(events) // hold no strings of this call (only what it used)
		eventBuffers.Put(bufp)
	}()
	var t *Task
	lastID := ""
	var key []byte // scratch: each key is one allocation
	for _, r := range recs {
		if t == nil || r.TaskID != lastID { // batches are mostly one task
			t, lastID = tasks[r.TaskID], r.TaskID
		}
		if t == nil {
			continue
		}
		st := State(r.State)
		level, sev := EventOf(st)
		if !t.Notifications.Stores(level) {
			continue
		}
		// Concatenation, not Sprintf: this runs for every result of a
		// fleet.
		msg := string(st) + " on " + r.DeviceID
		if r.Message != "" {
			msg += ": " + r.Message
		}
		// "result/<run>/<device>/<seq>": the run first, so the keys of
		// a batch (a few runs, many devices) sit side by side in the
		// store's key index instead of one per device all over it (on
		// SQLite, device first cost a fifth of a simulated week's CPU).
		key = strconv.AppendInt(append(key[:0], "result/"...), r.RunID, 10)
		key = append(append(append(key, '/'), r.DeviceID...), '/')
		key = strconv.AppendInt(key, r.Seq, 10)
		events = append(events, storage.EventRecord{
			TaskID: r.TaskID, DeviceID: r.DeviceID, RunID: r.RunID, At: r.UpdatedAt,
			Level: string(level), Severity: string(sev), Message: msg,
			Key: string(key),
		})
	}
	for start := 0; start < len(events); start += resultBatch {
		if err := m.appendEventsFor(ctx, tasks, events[start:min(start+resultBatch, len(events))]); err != nil {
			return err
		}
	}
	return nil
}
