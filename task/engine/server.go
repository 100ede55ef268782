package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
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
	// Logger receives the engine's log (default: zerolog.Nop()).
	Logger zerolog.Logger
	// RetryInterval: how often unanswered starts are resent (1 minute).
	RetryInterval time.Duration
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
	// and another replica takes over its due starts and duties.
	LeaseTTL time.Duration
	// ClaimBatch is how many due starts one claim takes
	// (DefaultClaimBatch, at most storage.MaxListLimit).
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
	devices  []scope.DeviceID
	inScope  map[scope.DeviceID]bool
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

type dispatch struct {
	start  transport.Start
	device scope.DeviceID
	next   time.Time
	sent   int
	epoch  int64 // > 0: claimed through storage.Claimer with this epoch
	wakeAt time.Time
	woke   bool
}

type dkey struct {
	task   string
	device scope.DeviceID
}

// Server is the Administration Server runtime: it implements
// task.Dispatcher, runs device-selection and Administration Server tasks
// on the server's time, delivers every other task to the devices, and
// takes their results. Drive it with Tick (deterministic) or Run.
type Server struct {
	mu        sync.Mutex
	cfg       Config
	clk       clock.Clock
	loc       *time.Location
	log       zerolog.Logger
	m         *task.Manager
	ep        transport.ServerEndpoint
	tasks     map[string]*taskState
	byDevice  map[scope.DeviceID][]string
	pending   map[dkey]*dispatch
	nextDisp  time.Time
	seen      map[scope.DeviceID]time.Time
	updGen    int64
	updAt     time.Time
	updKeys   map[string]bool
	nextScope time.Time
	nextPurge time.Time
	// nextReconcile: when the leader next rebuilds control orders
	// (replicas only).
	nextReconcile time.Time
	stats         Stats
	opened        bool
	zones         map[string]*time.Location
	in            intake          // the device-message path (intake.go)
	ids           []string        // sorted task ids (nil: rebuild)
	trig          map[string]bool // ids of tasks others wait for (nil: rebuild)
	owner         string          // this replica's id in claims and the leader lease
	afterClaim    func()          // test hook (export_test.go)
	nextStale     time.Time
	leading       bool
	// controls are the unanswered StopRun, PauseRun and ResumeRun per
	// device (ctlKeys: by message key); nextCtl is the earliest resend.
	controls map[dkey]*control
	ctlKeys  map[string]dkey
	nextCtl  time.Time

	// openedAt is when Open ran (the updates fallback counts from it
	// until updates arrive); lastFall the last fallback activation;
	// lastTick the clock reading of the last Tick (an earlier reading
	// after it: the clock stepped back).
	openedAt time.Time
	lastFall time.Time
	lastTick time.Time
	// sunk are the results written to the ResultSink (the last
	// sinkMemory, in sunkRing from sunkNext).
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
	// Resent counts starts sent again because the device had not
	// answered within RetryInterval.
	Resent int64
	// Heartbeats counts device heartbeats handled.
	Heartbeats int64
	// ResultsApplied counts device results written to the store.
	ResultsApplied int64
	// Delivered counts task definitions delivered to devices.
	Delivered int64

	// Fenced counts dispatched starts this replica stopped resending
	// because its lease was gone: another replica took them over (a newer
	// epoch) or the device answered through another replica.
	Fenced int64
	// TakenOver counts dispatched starts this replica took over from a
	// replica whose lease expired, and resent.
	TakenOver int64
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
	for name, d := range map[string]time.Duration{"RetryInterval": cfg.RetryInterval, "ScopeRefresh": cfg.ScopeRefresh, "PurgeEvery": cfg.PurgeEvery, "VisibilityTimeout": cfg.VisibilityTimeout, "RecoveryWindow": cfg.RecoveryWindow, "LeaseTTL": cfg.LeaseTTL} {
		if d < 0 {
			bad = append(bad, errs.Invalid(name, d.String(), "must not be negative"))
		}
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
	def(&cfg.ScopeRefresh, DefaultScopeRefresh)
	def(&cfg.PurgeEvery, DefaultPurgeEvery)
	def(&cfg.VisibilityTimeout, DefaultVisibilityTimeout)
	def(&cfg.RecoveryWindow, DefaultRecoveryWindow)
	def(&cfg.LeaseTTL, DefaultLeaseTTL)
	if cfg.DispatchWorkers == 0 {
		cfg.DispatchWorkers = DefaultDispatchWorkers
	}
	if cfg.ClaimBatch == 0 {
		cfg.ClaimBatch = DefaultClaimBatch
	}
	return &Server{cfg: cfg, owner: replicaOwner(cfg.ReplicaID), clk: cfg.Clock, loc: cfg.Location, log: cfg.Logger,
		tasks: map[string]*taskState{}, byDevice: map[scope.DeviceID][]string{}, pending: map[dkey]*dispatch{}, seen: map[scope.DeviceID]time.Time{}, updKeys: map[string]bool{}, zones: map[string]*time.Location{}}, nil
}

// Open binds the server to its Manager (whose Config.Dispatcher is this
// server) and transport endpoint, loads every task, and recovers what a
// previous server left: scheduled and pending starts are dispatched again,
// and server-run activations of the last RecoveryWindow that were not
// fired are fired.
func (s *Server) Open(ctx context.Context, m *task.Manager, ep transport.ServerEndpoint) error {
	if m == nil || ep == nil {
		return errs.Invalid("manager", "", "Open needs the Manager and the transport endpoint")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opened {
		return ErrAlreadyOpen
	}
	// On a store without storage.Claimer only one replica may run: a
	// second one fails here, before it loads or sends anything.
	if s.claimer() == nil {
		if _, err := s.leader(ctx); err != nil {
			return err
		}
	}
	s.m, s.ep = m, ep
	now := s.clk.Now()
	p := task.ListParams{Order: storage.OrderByID, Limit: 1000}
	for {
		page, err := m.List(ctx, task.System, p)
		if err != nil {
			return fmt.Errorf("engine: load tasks: %w", err)
		}
		for _, u := range page.Undecodable {
			// One task whose settings no longer decode must not keep the
			// server from running every other task.
			s.stats.Undecodable++
			s.log.Error().Err(u).Str("task", u.TaskID).Msg("engine: task skipped: its stored settings cannot be decoded")
		}
		for _, app := range page.Applications {
			for _, t := range app.Tasks {
				ts := s.load(ctx, t, now)
				if ts.slots != nil && !ts.onServer {
					// Rebuilt: the devices' reports of the places they
					// hold restore the layout (slotLayout).
					ts.slots.provisional = true
				}
				if ts.onServer {
					ts.cursor = now.Add(-s.cfg.RecoveryWindow)
					ts.next = time.Time{}
				}
			}
		}
		if page.Next == "" {
			break
		}
		p.After = page.Next
	}
	s.byDevice = nil
	recover := []task.State{task.Scheduled, task.Pending}
	claims := s.claimer() != nil
	if claims {
		recover = recover[1:] // scheduled starts are dispatched from the store
	}
	for _, st := range recover {
		recs, err := s.cfg.Store.DueResults(ctx, storage.DueResultsParams{State: string(st), Before: now.Add(366 * 24 * time.Hour), Limit: storage.MaxListLimit})
		if err != nil {
			return fmt.Errorf("engine: recover starts: %w", err)
		}
		for _, r := range recs {
			if s.tasks[r.TaskID] == nil {
				continue
			}
			if claims && r.Seq >= transport.SeqDispatched {
				continue // leased to the replica that dispatched it; taken over when its lease expires
			}
			at := r.DueAt
			s.addDispatch(transport.Start{TaskID: r.TaskID, RunID: r.RunID, At: at, Due: at}, scope.DeviceID(r.DeviceID), at)
		}
	}
	if err := s.recoverRuns(ctx, now, false); err != nil {
		return err
	}
	s.nextScope = now.Add(s.cfg.ScopeRefresh)
	s.nextPurge = now
	s.nextReconcile = now.Add(s.cfg.ScopeRefresh)
	s.opened = true
	s.openedAt = now
	return nil
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.statsCopy()
}

// load (re)computes a task's state; it does not send anything.
func (s *Server) load(ctx context.Context, t *task.Task, now time.Time) *taskState {
	ts := s.tasks[t.ID]
	settingsChanged := ts == nil || ts.t.SettingsRevision != t.SettingsRevision
	if ts == nil {
		ts = &taskState{}
		s.tasks[t.ID] = ts
		s.ids = nil
	}
	ts.t = t
	ts.def = nil
	ts.onServer = t.RunsOnServer()
	s.trig = nil
	if settingsChanged || !automaticDelay(ts) {
		ts.slots = nil // a new layout (settings edited)
	}
	if settingsChanged {
		ts.since = t.UpdatedAt
		ts.cursor = now
		if t.Schedule.Kind == schedule.Immediately || t.Schedule.Kind == schedule.Once {
			ts.cursor = t.UpdatedAt.Add(-time.Nanosecond)
			if t.Schedule.Kind == schedule.Once && t.Schedule.At.Before(ts.cursor) {
				ts.cursor = now
			}
		}
		ts.next = time.Time{}
	}
	s.resolve(ctx, ts)
	return ts
}

// resolve refreshes a task's device list.
func (s *Server) resolve(ctx context.Context, ts *taskState) []scope.DeviceID {
	var devs []scope.DeviceID
	if ts.t.Scope.Kind == scope.Server {
		devs = []scope.DeviceID{task.ServerDevice}
	} else {
		sc := ts.t.Scope
		// "Distribute to secondary and virtual Administration Servers":
		// the devices those servers manage are in the task's scope, but
		// their own server runs the task on them (its inherited copy,
		// package task/hierarchy) and reports their figures up; this
		// server runs it on the devices it manages, so each device runs
		// each run once and is counted once.
		sc.DistributeToServers = false
		res, err := scope.Resolve(ctx, sc, s.cfg.Inventory)
		if err != nil {
			s.log.Error().Err(err).Str("task", ts.t.ID).Msg("engine: resolve scope")
			return nil
		}
		devs = res.Devices
		if ts.onServer {
			devs = append(slices.Clone(res.Devices), res.Offline...)
			slices.Sort(devs)
		}
	}
	var added []scope.DeviceID
	in := make(map[scope.DeviceID]bool, len(devs))
	for _, d := range devs {
		in[d] = true
		if ts.inScope != nil && !ts.inScope[d] {
			added = append(added, d)
		}
	}
	ts.devices, ts.inScope = devs, in
	ts.followSlots()
	return added
}

// devicesTasks returns the device tasks of every device, rebuilt after
// the task list or a scope changed.
func (s *Server) devicesTasks() map[scope.DeviceID][]string {
	if s.byDevice == nil {
		s.rebuildByDevice()
	}
	return s.byDevice
}

func (s *Server) rebuildByDevice() {
	s.byDevice = map[scope.DeviceID][]string{}
	ids := make([]string, 0, len(s.tasks))
	for id := range s.tasks {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		ts := s.tasks[id]
		if ts.onServer {
			continue
		}
		for _, d := range ts.devices {
			s.byDevice[d] = append(s.byDevice[d], id)
		}
	}
}

func (s *Server) definition(ts *taskState) *transport.Definition {
	if n := slotCount(ts); ts.def == nil || ts.def.Devices != n || ts.def.LastManual != ts.manual {
		ts.def = &transport.Definition{Task: *ts.t, Since: ts.since, Devices: n, LastManual: ts.manual}
	}
	return ts.def
}

func (s *Server) connected(ctx context.Context, d scope.DeviceID) bool {
	if d == task.ServerDevice {
		return true
	}
	dev, err := s.cfg.Inventory.Device(ctx, d)
	return err == nil && dev.Connected
}

func (s *Server) visible(d scope.DeviceID, now time.Time) bool {
	t, ok := s.seen[d]
	return ok && now.Sub(t) <= s.cfg.VisibilityTimeout
}

func (s *Server) send(ctx context.Context, m transport.Message) error {
	m.SentAt = s.clk.Now().UTC()
	err := s.ep.Send(ctx, m)
	if err != nil && !errors.Is(err, transport.ErrUnreachable) {
		s.log.Error().Err(err).Str("device", string(m.Device)).Str("kind", string(m.Kind)).Msg("engine: send")
	}
	return err
}

// slotOf returns a device's place in a task's automatic randomized delay
// (slotLayout); nil when the delay is not automatic.
func slotOf(ts *taskState, d scope.DeviceID) *transport.Slot {
	sl, ok := slotAt(ts, d)
	if !ok {
		return nil
	}
	return &sl
}

// slotAt is slotOf as a value (false: no slot).
func slotAt(ts *taskState, d scope.DeviceID) (transport.Slot, bool) {
	if ts.slots == nil {
		return transport.Slot{}, false
	}
	i, ok := ts.slots.index[d]
	if !ok {
		return transport.Slot{}, false
	}
	return transport.Slot{Index: i, Of: len(ts.slots.by)}, true
}
