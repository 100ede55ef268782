package task

import (
	"context"
	"fmt"
)

// RevisionAction is what made a revision. It is recorded with every
// revision and shown in the revision history.
type RevisionAction string

// Revision actions.
const (
	// ActionCreate: the task was created (Create).
	ActionCreate RevisionAction = "create"
	// ActionUpdate: an administrator changed the task (Update).
	ActionUpdate RevisionAction = "update"
	// ActionCopy: the task was created as a copy of another (Copy).
	ActionCopy RevisionAction = "copy"
	// ActionImport: the task was created from an imported file (KLT).
	ActionImport RevisionAction = "import"
	// ActionRollback: an earlier revision's settings were restored.
	ActionRollback RevisionAction = "rollback"
	// ActionMerge: a device user's edit of a local task was merged.
	ActionMerge RevisionAction = "merge"
	// ActionSuspend and ActionResume: the task was suspended or resumed.
	ActionSuspend RevisionAction = "suspend"
	ActionResume  RevisionAction = "resume"
	// ActionStartForDevices: the task was re-targeted by StartFor.
	ActionStartForDevices RevisionAction = "start_for_devices"
	// ActionChangePassword: the change-password wizard changed the
	// task's account.
	ActionChangePassword RevisionAction = "change_password"
)

// Valid reports whether a is one of the RevisionAction constants.
func (a RevisionAction) Valid() bool {
	switch a {
	case ActionCreate, ActionUpdate, ActionCopy, ActionImport, ActionRollback, ActionMerge,
		ActionSuspend, ActionResume, ActionStartForDevices, ActionChangePassword:
		return true
	}
	return false
}

// Runtime is the side of the task store that only a server runtime (the
// engine, task/engine) and importers (klt) use: recording what devices
// report, purging history, and naming imported tasks. Its calls take no
// administrator and ask no Authorizer, so they must never be exposed to
// administrators or devices directly: a host's console uses the Manager.
//
// A Runtime is obtained with (*Manager).Runtime and shares the Manager's
// store, registry, clock and logger. It is safe for concurrent use.
type Runtime struct {
	m *Manager
}

// Runtime returns the runtime-only surface of m. It is meant for server
// runtimes (task/engine) and importers (klt) only; see Runtime.
func (m *Manager) Runtime() *Runtime { return &Runtime{m: m} }

// RecordResults stores per-device result updates from the engine or the
// device channel. Each update replaces the device's result only when its
// (RunID, Seq) is newer, so retried and reordered deliveries are
// harmless. For every update an event is stored according to the task's
// history level (de-duplicated by task, device, run and seq), before the
// result itself; final states are passed to the Notifier according to the
// task's notification settings. Updates for deleted tasks are ignored.
//
// It returns how many updates were applied. Errors: ErrInvalid (naming
// the index of each bad update; nothing is written then); any storage
// error, also of the history-event write: the caller must then treat the
// whole call as not stored and deliver it again (the engine does not
// acknowledge it, so the agent resends).
func (r *Runtime) RecordResults(ctx context.Context, results []Result) (int, error) {
	return r.m.recordResults(ctx, results)
}

// RecordEvents stores task events reported by devices or the engine
// (progress, information, warnings). Events whose level the task's history
// setting excludes are dropped; a non-empty key de-duplicates redelivered
// events. It returns how many were stored.
//
// Errors: ErrInvalid (naming the index of each bad event); any storage
// error (nothing may have been stored: deliver again).
func (r *Runtime) RecordEvents(ctx context.Context, events []EventInput) (int, error) {
	return r.m.recordEvents(ctx, events)
}

// PurgeHistory deletes every task's events older than the task's own
// retention ("Store in the Administration Server database for N days"),
// and all events of tasks that do not store history on the server. The
// engine calls it on a schedule; hosts without the engine call it
// themselves (daily is enough). Tasks whose stored body cannot be decoded
// keep their events (their retention is unknown) and are counted in
// PurgeReport.Undecodable.
func (r *Runtime) PurgeHistory(ctx context.Context) (PurgeReport, error) {
	return r.m.purgeHistory(ctx)
}

// FreeName returns t.Name if no task in its namespace (the non-local
// tasks, or the local tasks of t's device) uses it, or the name with the
// next free " (n)" index (the import rule of the product documentation).
// It reveals which names exist, so it is not on the Manager, whose calls
// all take an authorized actor.
func (r *Runtime) FreeName(ctx context.Context, t *Task) (string, error) {
	return r.m.freeName(ctx, t)
}

// CreateWithFreeName creates t as actor, adding the next free " (n)"
// index to its name when the name is taken, also when concurrent callers
// race for the same name. action is recorded in the first revision (zero:
// ActionCreate). The actor is authorized for OpCreate like Create.
//
// Errors: as Create; ErrInvalid for an unknown action.
func (r *Runtime) CreateWithFreeName(ctx context.Context, actor Actor, t Task, action RevisionAction) (*Task, error) {
	if action == "" {
		action = ActionCreate
	}
	if !action.Valid() {
		return nil, fmt.Errorf("task: %q is not a revision action: %w", string(action), ErrInvalid)
	}
	return r.m.createWithFreeName(ctx, actor, t, action)
}
