package engine

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/metric"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

// The Server is the Manager's task.Dispatcher and the transport's
// Handler.
var (
	_ task.Dispatcher   = (*Server)(nil)
	_ transport.Handler = (*Server)(nil)
)

// Errors, shared with every taskfleet package.
var (
	ErrInvalid = errs.ErrInvalid
	ErrClosed  = errs.ErrClosed
	// ErrAlreadyOpen is returned by a second Open of a Server: a Server
	// binds one Manager and one endpoint for its life; make a new Server
	// (engine.New) to bind others.
	ErrAlreadyOpen = errors.New("engine: server already open")
)

// ValidationError and ValidationErrors are the shared validation error
// types.
type (
	ValidationError  = errs.ValidationError
	ValidationErrors = errs.ValidationErrors
)

// Defaults.
const (
	DefaultRetryInterval     = time.Minute
	DefaultScopeRefresh      = 15 * time.Minute
	DefaultPurgeEvery        = 24 * time.Hour
	DefaultVisibilityTimeout = 15 * time.Minute
	DefaultRecoveryWindow    = 10 * time.Minute
	// UpdatesOverdue is how long without new updates in the repository
	// before server-run "when new updates are downloaded" tasks run every
	// UpdatesFallbackEvery (the product documentation: 25 hours, then
	// every hour; agent.UpdatesOverdue for device tasks).
	UpdatesOverdue       = 25 * time.Hour
	UpdatesFallbackEvery = time.Hour
)

// Config configures a Server. Store and Inventory are required.
type Config struct {
	// Store is the Manager's store (the engine reads due results from it,
	// keeps its fire markers and stop orders in its engine state, and
	// takes its leader lease there).
	Store storage.Store
	// Inventory is the device inventory (scopes, connection state, zones).
	Inventory scope.Inventory
	// Location is the Administration Server's zone (default UTC).
	Location *time.Location
	// Clock is the time source (default: the wall clock); simulations
	// pass a mock and drive the server with Tick.
	Clock clock.Clock
	// Logger receives the engine's log (default: zerolog.Nop(), the zero
	// Logger logs nothing either): lifecycle at info (opened, closed,
	// leader lease taken or released), decisions at debug (task loaded,
	// run fired, run dispatched to N devices, catch-up run), rejected
	// device items and undecodable tasks at warn/error. Secrets never
	// appear in it.
	Logger zerolog.Logger
	// MeterProvider receives the engine's OpenTelemetry metrics (nil,
	// the default: no metrics). See the Metric* names.
	MeterProvider metric.MeterProvider
	// RetryInterval: how long after it was sent an unanswered start is
	// sent again (1 minute); each further resend waits twice as long as
	// the one before, up to MaxRetryInterval. A device that becomes
	// visible again (its first heartbeat after VisibilityTimeout, or
	// after a server restart) gets its unanswered starts at once, and
	// their back-off starts over. Pause, resume and stop orders are
	// resent every RetryInterval.
	RetryInterval time.Duration
	// MaxRetryInterval: the longest wait between two resends of an
	// unanswered start (default 8 x RetryInterval; RetryInterval turns
	// the back-off off). A start is resent until its device answers, so
	// a device that missed it gets it; the back-off keeps a fleet whose
	// answers are merely slow (a busy server after a restart) from
	// receiving the same start every RetryInterval.
	MaxRetryInterval time.Duration
	// ScopeRefresh: how often scopes are re-resolved (15 minutes).
	ScopeRefresh time.Duration
	// PurgeEvery: how often history is purged (daily).
	PurgeEvery time.Duration
	// VisibilityTimeout: a device not heard from for this long is not
	// visible; its next heartbeat makes it visible again (15 minutes).
	VisibilityTimeout time.Duration
	// RecoveryWindow: on Open, activations of server-run tasks this far
	// back that were not fired (the server stopped mid-dispatch) are fired
	// (10 minutes).
	RecoveryWindow time.Duration

	// ReplicaID names this server replica in claims and the leader lease
	// (default: a random id per Server). It must differ between replicas
	// sharing a store.
	ReplicaID string
	// LeaseTTL is how long a replica's claims and leader lease last
	// (DefaultLeaseTTL); a replica that dies loses them after LeaseTTL
	// and another replica takes over its due starts and duties. The
	// leader renews its lease every LeaseTTL/4 (at the first Tick after).
	LeaseTTL time.Duration
	// ClaimBatch is how many due starts one claim takes (at most
	// storage.MaxListLimit). Zero, the default, takes DefaultClaimBatch
	// first and, while a Tick's claims come back full (a start on many
	// devices), twice as many with each further claim, up to
	// storage.MaxListLimit; a ClaimBatch set is the size of every claim.
	ClaimBatch int
	// DispatchWorkers is how many store connections dispatch due starts
	// at once (DefaultDispatchWorkers, at most MaxDispatchWorkers): the
	// store's work per batch runs in parallel, the sends stay serial.
	DispatchWorkers int
	// ResultSink receives every final result the server records, for
	// the Administration Server's OS event log (optional: nil, the
	// default, writes nowhere). See ResultSink.
	ResultSink ResultSink
	// SingleReplica turns the claim layer and the leader lease off: the
	// server keeps due starts in memory and never checks for other
	// replicas. Only for a host that guarantees one server per store.
	// Without it, a store without storage.Claimer is used by one replica
	// at a time: it dispatches only while it holds the leader lease, and a
	// second replica gets a *ReplicaError (ErrOtherReplica) from Open or
	// Tick. Give such a server a stable ReplicaID, so that after a restart
	// it takes its own lease back at once.
	SingleReplica bool
	// EngineClockLeases judges every lease (leader lease, dispatch
	// claims) by this server's Clock instead of the store's: the engine
	// passes its time as Now in the lease calls. For tests with a mock
	// clock, and hosts whose replicas share one clock; off by default
	// (the store's clock, so replicas whose clocks differ agree).
	EngineClockLeases bool
}

type taskState struct {
	t        *task.Task
	onServer bool
	// devices is the resolved scope, sorted (has looks devices up in
	// it); resolved: it was resolved once (a first resolution adds no
	// devices).
	devices  []scope.DeviceID
	resolved bool
	cursor   time.Time
	next     time.Time
	since    time.Time
	manual   *transport.Start
	lastFire *transport.Start
	wokeFor  time.Time
	wakes    map[scope.DeviceID]time.Time
	nextWake time.Time
	def      *transport.Definition // cached; rebuilt when stale
	// slots is the automatic randomized delay's layout (nil: the delay
	// is not automatic, or a server-run task).
	slots *slotLayout
	// maxRun is the newest run id seen of the task (maxRunOK: the stored
	// results were read too), so a manual start is always the latest.
	maxRun   int64
	maxRunOK bool
}

// has reports whether d is in the task's resolved scope.
func (ts *taskState) has(d scope.DeviceID) bool {
	_, ok := slices.BinarySearch(ts.devices, d)
	return ok
}

type dispatch struct {
	start  transport.Start
	device scope.DeviceID
	next   time.Time
	sent   int
	// lastSend is when the start was last sent (zero: send it at once);
	// tries counts the sends since its back-off last started over.
	lastSend time.Time
	tries    int
	epoch    int64 // > 0: claimed through storage.Claimer with this epoch
	wakeAt   time.Time
	woke     bool
}

type dkey struct {
	task   string
	device scope.DeviceID
}

// Server is the Administration Server runtime: it implements
// task.Dispatcher, runs device-selection and Administration Server tasks
// on the server's time, delivers every other task to the devices, and
// takes their results. Drive it with Tick (deterministic) or Run; stop it
// with Close.
//
// The runtime is made of parts with one job each; each part's state is
// its own struct below, and the comment on each says which code owns it.
// One mutex (mu) guards them all: a device result (intake) settles a
// dispatch, may end a control order and fire a dependent task in the same
// step, and the parts call each other in that order while holding it, so
// finer locks would have to be taken in a fixed order on every path; the
// split keeps that possible without changing behaviour now. A device
// message travels one way: Handle → intake (checks, intake.go) → record
// (flushResults) → follow-ups (followups.go: dispatch settled, control
// orders ended, dependent tasks fired; result sink).
type Server struct {
	mu  sync.Mutex
	cfg Config
	clk clock.Clock
	loc *time.Location
	log zerolog.Logger
	met *metrics // OpenTelemetry instruments (metrics.go)
	m   *task.Manager
	ep  transport.ServerEndpoint

	// Lifecycle (lifecycle.go): opened by Open, closed by Close.
	opened bool
	closed bool // Close ran: nothing is sent or taken any more

	cat   catalog       // the tasks the engine knows (catalog.go)
	sched scheduling    // server-run activations and periodic duties (activations.go, tick.go)
	disp  dispatching   // starts waiting for devices (dispatch.go, replicas.go)
	ctl   controlOrders // stop, pause and resume orders (control.go, recovery.go)
	dev   deviceSync    // heartbeats, delivery and withdrawal (devices.go)
	upd   updatesState  // "when new updates are downloaded" (activations.go)
	lead  leadership    // claims and the leader lease (replicas.go)
	in    intake        // the device-message path (intake.go)
	sink  sinkState     // results written to the ResultSink (sink.go)
	stats Stats
}

// catalog is the engine's view of the tasks: their state, loaded by Open
// and kept current by TaskSaved and TaskDeleted.
type catalog struct {
	tasks map[string]*taskState
	ids   []string        // sorted task ids (nil: rebuild)
	trig  map[string]bool // ids of tasks others wait for (nil: rebuild)
}

// scheduling is the state of the periodic work of Tick: the next scope
// refresh and history purge, and the clock readings it compares.
type scheduling struct {
	nextScope time.Time
	nextPurge time.Time
	// openedAt is when Open ran (the updates fallback counts from it
	// until updates arrive); lastTick the clock reading of the last Tick
	// (an earlier reading after it: the clock stepped back).
	openedAt time.Time
	lastTick time.Time
}

// dispatching holds the starts sent (or to send) to devices and not yet
// answered, and when the next one is due.
//
// byDev lists each device's pending task ids, so a device that becomes
// visible finds its starts without scanning every device's (put and drop
// keep the two in step).
type dispatching struct {
	pending  map[dkey]*dispatch
	byDev    map[scope.DeviceID][]string
	nextDisp time.Time
}

// put keeps a dispatch.
func (d *dispatching) put(k dkey, dp *dispatch) {
	if _, ok := d.pending[k]; !ok {
		if d.byDev == nil {
			d.byDev = map[scope.DeviceID][]string{}
		}
		d.byDev[k.device] = append(d.byDev[k.device], k.task)
	}
	d.pending[k] = dp
}

// drop forgets a dispatch.
func (d *dispatching) drop(k dkey) {
	if _, ok := d.pending[k]; !ok {
		return
	}
	delete(d.pending, k)
	l := d.byDev[k.device]
	if i := slices.Index(l, k.task); i >= 0 {
		l = slices.Delete(l, i, i+1)
	}
	if len(l) == 0 {
		delete(d.byDev, k.device)
	} else {
		d.byDev[k.device] = l
	}
}

// controlOrders are the unanswered StopRun, PauseRun and ResumeRun per
// device (ctlKeys: by message key); nextCtl is the earliest resend.
type controlOrders struct {
	controls map[dkey]*control
	ctlKeys  map[string]dkey
	nextCtl  time.Time
}

// deviceSync is what the server knows of devices: which tasks each has,
// when each was last heard from, and zones.
//
// Each device the server hears from or finds in a device task's scope
// gets a dense number once (num, ids); the per-device state is kept in
// slices indexed by it rather than in maps keyed by the id string, so a
// heartbeat costs one map lookup and the rest are index reads (at
// 100,000 devices the string-keyed probes were a tenth of the fleet
// simulation's CPU). Numbers are never reused; the slices grow by one
// entry a device.
type deviceSync struct {
	num map[scope.DeviceID]int32
	ids []scope.DeviceID // by number
	// seen is when each device was last heard from (zero: never).
	seen []time.Time
	// The per-device task lists (deviceTasks): device n's tasks are
	// tasks[off[n]:off[n+1]], in id order, and at[k] is the device's
	// index in tasks[k].devices; off covers the devices numbered when
	// they were built. stale: rebuild before the next use.
	off   []int
	tasks []*taskState
	at    []int32
	stale bool
	zones map[string]*time.Location
}

// updatesState follows the repository's update downloads: the generation
// and time of the last one, the report keys seen, and the last fallback
// activation while updates are overdue.
type updatesState struct {
	updGen   int64
	updAt    time.Time
	updKeys  map[string]bool
	lastFall time.Time
}

// leadership is this replica's part among replicas sharing a store.
type leadership struct {
	owner   string // this replica's id in claims and the leader lease
	leading bool
	// nextStale: when claims of dead replicas are next looked for;
	// nextReconcile: when the leader next rebuilds control orders.
	nextStale     time.Time
	nextReconcile time.Time
	afterClaim    func() // test hook (export_test.go)
	// renewedAt: when the leader lease was last taken or renewed (the
	// engine's clock, read before the call; zero: not held).
	renewedAt time.Time
	// growClaims: Config.ClaimBatch was left zero, so claims grow while
	// they come back full (dispatchClaimed).
	growClaims bool
}

// sinkState remembers the results written to the ResultSink (the last
// sinkMemory, in sunkRing from sunkNext), so none is written twice.
type sinkState struct {
	sunk     map[sinkKey]bool
	sunkRing []sinkKey
	sunkNext int
}

// Stats counts what the server did.
type Stats struct {
	// Fired counts activations of server-run tasks (device selections,
	// Administration Server tasks) that started a run.
	Fired int64
	// Dispatched counts starts sent to devices.
	Dispatched int64
	// Resent counts starts sent again after their first dispatch
	// because the device had not answered (after RetryInterval, backing
	// off up to MaxRetryInterval, or at once when it became visible
	// again), and the transport took them. Sends it refused at once are
	// counted in Unreachable instead.
	Resent int64
	// Unreachable counts sends of a start (first or again) that the
	// transport refused because the device was not connected to this
	// server (transport.ErrUnreachable): nothing went out, and the start
	// is tried again within seconds (a restarted server's devices are
	// still reconnecting). A first send refused is counted in
	// Dispatched too.
	Unreachable int64
	// Heartbeats counts device heartbeats handled.
	Heartbeats int64
	// ResultsApplied counts device results written to the store.
	ResultsApplied int64
	// Delivered counts task definitions delivered to devices.
	Delivered int64

	// Fenced counts dispatched starts this replica stopped resending
	// because its lease was gone: another replica took them over (a newer
	// epoch), or the device's answer was already stored (through another
	// replica, or through this one's intake while its batch was being
	// written: with devices answering within a second, as long polls do,
	// most of a big start's Fenced are such answers, not takeovers).
	Fenced int64
	// TakenOver counts dispatched starts this replica took over from a
	// replica whose lease expired, and resent.
	TakenOver int64
	// Reclaimed counts dispatched starts of this replica whose lease had
	// expired before it renewed it (its Tick lagged: a long fan-out
	// under load) and that its own stale sweep found: it keeps them
	// under the new lease and resends them on their own schedule, so
	// they are neither taken over nor sent again.
	Reclaimed int64
	// Undecodable counts tasks the server skipped because their stored
	// settings cannot be decoded (task.DecodeError); each is logged.
	Undecodable int64
	// Rejected counts the items of device messages the intake dropped
	// (results, events, edits, outbreaks, held tasks, whole messages of
	// an unknown kind); RejectedBy splits it by reason.
	Rejected   int64
	RejectedBy map[RejectReason]int64
}

// New returns a Server; call Open before use.
func New(cfg Config) (*Server, error) {
	var bad errs.ValidationErrors
	if cfg.Store == nil {
		bad = append(bad, errs.Invalid("Store", "", "is required"))
	}
	if cfg.Inventory == nil {
		bad = append(bad, errs.Invalid("Inventory", "", "is required"))
	}
	if cfg.ClaimBatch < 0 || cfg.ClaimBatch > storage.MaxListLimit {
		bad = append(bad, errs.Invalid("ClaimBatch", fmt.Sprint(cfg.ClaimBatch), fmt.Sprintf("must be 0 (default %d) to %d", DefaultClaimBatch, storage.MaxListLimit)))
	}
	if cfg.DispatchWorkers < 0 || cfg.DispatchWorkers > MaxDispatchWorkers {
		bad = append(bad, errs.Invalid("DispatchWorkers", fmt.Sprint(cfg.DispatchWorkers), fmt.Sprintf("must be 0 (default %d) to %d", DefaultDispatchWorkers, MaxDispatchWorkers)))
	}
	for name, d := range map[string]time.Duration{"RetryInterval": cfg.RetryInterval, "ScopeRefresh": cfg.ScopeRefresh, "PurgeEvery": cfg.PurgeEvery, "VisibilityTimeout": cfg.VisibilityTimeout, "RecoveryWindow": cfg.RecoveryWindow, "LeaseTTL": cfg.LeaseTTL, "MaxRetryInterval": cfg.MaxRetryInterval} {
		if d < 0 {
			bad = append(bad, errs.Invalid(name, d.String(), "must not be negative"))
		}
	}
	if retry := cmp.Or(cfg.RetryInterval, DefaultRetryInterval); cfg.MaxRetryInterval > 0 && cfg.MaxRetryInterval < retry {
		bad = append(bad, errs.Invalid("MaxRetryInterval", cfg.MaxRetryInterval.String(), fmt.Sprintf("must be 0 (default 8 x RetryInterval) or at least RetryInterval (%s)", retry)))
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
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.RetryInterval, DefaultRetryInterval)
	def(&cfg.MaxRetryInterval, 8*cfg.RetryInterval)
	def(&cfg.ScopeRefresh, DefaultScopeRefresh)
	def(&cfg.PurgeEvery, DefaultPurgeEvery)
	def(&cfg.VisibilityTimeout, DefaultVisibilityTimeout)
	def(&cfg.RecoveryWindow, DefaultRecoveryWindow)
	def(&cfg.LeaseTTL, DefaultLeaseTTL)
	if cfg.DispatchWorkers == 0 {
		cfg.DispatchWorkers = DefaultDispatchWorkers
	}
	grow := cfg.ClaimBatch == 0
	if grow {
		cfg.ClaimBatch = DefaultClaimBatch
	}
	srv := &Server{cfg: cfg, clk: cfg.Clock, loc: cfg.Location, log: cfg.Logger, met: newMetrics(cfg.MeterProvider),
		cat:  catalog{tasks: map[string]*taskState{}},
		disp: dispatching{pending: map[dkey]*dispatch{}},
		dev:  deviceSync{num: map[scope.DeviceID]int32{}, zones: map[string]*time.Location{}, stale: true},
		upd:  updatesState{updKeys: map[string]bool{}},
		lead: leadership{owner: replicaOwner(cfg.ReplicaID), growClaims: grow},
	}
	srv.in.written = sync.NewCond(&srv.mu)
	srv.observeConnected(cfg.MeterProvider)
	return srv, nil
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.statsCopy()
}
