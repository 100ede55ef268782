package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/benbjohnson/clock"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/metric"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Errors, shared with every taskfleet package.
var (
	ErrInvalid = errs.ErrInvalid
	ErrClosed  = errs.ErrClosed
	// ErrNotAttached is returned by Tick (and Run) before Attach has
	// given the agent its transport endpoint.
	ErrNotAttached = errors.New("agent: not attached to a transport endpoint (call Attach before Tick or Run)")
)

// ValidationError and ValidationErrors are the shared validation error
// types.
type (
	ValidationError  = errs.ValidationError
	ValidationErrors = errs.ValidationErrors
)

// Defaults.
const (
	DefaultHeartbeat     = 5 * time.Minute
	DefaultRetryInterval = time.Minute
	// DefaultSleepGapBeats is SleepGap's default in heartbeats: a device
	// whose agent did not tick for three heartbeats (15 minutes by
	// default, the server's default visibility timeout) was not visible.
	DefaultSleepGapBeats = 3
	// UpdatesOverdue is how long without new updates before "when new
	// updates are downloaded" tasks run hourly (the product documentation: 25 hours).
	UpdatesOverdue = 25 * time.Hour
	// UpdatesFallbackEvery is how often they then run (every hour).
	UpdatesFallbackEvery = time.Hour
	maxDone              = 64
)

// Run is one run handed to the Executor.
type Run struct {
	// TaskID is the task to run.
	TaskID string
	// RunID identifies the run among the task's runs on this device.
	RunID int64
	// Application is the application the task belongs to.
	Application string
	// Type is the task type within Application.
	Type string
	// Settings are the task's type-specific settings as JSON.
	Settings json.RawMessage
	// Account is the run-as account; Password its opened password (empty
	// for the default account or without a Sealer). Never log it.
	Account credentials.Account
	// Password is the opened password of Account (see above).
	Password credentials.Secret
	// Manual is true for a start by an administrator (Start, StartFor).
	Manual bool
	// At is the nominal start (the activation), Due when it was due (At
	// plus the randomized delay; zero: at once), StartedAt the actual one.
	At, Due, StartedAt time.Time
}

// Outcome is how a run ended.
type Outcome struct {
	// State is final: transport.StateCompleted, StateCompletedWithWarnings,
	// StateFailed or StateStopped.
	State transport.State
	// Message explains the state (an error, a warning); the agent clips
	// it to transport.MaxText bytes.
	Message string
	// RestartRequired: the operation needs an OS restart to complete; the
	// agent applies the task's restart policy.
	RestartRequired bool
}

// Executor runs tasks: the security application. The host implements it.
type Executor interface {
	// AppRunning reports whether the application is running; a task is
	// started only when it is (otherwise the result is
	// application_not_running).
	AppRunning(ctx context.Context, application string) bool
	// Start begins r and returns promptly. The run reports its end exactly
	// once through done, from any goroutine (also before Start returns).
	// An error means the run did not start (result: failed).
	Start(ctx context.Context, r Run, done func(Outcome)) error
	// Stop asks the run to stop; its done is then called (or ignored).
	Stop(ctx context.Context, taskID string, runID int64) error
}

// Pauser is an optional interface of an Executor whose runs can be
// paused, detected with a type assertion: when the administrator suspends
// a task while it runs, the server sends transport.PauseRun and the agent
// calls Pause; Resume continues the run after the task is resumed. A
// paused run's done may still be called (it ended anyway); Stop must stop
// a paused run too. Without Pauser, or when Pause returns an error, the
// run continues and the agent reports that it cannot be paused (a warning
// event and the running result's message). When Resume returns an error
// the agent stops the run and reports it failed.
type Pauser interface {
	// Pause pauses the run in progress.
	Pause(ctx context.Context, taskID string, runID int64) error
	// Resume continues a paused run.
	Resume(ctx context.Context, taskID string, runID int64) error
}

// Power is the device's power control (optional).
type Power interface {
	// Shutdown shuts the device down ("shut down the devices after
	// completing the task").
	Shutdown(ctx context.Context) error
}

// EventLog writes task events to the device's operating-system event log
// (the Windows Event Log, journald, syslog): the product documentation's "Store in the OS
// event log on device" (the task's Notifications.DeviceEventLog). The host
// implements it; it must be safe for concurrent use. A failed write is
// logged and does not fail the run.
type EventLog interface {
	// Write appends e to the operating-system event log.
	Write(ctx context.Context, e LogEntry) error
}

// LogEntry is one task event for the device's event log: a state change
// of a run, kept according to the task's history level.
type LogEntry struct {
	// TaskID is the task whose run changed state.
	TaskID string
	// TaskName is the task's name, for the log's reader.
	TaskName string
	// RunID is the run.
	RunID int64
	// State is the run's new state.
	State transport.State
	// Level is the history level the event belongs to.
	Level transport.EventLevel
	// Severity is the severity to log it with.
	Severity transport.Severity
	// Message describes the change.
	Message string
	// At is when it happened (UTC).
	At time.Time
}

// Config configures an Agent. Device, Transport-side wiring (Attach),
// Store and Executor are required.
type Config struct {
	// Device is this device's id, as the server's inventory knows it.
	// Required.
	Device transport.DeviceID
	// Store keeps the delivered tasks and the outbox: agentsqlite.Open on
	// a real device, NewMemStore in tests. Required.
	Store Store
	// Executor is the vendor's application that runs the tasks. Required.
	Executor Executor
	// Location is the device's zone (default UTC): device tasks follow
	// it.
	Location *time.Location
	// Clock is the time source (default: the wall clock, clock.New());
	// simulations pass a mock and drive the agent with Tick.
	Clock clock.Clock
	// Logger receives the agent's log (default: zerolog.Nop(); the zero
	// Logger logs nothing either): attach at info, task delivered or
	// withdrawn at debug, run started and ended and restart pending at
	// info, storage and transport failures at error. Run-as passwords
	// never appear in it.
	Logger zerolog.Logger
	// MeterProvider receives the agent's OpenTelemetry metrics (nil, the
	// default: no metrics): see the Metric* names. The agent uses only
	// the OpenTelemetry metric API; the host picks the SDK and exporter.
	MeterProvider metric.MeterProvider

	// Restarter carries out restart policies (optional: without it a run
	// that needs a restart ends restart_required).
	Restarter restart.Device
	// Power shuts the device down after tasks that ask for it (optional).
	Power Power
	// Sealer opens run-as passwords (optional).
	Sealer credentials.Sealer
	// EventLog receives the events of tasks that store history in the
	// device's OS event log (optional: without it that setting has no
	// effect on this device).
	EventLog EventLog
	// Heartbeat is the synchronization interval (default 5 minutes).
	Heartbeat time.Duration
	// RetryInterval is how often unacknowledged outbox messages are
	// resent (default 1 minute).
	RetryInterval time.Duration
	// MissedTolerance is how long before the device became visible an
	// activation may be due and still run as an ordinary start rather than
	// a missed one (see "Missed runs" in the package documentation). The
	// default, zero, is strict, as the product documentation describes
	// "run missed tasks" off: a task runs only on devices visible at its
	// scheduled time. A host may allow for a slow boot with a few
	// minutes.
	MissedTolerance time.Duration
	// SleepGap: a Tick that comes more than SleepGap after the previous
	// one means the device slept (or the host stopped ticking) in
	// between; the device was not visible then, and the activations due
	// in the gap are missed (default DefaultSleepGapBeats heartbeats; at
	// least Heartbeat). Hosts that tick less often than that must raise
	// it.
	SleepGap time.Duration
}

// Agent is the device runtime. Drive it with Tick (deterministic, for
// simulations) or Run (a goroutine on the configured clock); deliver
// messages with Handle.
type Agent struct {
	mu     sync.Mutex
	cfg    Config
	clk    clock.Clock
	loc    *time.Location
	log    zerolog.Logger
	met    *metrics
	ep     transport.DeviceEndpoint
	tasks  map[string]*LocalTask
	bootAt time.Time
	// awakeSince is when the device last became visible: the agent's
	// start, or the end of the last sleep (a gap of ticks over SleepGap).
	awakeSince time.Time
	lastTick   time.Time
	nextBeat   time.Time
	nextFlush  time.Time
	flushNow   bool
	updGen     int64
	updAt      time.Time
	lastFall   time.Time
	dpDown     bool
	closed     bool
	dirty      bool
	wakeAt     time.Time
	// taskWake is the tasks' part of wakeAt (nextWake): while nothing is
	// dirty, Tick before it only sends the heartbeat and flushes.
	taskWake time.Time
	// wakes holds each task's own wake (in sorted order, noWake: none)
	// as of the last visit, valid while wakesOK; wakeUpdates: a task
	// follows the updates fallback. See tasksWake.
	wakes       []time.Time
	wakesOK     bool
	wakeUpdates bool
	// touched: a message or a finished run changed some tasks, whose
	// entries in wakes it zeroed (rewake), since the last visit; the next
	// Tick visits those tasks (and the due ones), not all of them.
	touched bool
	// held is the heartbeat's list of held tasks, shared (never changed)
	// by the heartbeats sent until the tasks are visited again.
	held   []transport.HeldTask
	heldOK bool
	// hb is the heartbeat payload last sent (nil: build a new one),
	// shared like held.
	hb *transport.HeartbeatInfo
	// obuf is flush's reused buffer for a MemStore's outbox.
	obuf []transport.Message
	// fresh mirrors the outbox while freshOK: the messages enqueued
	// since the outbox was last known empty (outboxBusy false), in their
	// order, without duplicate keys. Only this agent writes the outbox,
	// so then it holds exactly them, and flush sends fresh without
	// reading the store back (after most runs). The first flush ends the
	// mirror (the outbox then keeps what is not acknowledged).
	fresh   []transport.Message
	freshOK bool
	// outboxBusy: the outbox may hold messages (cleared when a flush finds
	// it empty).
	outboxBusy bool
	order      []*LocalTask // tasks by id (nil: rebuild)
	withdrawn  map[string][]int64
	// wake mirrors wakeAt (Unix nanoseconds, 0: now) for lock-free
	// NextWake.
	wake atomic.Int64

	cmu   sync.Mutex
	compl []completion

	// mem is Config.Store when it is exactly a *MemStore (not a type that
	// embeds one and may override its methods): save and acked use its
	// shortcuts.
	mem *MemStore
}

type completion struct {
	taskID string
	runID  int64
	out    Outcome
}

// New loads the agent's state from its store. The time of New is the
// agent's boot: activations that came due while it was not running are
// missed (run once at boot when the task runs missed tasks, recorded
// missed otherwise). Call Attach before Tick.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	var bad errs.ValidationErrors
	if cfg.Device == "" {
		bad = append(bad, errs.Invalid("Device", "", "is required"))
	}
	if cfg.Store == nil {
		bad = append(bad, errs.Invalid("Store", "", "is required"))
	}
	if cfg.Executor == nil {
		bad = append(bad, errs.Invalid("Executor", "", "is required"))
	}
	if cfg.Heartbeat < 0 {
		bad = append(bad, errs.Invalid("Heartbeat", cfg.Heartbeat.String(), "must not be negative"))
	}
	if cfg.MissedTolerance < 0 {
		bad = append(bad, errs.Invalid("MissedTolerance", cfg.MissedTolerance.String(), "must not be negative"))
	}
	if cfg.SleepGap < 0 {
		bad = append(bad, errs.Invalid("SleepGap", cfg.SleepGap.String(), "must not be negative"))
	}
	if cfg.RetryInterval < 0 {
		bad = append(bad, errs.Invalid("RetryInterval", cfg.RetryInterval.String(), "must not be negative"))
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	if cfg.SleepGap == 0 {
		cfg.SleepGap = DefaultSleepGapBeats * cfg.Heartbeat
	}
	if cfg.SleepGap < cfg.Heartbeat {
		// The agent wakes at least every heartbeat: a shorter gap would
		// count the device asleep between heartbeats.
		return nil, errs.Invalid("SleepGap", cfg.SleepGap.String(), "must be at least Heartbeat ("+cfg.Heartbeat.String()+")")
	}
	a := &Agent{cfg: cfg, clk: cfg.Clock, loc: cfg.Location, log: cfg.Logger, met: newMetrics(cfg.MeterProvider, cfg.Store), tasks: map[string]*LocalTask{}, withdrawn: map[string][]int64{}, dirty: true, outboxBusy: true}
	a.mem, _ = cfg.Store.(*MemStore)
	a.bootAt = a.clk.Now()
	a.awakeSince, a.lastTick = a.bootAt, a.bootAt
	ts, err := cfg.Store.Tasks(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent: load tasks: %w", err)
	}
	for i := range ts {
		t := ts[i]
		a.tasks[t.Def.Task.ID] = &t
	}
	if a.updAt, a.updGen, err = cfg.Store.Meta(ctx, "updates"); err != nil {
		return nil, fmt.Errorf("agent: load update state: %w", err)
	}
	if a.updAt.IsZero() {
		a.updAt = a.bootAt
		if err := cfg.Store.SetMeta(ctx, "updates", a.updAt, a.updGen); err != nil {
			return nil, err
		}
	}
	if a.lastFall, _, err = cfg.Store.Meta(ctx, "fallback"); err != nil {
		return nil, err
	}
	// A run that was in progress when the agent stopped cannot be
	// resumed: it ended with the agent. Report it once.
	for _, t := range a.sorted() {
		if r := t.Running; r != nil && r.Executing {
			a.finish(ctx, t, Outcome{State: transport.StateFailed, Message: "the agent stopped during the run"})
		}
	}
	return a, nil
}

// Attach connects the agent to its endpoint (returned by the host's
// transport for this agent as its Handler). Tick and Run return
// ErrNotAttached until it is called; the endpoint may report a device
// offline, in which case the agent keeps running tasks and queues its
// reports.
func (a *Agent) Attach(ep transport.DeviceEndpoint) {
	a.mu.Lock()
	a.ep = ep
	a.mu.Unlock()
	a.log.Info().Str("device", string(a.cfg.Device)).Msg("agent: attached to the transport")
}

// Device returns the agent's device id.
func (a *Agent) Device() transport.DeviceID { return a.cfg.Device }

func (a *Agent) sorted() []*LocalTask {
	if a.order == nil {
		a.wakesOK = false
		a.order = make([]*LocalTask, 0, len(a.tasks))
		for _, t := range a.tasks {
			a.order = append(a.order, t)
		}
		sort.Slice(a.order, func(i, j int) bool { return a.order[i].Def.Task.ID < a.order[j].Def.Task.ID })
		for i, t := range a.order {
			t.idx = i
		}
	}
	return a.order
}

// rewake marks t changed by something other than time (a message about
// it, the end of its run): its entry in wakes is zeroed, so the next
// visit ticks it and recomputes its wake, and the other tasks' wakes
// still hold. It reports false when wakes does not hold an entry of t
// (they are rebuilt, or t is new): then only a visit of every task is
// safe.
func (a *Agent) rewake(t *LocalTask) bool {
	if !a.wakesOK || a.order == nil || t.idx >= len(a.wakes) || t.idx >= len(a.order) || a.order[t.idx] != t {
		return false
	}
	a.wakes[t.idx] = time.Time{}
	return true
}

// touch is Handle's note that a message changed task t (nil: none): the
// next Tick visits t, or every task when t's wake is not kept (rewake).
func (a *Agent) touch(t *LocalTask) {
	a.wake.Store(0)
	if t == nil {
		return
	}
	if a.rewake(t) {
		a.touched = true
	} else {
		a.dirty = true
	}
}

// Run ticks every interval until ctx is done (goroutine mode). The
// interval must be positive and at most Config.SleepGap (ticks further
// apart count as sleeps of the device); otherwise Run returns a
// ValidationError at once. It returns ErrNotAttached at once before
// Attach.
func (a *Agent) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 || interval > a.cfg.SleepGap {
		return errs.Invalid("interval", interval.String(), fmt.Sprintf("must be positive and at most SleepGap (%s)", a.cfg.SleepGap))
	}
	a.mu.Lock()
	attached := a.ep != nil
	a.mu.Unlock()
	if !attached {
		return ErrNotAttached
	}
	tk := a.clk.Ticker(interval)
	defer tk.Stop()
	for {
		if err := a.Tick(ctx); err != nil {
			a.log.Error().Err(err).Msg("agent tick")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tk.C:
		}
	}
}

// Close stops the agent (its store is the host's to close). Runs in
// progress are left to the executor; a new Agent on the same store reports
// them failed.
func (a *Agent) Close() error {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	return nil
}

// SetDistributionPointReachable tells the agent whether the distribution
// point that downloads updates is reachable. While it is not, "when new
// updates are downloaded" tasks run every hour.
func (a *Agent) SetDistributionPointReachable(ok bool) {
	a.mu.Lock()
	a.dirty = true
	a.wake.Store(0)
	a.dpDown = !ok
	a.mu.Unlock()
}

// ReportUpdatesDownloaded tells the server that this device (a
// distribution point) downloaded new updates.
func (a *Agent) ReportUpdatesDownloaded(ctx context.Context, key string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.enqueue(ctx, transport.Message{Key: "u/" + string(a.cfg.Device) + "/" + key, Kind: transport.UpdatesDownloaded})
}

// ReportVirusOutbreak reports a virus outbreak detected by an application
// of type appType. key makes the report idempotent.
func (a *Agent) ReportVirusOutbreak(ctx context.Context, key string, appType schedule.AppTypes) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.enqueue(ctx, transport.Message{Key: "v/" + string(a.cfg.Device) + "/" + key, Kind: transport.VirusOutbreak,
		Outbreak: &transport.Outbreak{AppType: uint8(appType), At: a.clk.Now().UTC()}})
}

// Event is a task event a device reports to the server's task history
// (ReportEvent).
type Event struct {
	// TaskID is the task the event belongs to: one the device holds.
	TaskID string
	// RunID is the run it belongs to (0: none).
	RunID int64
	// At is when it happened (default: now).
	At time.Time
	// Level decides whether the task's history level keeps the event
	// (required: transport.EventResult, EventProgress or EventInfo).
	Level transport.EventLevel
	// Severity is how the event list marks it (required:
	// transport.SeverityInfo, SeverityWarning or SeverityError).
	Severity transport.Severity
	// Message describes the event; the agent clips it to
	// transport.MaxText bytes.
	Message string
}

// ReportEvent sends a task event (progress, information, a warning) to
// the server's task history. key makes it idempotent (empty: derived from
// the event's task, run and time). Events of a task the device does not
// hold, and events of an unknown level or severity, are refused with an
// ErrInvalid *ValidationError.
func (a *Agent) ReportEvent(ctx context.Context, key string, e Event) error {
	switch e.Level {
	case transport.EventResult, transport.EventProgress, transport.EventInfo:
	default:
		return errs.Invalid("level", transport.Clip(string(e.Level), 64), "must be result, progress or info")
	}
	switch e.Severity {
	case transport.SeverityInfo, transport.SeverityWarning, transport.SeverityError:
	default:
		return errs.Invalid("severity", transport.Clip(string(e.Severity), 64), "must be info, warning or error")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tasks[e.TaskID] == nil {
		return errs.Invalid("task_id", transport.Clip(e.TaskID, transport.MaxKeyBytes), "is not a task of this device")
	}
	if e.At.IsZero() {
		e.At = a.clk.Now()
	}
	if key == "" {
		key = fmt.Sprintf("%s/%d/%d", e.TaskID, e.RunID, e.At.UnixNano())
	}
	k := transport.Clip(string(a.cfg.Device)+"/"+key, transport.MaxKeyBytes-len("ev/"))
	return a.enqueue(ctx, transport.Message{Key: "ev/" + k, Kind: transport.Events, Events: []transport.Event{wireEvent(e, k)}})
}

// EditLocalTask sends the device user's edit of a local task to the
// server, which merges it with administrator priority and delivers the
// merged revision back. edited is the task as the agent holds it (Tasks)
// with the user's changes; the server takes only what a device user may
// change of a local task (its name, description, schedule, run-as
// account, restart policy, device event log settings, settings and
// suspension: see package task/engine, "Device input").
func (a *Agent) EditLocalTask(ctx context.Context, user string, edited transport.TaskSpec) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.tasks[edited.ID]
	if t == nil || !t.Def.Task.Local() {
		return errs.Invalid("id", transport.Clip(edited.ID, transport.MaxKeyBytes), "is not a local task of this device")
	}
	if len(edited.Settings) > 0 && !json.Valid(edited.Settings) {
		return errs.Invalid("settings", "", "must be a JSON document")
	}
	if len(user) > transport.MaxUserBytes {
		return errs.Invalid("user", "", fmt.Sprintf("must be at most %d bytes", transport.MaxUserBytes))
	}
	if !utf8.ValidString(user) {
		return errs.Invalid("user", "", "must be UTF-8 text")
	}
	doc, err := json.Marshal(edited)
	if err != nil {
		return fmt.Errorf("agent: encode the edited task: %w", err)
	}
	if len(doc) > transport.MaxEditBytes {
		return errs.Invalid("task", "", fmt.Sprintf("must encode to at most %d bytes", transport.MaxEditBytes))
	}
	key := fmt.Sprintf("e/%s/%s/%d/%d", a.cfg.Device, edited.ID, t.Def.Task.Revision, a.clk.Now().UnixNano())
	return a.enqueue(ctx, transport.Message{Key: key, Kind: transport.LocalEdit, Edit: &transport.Edit{User: user, BaseRevision: t.Def.Task.Revision, Task: doc}})
}

// AcceptRestart records that the user accepted the restart prompt of a
// task's run; the device restarts at the next Tick.
func (a *Agent) AcceptRestart(taskID string) bool {
	a.mu.Lock()
	a.dirty = true
	a.wake.Store(0)
	defer a.mu.Unlock()
	t := a.tasks[taskID]
	if t == nil || t.Running == nil || t.Running.RequiredAt.IsZero() {
		return false
	}
	t.Running.RestartAt = a.clk.Now()
	return true
}

// Tasks returns the task definitions the agent holds (not the transient
// ones), ordered by id.
func (a *Agent) Tasks() []transport.Definition {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []transport.Definition
	for _, t := range a.sorted() {
		if !t.Transient {
			out = append(out, t.Def)
		}
	}
	return out
}

// OutboxLen returns how many messages wait for acknowledgement.
func (a *Agent) OutboxLen(ctx context.Context) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	ms, _ := a.cfg.Store.Outbox(ctx)
	return len(ms)
}

func (a *Agent) enqueue(ctx context.Context, m transport.Message) error {
	m.Version = transport.ProtocolVersion
	m.Device = a.cfg.Device
	m.SentAt = a.clk.Now().UTC()
	if err := a.cfg.Store.Enqueue(ctx, m); err != nil {
		return fmt.Errorf("agent: outbox: %w", err)
	}
	if !a.outboxBusy {
		clear(a.fresh)
		a.fresh, a.freshOK = a.fresh[:0], true
	}
	if a.freshOK && !slices.ContainsFunc(a.fresh, func(f transport.Message) bool { return f.Key == m.Key }) {
		a.fresh = append(a.fresh, m) // the store ignored a duplicate key
	}
	a.flushNow = true
	a.wake.Store(0)
	a.outboxBusy = true
	return nil
}

func (a *Agent) save(ctx context.Context, t *LocalTask) {
	var err error
	if a.mem != nil {
		err = a.mem.putTask(t)
	} else {
		err = a.cfg.Store.PutTask(ctx, *t)
	}
	if err != nil {
		a.log.Error().Err(err).Str("task", t.Def.Task.ID).Msg("agent: save task")
	}
}

func (a *Agent) report(ctx context.Context, t *LocalTask, r result) {
	r.TaskID = t.Def.Task.ID
	r = a.queueResult(ctx, r)
	a.logEvent(ctx, t, r)
}

// queueResult puts a result of this device into the outbox, its message
// clipped to transport.MaxText so that the server never rejects it.
func (a *Agent) queueResult(ctx context.Context, r result) result {
	r.UpdatedAt = a.clk.Now().UTC()
	r.Message = transport.Clip(r.Message, transport.MaxText)
	key := resultKey(a.cfg.Device, r.TaskID, r.RunID, r.Seq)
	if err := a.enqueue(ctx, transport.Message{Key: key, Kind: transport.Results, Results: []transport.Result{wireResult(r)}}); err != nil {
		a.log.Error().Err(err).Msg("agent: result not queued")
		return r
	}
	a.met.queued.Add(ctx, 1)
	switch {
	case r.RestartRequired:
		a.log.Info().Str("task", r.TaskID).Int64("run", r.RunID).Str("state", string(r.State)).Msg("agent: restart pending: the run needs the device to restart")
	case r.State.Final():
		a.log.Info().Str("task", r.TaskID).Int64("run", r.RunID).Str("state", string(r.State)).Msg("agent: run ended")
	}
	return r
}

// logEvent writes a state change to the device's OS event log when the
// task asks for it and its history level keeps the event.
func (a *Agent) logEvent(ctx context.Context, t *LocalTask, r result) {
	n := t.Def.Task.Notifications
	if a.cfg.EventLog == nil || !n.DeviceEventLog {
		return
	}
	level, sev := transport.EventOf(r.State)
	if !n.History.Keeps(level) {
		return
	}
	e := LogEntry{TaskID: r.TaskID, TaskName: t.Def.Task.Name, RunID: r.RunID, State: r.State, Level: level, Severity: sev, Message: r.Message, At: r.UpdatedAt}
	if err := a.cfg.EventLog.Write(ctx, e); err != nil {
		a.log.Error().Err(err).Str("task", r.TaskID).Msg("agent: OS event log write failed")
	}
}

// NextWake returns the earliest instant at which Tick has work to do, as
// of the last Tick; the zero time means at once (a message, a finished run
// or a report arrived since). A host or simulation driving many agents can
// skip calling Tick before then. It is safe to call concurrently.
func (a *Agent) NextWake() time.Time {
	n := a.wake.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// result is a run state change of this device, as the agent queues it.
type result struct {
	TaskID                                  string
	RunID, Seq                              int64
	State                                   transport.State
	DueAt, StartedAt, FinishedAt, UpdatedAt time.Time
	Progress                                int
	Message                                 string
	RestartRequired                         bool
}

// wireResult is the wire form of a result of this device (the sender is
// the device: the result names none).
func wireResult(r result) transport.Result {
	return transport.Result{TaskID: r.TaskID, RunID: r.RunID, Seq: r.Seq, State: string(r.State), DueAt: r.DueAt.UTC(), StartedAt: r.StartedAt.UTC(),
		FinishedAt: r.FinishedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), Progress: r.Progress, Message: transport.Clip(r.Message, transport.MaxText), RestartRequired: r.RestartRequired}
}

// wireEvent is the wire form of an event of this device with key k, its
// message clipped to transport.MaxText.
func wireEvent(e Event, k string) transport.Event {
	return transport.Event{TaskID: e.TaskID, RunID: e.RunID, At: e.At.UTC(), Level: string(e.Level), Severity: string(e.Severity),
		Message: transport.Clip(e.Message, transport.MaxText), Key: k}
}
