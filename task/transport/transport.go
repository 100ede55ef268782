package transport

import (
	"context"
	"encoding/json"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// Errors, shared with every taskfleet package.
var (
	ErrInvalid = errs.ErrInvalid
	ErrClosed  = errs.ErrClosed
)

// ErrUnreachable is returned by Send when the channel to the device is down
// (the device is disconnected). The message was not sent; the sender's
// retry rules (see the package documentation) decide what happens next.
var ErrUnreachable = errUnreachable{}

type errUnreachable struct{}

func (errUnreachable) Error() string { return "transport: device unreachable" }

// Kind says what a Message carries.
type Kind string

// Server → device messages.
const (
	// Deliver carries a task definition (Message.Definition) the device
	// must hold, replacing an older revision.
	Deliver Kind = "deliver"
	// Withdraw removes task Message.TaskID from the device.
	Withdraw Kind = "withdraw"
	// StartRun starts run Message.Start on the device.
	StartRun Kind = "start"
	// StopRun stops the device's run of Message.TaskID
	// (Message.Control.RunID; the run in progress when Control is nil).
	// The server resends it every retry interval until the device reports
	// a final state for that run; the device applies it once.
	StopRun Kind = "stop"
	// PauseRun pauses the device's run of Message.TaskID in progress
	// because the task was suspended (Message.Control), and holds the
	// task's starts until a newer ResumeRun or definition says otherwise.
	// The server resends it every retry interval until the device
	// acknowledges its Key (after it applied the order and queued the
	// run's new state) or the run ends.
	PauseRun Kind = "pause"
	// ResumeRun continues the device's paused run of Message.TaskID (the
	// task was resumed); retried like PauseRun.
	ResumeRun Kind = "resume"
	// Wake is a Wake-on-LAN request for the device (the host's channel
	// sends the magic packet; the message itself may be lost).
	Wake Kind = "wake"
	// Shutdown asks the device to shut down (after a task whose
	// "shut down after completion" option is on).
	Shutdown Kind = "shutdown"
	// Sync answers a heartbeat with the server's repository state (a
	// Quiet heartbeat only when that state is newer than the device's,
	// HeartbeatInfo.Quiet), and tells the device the server is reachable.
	Sync Kind = "sync"
)

// Device → server messages.
const (
	// Heartbeat is the device's periodic synchronization (visibility, the
	// task revisions it holds, its update state).
	Heartbeat Kind = "heartbeat"
	// Results carries run state changes and results (Message.Results).
	Results Kind = "results"
	// Events carries task events (Message.Events).
	Events Kind = "events"
	// UpdatesDownloaded reports that new updates were downloaded to a
	// repository (a distribution point).
	UpdatesDownloaded Kind = "updates_downloaded"
	// VirusOutbreak reports a virus outbreak (Message.Outbreak).
	VirusOutbreak Kind = "virus_outbreak"
	// LocalEdit carries the device user's edit of a local task.
	LocalEdit Kind = "local_edit"
)

// Ack acknowledges messages by their keys, in both directions.
const Ack Kind = "ack"

// Error answers a message the receiver could not process at all (an
// unknown Kind, an unsupported protocol version): Message.Error says why.
// It is never answered and never retried.
const Error Kind = "error"

// Message is one message of the device channel: the wire protocol. Exactly
// the payload fields of its Kind are set. Messages are values: a transport
// may copy them, and neither side modifies a message after Send or inside
// Handle.
//
// The JSON field names are the protocol (see the package documentation,
// "Wire protocol"): the envelope and the payloads keep the names protocol
// 1 used (encoding/json matches them case-insensitively), results the
// snake_case names they always had. No field is a type of another
// taskfleet package, so a change to the task model cannot change the wire.
type Message struct {
	// Version is the protocol version the sender speaks (ProtocolVersion
	// when sent by this package's runtimes; 0 is protocol 1, which had no
	// version field).
	Version int `json:"version,omitempty"`
	// Key is the idempotency key of a message that must not be lost; the
	// receiver de-duplicates by it and acknowledges it with an Ack. It is
	// empty for messages that may be lost (Heartbeat, Sync, Wake, Ack):
	// they are repeated periodically by design.
	Key  string `json:"key,omitempty"`
	Kind Kind   `json:"kind"`
	// Device is the device the message is for or from. On a message from
	// a device it is set by the transport, which authenticated the
	// sender (see ServerEndpoint): whatever the device wrote there is
	// replaced.
	Device DeviceID `json:"device,omitempty"`
	// SentAt is the sender's clock reading (UTC). It is data only: the
	// server never schedules by a device's clock.
	SentAt time.Time `json:"sentAt,omitzero"`

	Definition *Definition    `json:"definition,omitempty"`
	TaskID     string         `json:"taskId,omitempty"`
	Start      *Start         `json:"start,omitempty"`
	Heartbeat  *HeartbeatInfo `json:"heartbeat,omitempty"`
	SyncInfo   *SyncInfo      `json:"syncInfo,omitempty"`
	// Results are a device's run state changes (Results).
	Results []Result `json:"results,omitempty"`
	// Events are a device's task events (Events).
	Events   []Event   `json:"events,omitempty"`
	Outbreak *Outbreak `json:"outbreak,omitempty"`
	Edit     *Edit     `json:"edit,omitempty"`
	Acks     []string  `json:"acks,omitempty"`
	// Slot is the device's place in the task's automatic randomized
	// delay (Deliver): see Offset.
	Slot *Slot `json:"slot,omitempty"`
	// Control is the payload of StopRun, PauseRun and ResumeRun.
	Control *Control `json:"control,omitempty"`
	// Merged lists the keys of the messages merged into this one (a
	// Results or Events message carrying several outbox entries); the
	// receiver acknowledges each of them. Key is then the first of them.
	Merged []string `json:"merged,omitempty"`
	// Error is the payload of an Error answer.
	Error *ErrorInfo `json:"error,omitempty"`
}

// Result is one run state change a device reports: the run RunID of task
// TaskID on the sending device. The device is the message's sender; a
// result cannot name another one.
type Result struct {
	TaskID string `json:"task_id"`
	// Device is kept for protocol 1 agents, which named their own device
	// in each result. When set it must be the sender, or the result is
	// rejected; agents of this version leave it empty.
	Device DeviceID `json:"device_id,omitempty"`
	// RunID is the run: one the server started on the device, or one of
	// the device's own schedule (see RunID).
	RunID int64 `json:"run_id"`
	// Seq orders the device's updates of a run, from SeqDevice to
	// MaxSeq.
	Seq int64 `json:"seq"`
	// State is one of the states a device reports: running, paused,
	// completed, completed_with_warnings, failed, failed_timeout,
	// stopped, restart_required, missed, application_not_running (never
	// scheduled or pending: those are the server's): a State's string.
	State      string    `json:"state"`
	DueAt      time.Time `json:"due_at,omitzero"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	UpdatedAt  time.Time `json:"updated_at,omitzero"`
	// Progress is 0 to 100.
	Progress int `json:"progress"`
	// Message is at most MaxText bytes (agents clip longer texts, see
	// Clip).
	Message         string `json:"message,omitempty"`
	RestartRequired bool   `json:"restart_required,omitempty"`
}

// Event is one task event a device reports (progress, information, a
// warning) for the server's task history.
type Event struct {
	TaskID string `json:"taskId"`
	// Device is kept for protocol 1 agents; when set it must be the
	// sender, or the event is rejected.
	Device DeviceID `json:"deviceId,omitempty"`
	RunID  int64    `json:"runId,omitempty"`
	// At is when it happened on the device (zero: when received).
	At time.Time `json:"at,omitzero"`
	// Level is result, progress or info (an EventLevel's string);
	// Severity info, warning or error (a Severity's string).
	Level    string `json:"level"`
	Severity string `json:"severity"`
	// Message is at most MaxText bytes.
	Message string `json:"message,omitempty"`
	// Key de-duplicates a redelivered event (at most MaxKeyBytes). The
	// server stores it in the sending device's own key space, so it can
	// never equal a key of the server's own records.
	Key string `json:"key,omitempty"`
}

// Definition is a task as a device holds it.
type Definition struct {
	// Task is what the device needs of the task (not the whole task: see
	// TaskSpec).
	Task TaskSpec `json:"task"`
	// Since is when the task's current settings were saved: the start of
	// the window in which a Once or Immediately activation can have been
	// missed by a device that receives the definition late.
	Since time.Time `json:"since,omitzero"`
	// Devices is the number of devices in the task's scope, the input of
	// the automatic randomized delay window.
	Devices int `json:"devices"`
	// LastManual is the task's latest manual start, which a device joining
	// the scope runs when the task has "run missed tasks" on.
	LastManual *Start `json:"lastManual,omitempty"`
}

// Start is one start of a task on a device.
type Start struct {
	TaskID string `json:"taskId"`
	// RunID identifies the run; a device runs each (TaskID, RunID) at most
	// once.
	RunID int64 `json:"runId"`
	// At is when the run was started (its nominal time).
	At time.Time `json:"at,omitzero"`
	// Due is when the device should start it (At plus its randomized
	// delay); zero means at once.
	Due time.Time `json:"due,omitzero"`
	// Manual is true for a start by an administrator.
	Manual bool `json:"manual,omitempty"`
}

// Control says which run a StopRun, PauseRun or ResumeRun is for.
type Control struct {
	// RunID is the run the server knows to be in progress (or started)
	// on the device.
	RunID int64 `json:"runId,omitempty"`
	// Order orders the pause and resume orders of a task on a device: the
	// task revision that suspended or resumed it. A device applies an
	// order only if it is newer than the last one it applied, so a
	// delayed, duplicated or reordered order never undoes a later one.
	Order int64 `json:"order,omitempty"`
}

// HeldTask is a task revision a device holds.
type HeldTask struct {
	// TaskID is at most MaxKeyBytes bytes.
	TaskID   string `json:"taskId"`
	Revision int64  `json:"revision"`
	// Slot is the delay slot the device holds for the task (nil: none);
	// the server redelivers the definition when the device's slot in
	// the task's current scope differs.
	Slot *Slot `json:"slot,omitempty"`
}

// HeartbeatInfo is the payload of a Heartbeat.
type HeartbeatInfo struct {
	// Held lists every task the device holds (at most MaxHeld).
	Held []HeldTask `json:"held,omitempty"`
	// UpdatesGeneration is the newest repository generation the device
	// has acted on.
	UpdatesGeneration int64 `json:"updatesGeneration,omitempty"`
	// Quiet (protocol 4) says the device needs no Sync answer unless the
	// server's updates generation is newer than UpdatesGeneration: nothing
	// waits in its outbox, so the Sync's other use, telling the device
	// that the server is reachable and it should send what waits, has no
	// work to do. Agents set it when their outbox is empty. Without it
	// (agents of protocol 1 to 3, and any agent with messages waiting)
	// every heartbeat is answered with a Sync.
	Quiet bool `json:"quiet,omitempty"`
}

// SyncInfo is the payload of a Sync.
type SyncInfo struct {
	// UpdatesGeneration counts the repository's update downloads; a device
	// that has acted on an older generation runs its "when new updates are
	// downloaded" tasks.
	UpdatesGeneration int64     `json:"updatesGeneration,omitempty"`
	UpdatesAt         time.Time `json:"updatesAt,omitzero"`
}

// Outbreak is a virus outbreak a device detected.
type Outbreak struct {
	// AppType is the type of the application that detected it (a
	// schedule.AppTypes bit).
	AppType uint8 `json:"appType"`
	// At is the device's clock when it detected the outbreak: kept as
	// data only (logged). The server dates the outbreak by its own clock
	// when it receives the report.
	At time.Time `json:"at,omitzero"`
}

// Edit is the device user's edit of one of the device's own local tasks.
type Edit struct {
	// User is the name of the device's local user who edited the task
	// (at most MaxUserBytes). The server records the edit as made by that
	// user of that device ("device:<device>/<user>"), never as a server
	// account.
	User         string `json:"user"`
	BaseRevision int64  `json:"baseRevision"`
	// Task is the edited task as a JSON TaskSpec (protocol 2 agents sent
	// the whole task in the task package's JSON form, which decodes as a
	// TaskSpec too), at most MaxEditBytes. The server takes from it only
	// what a device user may change of a local task (see package
	// task/engine, "Device input"); the rest of the task stays the
	// server's.
	Task json.RawMessage `json:"task"`
}

// ErrorInfo is the payload of an Error answer.
type ErrorInfo struct {
	// Code says what was wrong: ErrUnknownKind or ErrVersion.
	Code string `json:"code"`
	// Kind and Key name the message answered.
	Kind Kind   `json:"kind,omitempty"`
	Key  string `json:"key,omitempty"`
	// Message explains it to a person.
	Message string `json:"message,omitempty"`
}

// Error codes of ErrorInfo.
const (
	// ErrUnknownKind: the receiver does not know the message's Kind (a
	// newer sender); the message was not processed.
	ErrUnknownKind = "unknown_kind"
	// ErrVersion: the sender's protocol version is older than
	// MinProtocolVersion; the message was not processed.
	ErrVersion = "unsupported_version"
)

// Handler receives messages. Handle is called by the transport, one
// message at a time per receiver; it must not block for long. Sending from
// inside Handle is allowed. The message's slices and pointed-to payloads
// are read-only: an in-process transport passes them as the sender built
// them, and a sender may share them between messages (the agent sends one
// heartbeat payload until its held tasks change).
type Handler interface {
	Handle(ctx context.Context, m Message)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m Message)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, m Message) { f(ctx, m) }

// ServerEndpoint is the Administration Server's side of the channel.
//
// Identity: the transport authenticates the device at the other end of
// every message it hands to the server's Handler (a client certificate, a
// per-device token) and sets Message.Device to that device, replacing
// whatever the message carried. The server treats Message.Device as the
// only identity of a message: every result, event, edit, outbreak and
// heartbeat item in it must concern that device, and items that name
// another one are rejected. A transport that cannot authenticate a sender
// must not deliver its messages.
type ServerEndpoint interface {
	// Send sends m to device m.Device. It returns ErrUnreachable when the
	// device is not connected, and may return nil for a message that is
	// then lost (delivery is at-least-once only with the retries the
	// package documentation describes). Safe for concurrent use.
	Send(ctx context.Context, m Message) error
}

// DeviceEndpoint is a device agent's side of the channel.
type DeviceEndpoint interface {
	// Send sends m to the server. It returns ErrUnreachable while the
	// device has no connection. Safe for concurrent use.
	Send(ctx context.Context, m Message) error
}
