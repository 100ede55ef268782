package transport

import (
	"context"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
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
	// Sync answers a heartbeat with the server's repository state.
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

// Message is one message of the device channel. Exactly the payload fields
// of its Kind are set. Messages are values: a transport may copy them, and
// neither side modifies a message after Send or inside Handle.
type Message struct {
	// Key is the idempotency key of a message that must not be lost; the
	// receiver de-duplicates by it and acknowledges it with an Ack. It is
	// empty for messages that may be lost (Heartbeat, Sync, Wake, Ack):
	// they are repeated periodically by design.
	Key  string
	Kind Kind
	// Device is the device the message is for or from.
	Device scope.DeviceID
	// SentAt is the sender's clock reading (UTC).
	SentAt time.Time

	Definition *Definition
	TaskID     string
	Start      *Start
	Heartbeat  *HeartbeatInfo
	SyncInfo   *SyncInfo
	Results    []task.Result
	Events     []task.EventInput
	Outbreak   *Outbreak
	Edit       *Edit
	Acks       []string
	// Slot is the device's place in the task's automatic randomized
	// delay (Deliver): see Offset.
	Slot *Slot
	// Control is the payload of StopRun, PauseRun and ResumeRun.
	Control *Control
	// Merged lists the keys of the messages merged into this one (a
	// Results or Events message carrying several outbox entries); the
	// receiver acknowledges each of them. Key is then the first of them.
	Merged []string
}

// Definition is a task as a device holds it.
type Definition struct {
	// Task is the complete task. Its Settings are json.RawMessage on the
	// device side (the device does not know the server's registry).
	Task task.Task
	// Since is when the task's current settings were saved: the start of
	// the window in which a Once or Immediately activation can have been
	// missed by a device that receives the definition late.
	Since time.Time
	// Devices is the number of devices in the task's scope, the input of
	// the automatic randomized delay window.
	Devices int
	// LastManual is the task's latest manual start, which a device joining
	// the scope runs when the task has "run missed tasks" on.
	LastManual *Start
}

// Start is one start of a task on a device.
type Start struct {
	TaskID string
	// RunID identifies the run; a device runs each (TaskID, RunID) at most
	// once.
	RunID int64
	// At is when the run was started (its nominal time).
	At time.Time
	// Due is when the device should start it (At plus its randomized
	// delay); zero means at once.
	Due time.Time
	// Manual is true for a start by an administrator.
	Manual bool
}

// Control says which run a StopRun, PauseRun or ResumeRun is for.
type Control struct {
	// RunID is the run the server knows to be in progress (or started)
	// on the device.
	RunID int64
	// Order orders the pause and resume orders of a task on a device: the
	// task revision that suspended or resumed it. A device applies an
	// order only if it is newer than the last one it applied, so a
	// delayed, duplicated or reordered order never undoes a later one.
	Order int64
}

// HeldTask is a task revision a device holds.
type HeldTask struct {
	TaskID   string
	Revision int64
	// Slot is the delay slot the device holds for the task (nil: none);
	// the server redelivers the definition when the device's slot in
	// the task's current scope differs.
	Slot *Slot
}

// HeartbeatInfo is the payload of a Heartbeat.
type HeartbeatInfo struct {
	// Held lists every task the device holds.
	Held []HeldTask
	// UpdatesGeneration is the newest repository generation the device
	// has acted on.
	UpdatesGeneration int64
}

// SyncInfo is the payload of a Sync.
type SyncInfo struct {
	// UpdatesGeneration counts the repository's update downloads; a device
	// that has acted on an older generation runs its "when new updates are
	// downloaded" tasks.
	UpdatesGeneration int64
	UpdatesAt         time.Time
}

// Outbreak is a virus outbreak event.
type Outbreak struct {
	// AppType is the type of the application that detected it.
	AppType uint8
	At      time.Time
}

// Edit is the device user's edit of a local task.
type Edit struct {
	User         string
	BaseRevision int64
	Task         task.Task
}

// Handler receives messages. Handle is called by the transport, one
// message at a time per receiver; it must not block for long. Sending from
// inside Handle is allowed.
type Handler interface {
	Handle(ctx context.Context, m Message)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m Message)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, m Message) { f(ctx, m) }

// ServerEndpoint is the Administration Server's side of the channel.
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
