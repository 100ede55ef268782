package transport

import (
	"encoding/json"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/internal/ident"
	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
)

// DeviceID identifies a device on the channel: the inventory's device id.
// It is the same type as scope.DeviceID (both alias one type), so the
// server passes ids between the two without conversion, while a device
// links this package without package scope.
type DeviceID = ident.DeviceID

// State is the state of a run on a device, as results carry it. The
// values are those of the task package's states (package task/engine
// converts, and a test keeps the two lists equal).
type State string

// Run states. Which of them a device may report, and for which runs, is
// the server's rule: see package task/engine, "Device input".
const (
	StateScheduled             State = "scheduled"
	StatePending               State = "pending"
	StateRunning               State = "running"
	StatePaused                State = "paused"
	StateCompleted             State = "completed"
	StateCompletedWithWarnings State = "completed_with_warnings"
	StateFailed                State = "failed"
	StateFailedTimeout         State = "failed_timeout"
	StateStopped               State = "stopped"
	StateRestartRequired       State = "restart_required"
	// StateMissed: the device was not visible when the run was due and
	// the task does not run missed tasks.
	StateMissed State = "missed"
	// StateAppNotRunning: the task's application was not running on the
	// device.
	StateAppNotRunning State = "application_not_running"
)

// States lists every State in display order.
var States = []State{StateScheduled, StatePending, StateRunning, StatePaused, StateCompleted, StateCompletedWithWarnings, StateFailed, StateFailedTimeout, StateStopped, StateRestartRequired, StateMissed, StateAppNotRunning}

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	for _, v := range States {
		if v == s {
			return true
		}
	}
	return false
}

// Final reports whether s ends a run.
func (s State) Final() bool {
	switch s {
	case StateCompleted, StateCompletedWithWarnings, StateFailed, StateFailedTimeout, StateStopped, StateRestartRequired, StateMissed, StateAppNotRunning:
		return true
	}
	return false
}

// IsError reports whether s is a failure ("notify of errors only").
func (s State) IsError() bool {
	switch s {
	case StateFailed, StateFailedTimeout, StateMissed, StateAppNotRunning:
		return true
	}
	return false
}

// EventLevel is the history level an event belongs to: a task's history
// setting keeps some levels and drops the others.
type EventLevel string

// Event levels.
const (
	// EventResult: a run's final result.
	EventResult EventLevel = "result"
	// EventProgress: a run's progress (started, paused, a warning).
	EventProgress EventLevel = "progress"
	// EventInfo: anything else worth knowing.
	EventInfo EventLevel = "info"
)

// Severity is how an event is marked.
type Severity string

// Severities.
const (
	SeverityInfo    Severity = "info"
	SeverityWarning Severity = "warning"
	SeverityError   Severity = "error"
)

// EventOf returns the level and severity of the event that records a
// run's change to state s.
func EventOf(s State) (EventLevel, Severity) {
	if !s.Final() {
		return EventProgress, SeverityInfo
	}
	switch {
	case s.IsError():
		return EventResult, SeverityError
	case s == StateCompletedWithWarnings || s == StateRestartRequired:
		return EventResult, SeverityWarning
	}
	return EventResult, SeverityInfo
}

// HistoryLevel is what a task's history keeps: "all", "progress" (the
// default, also for "") or "results".
type HistoryLevel string

// History levels.
const (
	HistoryAll      HistoryLevel = "all"
	HistoryProgress HistoryLevel = "progress"
	HistoryResults  HistoryLevel = "results"
)

// Keeps reports whether history level l keeps events of level e (an empty
// or unknown level is HistoryProgress).
func (l HistoryLevel) Keeps(e EventLevel) bool {
	switch l {
	case HistoryAll:
		return true
	case HistoryResults:
		return e == EventResult
	}
	return e == EventResult || e == EventProgress
}

// TaskSpec is a task as a device needs it: what the server delivers in a
// Definition and what a device user edits in a LocalEdit. It is part of
// the wire protocol, not the task model: package task/engine builds it
// from a task (and takes a device's edit back), and carries only what a
// device needs. A task's access list, its scope's groups, devices and
// selection, its e-mail recipients and who created or changed it never
// reach a device.
//
// The JSON names are those of the task package's form of a task, which
// protocol 2 delivered whole, so an agent of protocol 2 reads a TaskSpec
// as the task it used to get, and a TaskSpec decodes from such a task (the
// fields it does not carry are ignored).
//
// Schedule, Account and Restart are the light domain types of packages
// schedule, credentials and restart (none of them links the task model):
// the device runs their logic. Their JSON forms are part of the protocol,
// pinned by the golden message files like every other field.
type TaskSpec struct {
	// ID is the task's id (at most MaxKeyBytes bytes).
	ID string `json:"id"`
	// Name is the task's name, for the device's user and its event log.
	Name string `json:"name"`
	// Description is the task's description, for the device's user.
	Description string `json:"description,omitempty"`
	// Application is the application that runs the task: the agent
	// starts a run only while the Executor reports it running.
	Application string `json:"application"`
	// ApplicationVersion is the application version the task was made
	// for (informational).
	ApplicationVersion string `json:"application_version,omitempty"`
	// Type is the task type within Application.
	Type string `json:"type"`
	// Scope carries the kind of the task's scope only.
	Scope ScopeSpec `json:"scope"`
	// Schedule is when the task starts and its advanced settings (stop
	// after, randomized delay, run missed, shut down after).
	Schedule schedule.Schedule `json:"schedule"`
	// Account is the run-as account: its name and its password sealed
	// for the device (the agent opens it with its Sealer only to start a
	// run); never a clear-text password.
	Account credentials.Account `json:"account"`
	// Restart is the operating system restart policy of a run that needs
	// a restart.
	Restart restart.Policy `json:"restart"`
	// Notifications are what the device does with the task's events.
	Notifications NotificationsSpec `json:"notifications"`
	// Settings are the task type's settings as JSON, handed to the
	// Executor unchanged (the device does not know the server's type
	// registry). At most the task package's MaxSettingsBytes.
	Settings json.RawMessage `json:"settings"`
	// Suspended holds the task's starts (see PauseRun for a run in
	// progress).
	Suspended bool `json:"suspended,omitempty"`
	// Revision is the task's revision: a device keeps the newest it was
	// given and reports it in its heartbeat.
	Revision int64 `json:"revision"`
	// SettingsRevision is the revision that last changed what the task
	// does: the input of the device's randomized start offset.
	SettingsRevision int64 `json:"settings_revision"`
}

// Local reports whether the task is a local task of the device (its user
// may edit it: see Edit).
func (t *TaskSpec) Local() bool { return t.Scope.Kind == ScopeLocal }

// ScopeKind is the kind of a task's scope (the scope package's kinds).
type ScopeKind string

// ScopeLocal is the kind of a local task: a task of one device, which its
// user may edit. The other kinds ("group", "devices", "addresses",
// "selection", "server") are carried as the server names them.
const ScopeLocal ScopeKind = "local"

// ScopeSpec is what a device knows of a task's scope: its kind. Which
// groups, devices or selection it names stays on the server.
type ScopeSpec struct {
	// Kind is the scope's kind.
	Kind ScopeKind `json:"kind"`
}

// NotificationsSpec is what a device needs of a task's history settings.
type NotificationsSpec struct {
	// History is the task's history level: which events the device
	// writes to its OS event log ("" is "progress").
	History HistoryLevel `json:"history,omitempty"`
	// DeviceEventLog turns on "Store in the OS event log on device".
	DeviceEventLog bool `json:"device_event_log,omitempty"`
}
