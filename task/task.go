package task

import (
	"encoding/json"
	"time"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
)

// Errors, shared with every taskfleet package (errors.Is works across
// them).
var (
	ErrInvalid    = errs.ErrInvalid
	ErrNotFound   = errs.ErrNotFound
	ErrConflict   = errs.ErrConflict
	ErrPermission = errs.ErrPermission
	ErrClosed     = errs.ErrClosed
)

// ValidationError and ValidationErrors report rejected input with the JSON
// path of the field and the allowed values.
type (
	ValidationError  = errs.ValidationError
	ValidationErrors = errs.ValidationErrors
)

// Kind is the kind of a task, derived from its scope.
type Kind string

// Task kinds (the product documentation's "About tasks").
const (
	// Local: performed on one device; editable by the administrator and
	// the device user.
	Local Kind = "local"
	// Group: performed on the devices of an administration group (by
	// default with its subgroups).
	Group Kind = "group"
	// Global: performed on a set of devices (a device list, addresses, or
	// a device selection) regardless of their groups.
	Global Kind = "global"
	// Server: performed on the Administration Server itself.
	Server Kind = "server"
)

// KindOf returns the task kind of a scope kind.
func KindOf(k scope.Kind) Kind {
	switch k {
	case scope.Local:
		return Local
	case scope.Group:
		return Group
	case scope.Server:
		return Server
	}
	return Global
}

// Limits on task text fields.
const (
	MaxNameLength        = 256  // runes
	MaxDescriptionLength = 4096 // runes
	MaxSettingsBytes     = 1 << 20
	// MaxACLEntries bounds a task's access list; each entry's Allow and
	// Deny list at most the four permissions.
	MaxACLEntries = 256
	// MaxPrincipalLength bounds an access-list principal, in bytes.
	MaxPrincipalLength = 256
)

// Task is a task with all its settings (the product documentation's "General task settings
// and properties").
//
// A zero Schedule means the default schedule (Manually); a zero Restart
// policy the default (prompt the user); a zero Account the default
// account; zero Notifications the documented defaults; nil Settings the
// task type's default settings.
type Task struct {
	// ID is assigned by Create and never changes.
	ID string `json:"id"`
	// Name is unique among non-local tasks, and among the local tasks of
	// one device (case-insensitively).
	Name string `json:"name"`
	// Description is free text for administrators.
	Description string `json:"description,omitempty"`

	// Application and Type name a registered TaskType. The task list is
	// grouped by Application.
	Application string `json:"application"`
	// ApplicationVersion is the application version the task was made
	// for (informational; copied from the TaskType when empty).
	ApplicationVersion string `json:"application_version,omitempty"`
	// Type is the TaskType's Name within Application.
	Type string `json:"type"`

	// Scope is the set of devices the task runs on; it decides Kind.
	// Group options (distribute to subgroups, to secondary and virtual
	// servers) and exclusions from scope are part of a group scope.
	Scope scope.Scope `json:"scope"`
	// Schedule holds the start kind and the advanced scheduling settings.
	Schedule schedule.Schedule `json:"schedule"`
	// Account is the run-as account (default: the application's).
	Account credentials.Account `json:"account"`
	// Restart is the operating system restart policy.
	Restart restart.Policy `json:"restart"`
	// Notifications are the history and notification settings.
	Notifications Notifications `json:"notifications"`
	// Security is the access list of a non-group task. Group tasks take
	// their group's security settings: their ACL must be empty.
	Security Security `json:"security"`
	// Settings are the type-specific settings: a value of the type
	// registered for the task type (nil on input means its defaults).
	// Tasks read back from storage whose type is no longer registered
	// carry the stored JSON as a json.RawMessage.
	Settings any `json:"settings"`

	// Suspended holds scheduled starts and pauses running ones.
	Suspended bool `json:"suspended,omitempty"`

	// Opaque holds the fields of an imported task document that taskfleet
	// does not map (a server's vendor fields), in the form the klt package
	// writes (klt.EncodeOpaque), so that exporting the stored task later
	// writes them back unchanged. The task package does not interpret or
	// validate it; it is stored with the task by every store and appears
	// in revision diffs as one value. It never holds secrets: klt drops
	// password and secret fields before they get here. Nil for tasks not
	// imported.
	Opaque json.RawMessage `json:"opaque,omitempty"`

	// Revision is the number of the latest revision; pass it back to
	// Update as the expected revision.
	Revision int64 `json:"revision"`
	// SettingsRevision is the revision that last changed what the task
	// does (not suspend or resume). The engine derives randomized start
	// offsets from it.
	SettingsRevision int64 `json:"settings_revision"`
	// CreatedAt is when Create stored the task (UTC, the Manager's clock).
	CreatedAt time.Time `json:"created_at"`
	// CreatedBy is the ID of the Actor that created the task.
	CreatedBy string `json:"created_by,omitempty"`
	// UpdatedAt is when the latest revision was stored (UTC).
	UpdatedAt time.Time `json:"updated_at"`
	// UpdatedBy is the ID of the Actor of the latest revision.
	UpdatedBy string `json:"updated_by,omitempty"`
}

// Kind returns the task's kind, derived from its scope.
func (t *Task) Kind() Kind { return KindOf(t.Scope.Kind) }

// RunsOnServer reports whether the Administration Server runs the task
// (device selections and server tasks, on server time, only on connected
// devices) rather than the devices (on device time, also offline).
func (t *Task) RunsOnServer() bool { return t.Scope.RunsOnServer() }

// HistoryLevel is what the task history stores.
type HistoryLevel string

// History levels (the product documentation's "Store task history" block).
const (
	// HistoryAll saves all events.
	HistoryAll HistoryLevel = "all"
	// HistoryProgress saves events related to task progress (and results).
	HistoryProgress HistoryLevel = "progress"
	// HistoryResults saves only task execution results.
	HistoryResults HistoryLevel = "results"
)

// Notification defaults and ranges.
const (
	DefaultHistory       = HistoryProgress
	DefaultRetentionDays = 30
	MinRetentionDays     = 1
	MaxRetentionDays     = 3650
	MaxEmailRecipients   = 100
	// MaxEmailLength bounds one e-mail recipient, in bytes (the longest
	// address SMTP can carry, RFC 5321).
	MaxEmailLength = 254
)

// Notifications are a task's history and notification settings. The zero
// value is the default: progress events stored in the server database for
// 30 days, not in the device's event log, notifications of all results.
type Notifications struct {
	// History is what is stored ("" means DefaultHistory).
	History HistoryLevel `json:"history,omitempty"`
	// NoServerHistory turns off "Store in the Administration Server
	// database" (default on).
	NoServerHistory bool `json:"no_server_history,omitempty"`
	// RetentionDays is how long the server keeps events (0 means
	// DefaultRetentionDays; 1..3650).
	RetentionDays int `json:"retention_days,omitempty"`
	// DeviceEventLog turns on "Store in the OS event log on device"
	// (default off).
	DeviceEventLog bool `json:"device_event_log,omitempty"`
	// ErrorsOnly is "Notify of errors only": the Notifier hears only of
	// failed results.
	ErrorsOnly bool `json:"errors_only,omitempty"`
	// Email lists the addresses notified by email through the Notifier.
	Email []string `json:"email,omitempty"`
}

// Level returns the effective history level.
func (n Notifications) Level() HistoryLevel {
	if n.History == "" {
		return DefaultHistory
	}
	return n.History
}

// Retention returns how long events stay in the server database, and
// false when they are not stored there at all.
func (n Notifications) Retention() (time.Duration, bool) {
	if n.NoServerHistory {
		return 0, false
	}
	d := n.RetentionDays
	if d == 0 {
		d = DefaultRetentionDays
	}
	return time.Duration(d) * 24 * time.Hour, true
}

// Permission is an operation an access entry allows or denies.
type Permission string

// Permissions.
const (
	PermRead    Permission = "read"
	PermModify  Permission = "modify"
	PermExecute Permission = "execute"
	PermDelete  Permission = "delete"
)

// Security is the access list of a non-group task.
type Security struct {
	// ACL are the access entries; empty means open to every actor.
	ACL []AccessEntry `json:"acl,omitempty"`
}

// AccessEntry allows and denies permissions to a principal (a user or a
// group name the Authorizer understands). Deny wins over allow.
type AccessEntry struct {
	// Principal is a user or group name (matched against Actor.ID and
	// Actor.Groups).
	Principal string `json:"principal"`
	// Allow are the permissions granted.
	Allow []Permission `json:"allow,omitempty"`
	// Deny are the permissions refused, whatever another entry allows.
	Deny []Permission `json:"deny,omitempty"`
}

// State is the state of a task on one device.
type State string

// Per-device states (the product documentation's task results).
const (
	Scheduled             State = "scheduled"
	Pending               State = "pending"
	Running               State = "running"
	Completed             State = "completed"
	CompletedWithWarnings State = "completed_with_warnings"
	Failed                State = "failed"
	FailedTimeout         State = "failed_timeout"
	Stopped               State = "stopped"
	Paused                State = "paused"
	RestartRequired       State = "restart_required"
	// Missed: the device was not visible when the task was due and "run
	// missed tasks" is off.
	Missed State = "missed"
	// AppNotRunning: the task's application is not running on the device.
	AppNotRunning State = "application_not_running"
)

// States lists every State in display order.
var States = []State{Scheduled, Pending, Running, Paused, Completed, CompletedWithWarnings, Failed, FailedTimeout, Stopped, RestartRequired, Missed, AppNotRunning}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	for _, v := range States {
		if v == s {
			return true
		}
	}
	return false
}

// Final reports whether s ends a run on a device.
func (s State) Final() bool {
	switch s {
	case Completed, CompletedWithWarnings, Failed, FailedTimeout, Stopped, RestartRequired, Missed, AppNotRunning:
		return true
	}
	return false
}

// IsError reports whether s is a failure the administrator is notified of
// under "Notify of errors only".
func (s State) IsError() bool {
	switch s {
	case Failed, FailedTimeout, Missed, AppNotRunning:
		return true
	}
	return false
}

// ServerDevice is the DeviceID under which the results of an
// Administration Server task are recorded.
const ServerDevice scope.DeviceID = "@server"

// Result is the state of a task on one device.
type Result struct {
	// TaskID is the task the result belongs to.
	TaskID string `json:"task_id"`
	// DeviceID is the device (ServerDevice for an Administration Server
	// task).
	DeviceID scope.DeviceID `json:"device_id"`
	// RunID identifies the run on the device; a later run has a larger id
	// (see package task/transport for how run ids are derived).
	RunID int64 `json:"run_id"`
	// Seq orders updates within a run; an update with an older
	// (RunID, Seq) than the stored one is ignored.
	Seq int64 `json:"seq"`
	// State is the device's latest state for the task.
	State State `json:"state"`
	// DueAt is when the run is due to start on the device: the
	// activation plus the device's randomized delay (UTC; zero for a run
	// not started by a schedule).
	DueAt time.Time `json:"due_at,omitzero"`
	// StartedAt is when the device started the run (UTC, device clock).
	StartedAt time.Time `json:"started_at,omitzero"`
	// FinishedAt is when the run reached a final state (UTC).
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// UpdatedAt is when the result last changed (UTC).
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Progress is the percentage done the device reported, 0 to 100.
	Progress int `json:"progress"`
	// Message is the device's text for the state (an error, a warning),
	// at most MaxResultMessage bytes.
	Message string `json:"message,omitempty"`
	// RestartRequired says the run needs an operating-system restart to
	// finish (see the task's restart.Policy).
	RestartRequired bool `json:"restart_required,omitempty"`
}

// Statistics summarise a task's per-device results.
type Statistics struct {
	// ByState counts the devices by their latest state.
	ByState map[State]int `json:"by_state"`
	// Total is the number of devices with a result for the task plus
	// Unknown.
	Total int `json:"total"`
	// Unknown counts the devices of the task's scope whose membership is
	// unknown now (scope.Resolve's Unknown) and that have no result; they
	// are also in ByState under UnknownMembership. Manager.Results lists
	// them with the reason.
	Unknown int `json:"unknown"`
	// Finished counts devices in a final state.
	Finished int `json:"finished"`
	// PercentComplete is Finished / Total x 100 (0 without devices).
	PercentComplete float64 `json:"percent_complete"`
	// RestartRequired counts devices that need a restart to finish.
	RestartRequired int `json:"restart_required"`
}

// Event is one task history event.
type Event struct {
	// ID is assigned by the store, increasing in insertion order.
	ID int64 `json:"id"`
	// TaskID is the task the event belongs to.
	TaskID string `json:"task_id"`
	// DeviceID is the device it happened on ("" for the task itself).
	DeviceID scope.DeviceID `json:"device_id,omitempty"`
	// RunID is the run it belongs to (0: none).
	RunID int64 `json:"run_id,omitempty"`
	// At is when it happened (UTC).
	At time.Time `json:"at"`
	// Level decides whether the task's history level keeps it.
	Level EventLevel `json:"level"`
	// Severity is how the product's event list marks it.
	Severity Severity `json:"severity"`
	// Message describes the event; it never holds secrets.
	Message string `json:"message"`
}

// EventLevel classifies events for the history level filter.
type EventLevel string

// Event levels: HistoryResults keeps EventResult, HistoryProgress keeps
// EventResult and EventProgress, HistoryAll keeps everything.
const (
	EventResult   EventLevel = "result"
	EventProgress EventLevel = "progress"
	EventInfo     EventLevel = "info"
)

// Severity of an event.
type Severity string

// Severities.
const (
	SeverityInfo    Severity = "info"
	SeverityWarning Severity = "warning"
	SeverityError   Severity = "error"
)

// EventOf classifies a result state as a history event: final states are
// results (errors, warnings or information), the others progress. The
// server's history and the device's OS event log use the same rule.
func EventOf(st State) (EventLevel, Severity) {
	if !st.Final() {
		return EventProgress, SeverityInfo
	}
	switch {
	case st.IsError():
		return EventResult, SeverityError
	case st == CompletedWithWarnings || st == RestartRequired:
		return EventResult, SeverityWarning
	}
	return EventResult, SeverityInfo
}

// Keeps reports whether history level l stores events of level e (an
// empty level is the default, DefaultHistory).
func (l HistoryLevel) Keeps(e EventLevel) bool {
	if l == "" {
		l = DefaultHistory
	}
	return l.keeps(e)
}

// keeps reports whether history level l stores events of level e.
func (l HistoryLevel) keeps(e EventLevel) bool {
	switch l {
	case HistoryAll:
		return true
	case HistoryProgress:
		return e == EventResult || e == EventProgress
	case HistoryResults:
		return e == EventResult
	}
	return false
}

// rawSettings is how a task whose type is no longer registered carries
// its settings.
type rawSettings = json.RawMessage
