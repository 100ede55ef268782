package task

import (
	"context"
	"time"

	"github.com/taskfleet/taskfleet/scope"
)

// Notification tells the administrator about a task result on a device.
type Notification struct {
	// TaskID is the task whose result it is.
	TaskID string
	// TaskName is the task's name when the result was recorded.
	TaskName string
	// DeviceID is the device that reported it.
	DeviceID scope.DeviceID
	// RunID is the run that ended.
	RunID int64
	// State is the final state.
	State State
	// Message is the device's text for the state.
	Message string
	// At is when the result was recorded (UTC).
	At time.Time
	// Email are the task's e-mail recipients ("Notify by email"); empty
	// when the task has none.
	Email []string
}

// Notifier delivers notifications (e-mail, the host's console, SIEM). The
// Manager calls it for final results: for every final state, or only for
// errors when the task's Notifications.ErrorsOnly is set. Errors are
// logged, never returned to the caller that recorded the result. It must be
// safe for concurrent use.
type Notifier interface {
	// Notify delivers n; an error is logged by the Manager.
	Notify(ctx context.Context, n Notification) error
}

// Run is one start of a task.
type Run struct {
	// TaskID is the task started.
	TaskID string
	// ID is the run id the devices report their results under.
	ID int64
	// Manual is true for a start by an administrator (Start, StartFor).
	Manual bool
	// At is the instant of the start (UTC).
	At time.Time
	// Devices are the devices the run was started on.
	Devices []scope.DeviceID
	// Skipped are devices in scope the run did not start on, with their
	// recorded state (missed: not connected for a task the server runs).
	Skipped []scope.DeviceID
	// Unknown are devices whose membership could not be decided; they are
	// neither started nor skipped (see scope.Resolution).
	Unknown []scope.UnknownDevice
	// Missing are scope entries that name no device.
	Missing []scope.MissingRef
}

// Dispatcher is the engine that delivers tasks to devices and runs them.
// The Manager calls it after the change is stored; an error is logged and
// does not undo the change (the engine re-reads tasks on start-up). All
// methods must be safe for concurrent use.
type Dispatcher interface {
	// TaskSaved is called after a task was created or updated (including
	// suspend, resume, rollback, merge). t is the Manager's cached value,
	// shared: the Dispatcher may keep it (no copy needed) but must not
	// modify it.
	TaskSaved(ctx context.Context, t *Task) error
	// TaskDeleted is called after a task was deleted.
	TaskDeleted(ctx context.Context, id string) error
	// StartRun starts a run of t on the run's devices. Their results are
	// already recorded as pending, unless the Dispatcher is a RunPlanner,
	// which records them itself.
	StartRun(ctx context.Context, t *Task, run Run) error
	// StopRun stops the task's runs in progress.
	StopRun(ctx context.Context, t *Task) error
}

// RunPlanner is an optional interface of a Dispatcher that plans manual
// runs itself: it chooses their ids (the engine derives them from the start
// instant, so every process agrees) and records the per-device results of
// each run it is given in StartRun (scheduled at a randomized time, pending,
// or missed), knowing more than the Manager does. The Manager then records
// only the start event and returns the planned id in Run.ID. Ids must
// increase with time: a result is replaced only by one with a greater
// (RunID, Seq).
type RunPlanner interface {
	// ManualRunID returns the id of a manual run of t started at at.
	ManualRunID(t *Task, at time.Time) int64
}
