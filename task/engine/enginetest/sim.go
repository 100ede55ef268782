// Package enginetest is a deterministic fleet simulation for tests,
// benchmarks and hosts that want to try schedules: one engine.Server and
// one agent.Agent per device over an in-process transport and a simulated
// Clock, on any store and inventory: memstore and scope/inmem by default,
// or the sqlstore (SQLite or PostgreSQL) and its inventory a host ships
// (Config.Store, Config.Inventory). Step advances simulated time and lets
// server, agents and network settle; Executor records every run.
//
//	store, _ := sqlstore.OpenSQLite(ctx, "/tmp/sim.db")
//	sim, err := enginetest.New(ctx, enginetest.Config{Start: start, Registry: reg,
//		Store: store, Inventory: store.Devices(),
//		Groups: groups, Devices: devices, ServerLocation: zone})
//	...
//	err = sim.Step(ctx, 7*24*time.Hour, 5*time.Minute) // a simulated week
//
// The quickstart (examples/quickstart) simulates its week this way on
// SQLite.
package enginetest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/inproc"
)

// Inventory is what the Sim needs of a device inventory: the engine reads
// it, and the Sim writes the fleet into it and keeps each device's
// Connected up to date. scope/inmem's and storage/sqlstore's inventories
// are both one.
type Inventory interface {
	scope.Inventory
	scope.InventoryWriter
}

// Config configures a Sim. Only Start and Registry are required.
type Config struct {
	// Start is the simulated instant the Sim begins at.
	Start time.Time
	// Registry holds the task types the simulated tasks use.
	Registry *task.Registry
	// Store is the server's store; nil means a new memstore. The Sim
	// does not close it.
	Store storage.Store
	// Inventory is the device inventory; nil means a new inmem inventory.
	// New puts Groups and Devices into it.
	Inventory Inventory
	// Groups are the administration groups, put into Inventory by New.
	Groups []scope.AdminGroup
	// Devices are the fleet; Connected is managed by the Sim (all start
	// connected). Their TimeZone decides each agent's zone.
	Devices []scope.Device
	// ServerLocation is the Administration Server's zone.
	ServerLocation *time.Location
	// Faults are the in-process network's faults (loss, duplicates,
	// reordering); zero is a perfect network.
	Faults inproc.Faults
	// Seed makes the network's faults reproducible.
	Seed uint64
	// NewID, when set, gives the Manager's task ids (for example from a
	// counter, so a seed replays the same run ids); nil means random
	// UUIDs.
	NewID func() string
	// Restarter, when set, returns the restart.Device of a device's agent
	// (restart prompts, session lock, the restart itself); nil leaves
	// agents without one, so runs needing a restart stay
	// restart_required.
	Restarter func(id scope.DeviceID) restart.Device
	// Wire sends every message through the wire codec (inproc.Config
	// Wire), as over a real channel.
	Wire bool
	// Heartbeat of the agents (default 5 minutes).
	Heartbeat time.Duration
	// Server tunes the server (Store, Inventory, Clock and Location are
	// set by the Sim).
	Server engine.Config
	// Behavior decides how a run goes (default: completes at once).
	Behavior func(r agent.Run, device scope.DeviceID) Behavior
	// Notifier receives the Manager's notifications.
	Notifier task.Notifier
	// ServerAgent adds an agent for task.ServerDevice, which runs
	// Administration Server tasks.
	ServerAgent bool
	// AgentStore opens a device's local store at every boot (default: one
	// agent.MemStore per device, kept across restarts). A store that
	// is closed when the device powers off.
	AgentStore func(id scope.DeviceID) (agent.Store, error)
}

// Behavior is how one run goes.
type Behavior struct {
	// Duration is how long the run takes on the simulated clock (0: it
	// ends at once).
	Duration time.Duration
	// State is the run's final state (empty: completed).
	State task.State
	// RestartRequired makes the run need an operating-system restart.
	RestartRequired bool
	// Message is the run's result message.
	Message string
}

// Sim is a simulated fleet.
type Sim struct {
	// Clock is the simulated time of server, agents and network.
	Clock *Clock
	// Store is the server's store (Config.Store or a memstore).
	Store storage.Store
	// Inv is the device inventory (Config.Inventory or an inmem one).
	Inv Inventory
	// Net is the in-process channel between server and agents.
	Net *inproc.Network
	// Server is the engine; RestartServer replaces it.
	Server *engine.Server
	// Manager is the task API hosts call; RestartServer replaces it.
	Manager *task.Manager
	// Exec is every device's simulated application; it records runs.
	Exec *Executor
	cfg  Config
	// invErr is the first inventory write that failed in a method
	// without an error result (PowerOff, Disconnect, Reconnect); Settle
	// returns it.
	invErr  error
	devices map[scope.DeviceID]scope.Device
	order   []scope.DeviceID
	agents  map[scope.DeviceID]*agent.Agent
	stores  map[scope.DeviceID]agent.Store
	on      map[scope.DeviceID]bool
	locs    map[string]*time.Location
	power   map[scope.DeviceID]int
	// slots are the devices (the server's agent first, then by id); a
	// Settle ticks only the agents due by their cached NextWake.
	slots  []*slot
	byID   map[scope.DeviceID]*slot
	wakes  wakeHeap
	round  int64
	due    []*slot
	moved  []*slot // delivered to in the current Settle round
	wmu    sync.Mutex
	woken  []scope.DeviceID // runs finished on the harness clock
	watchd []*slot          // handed out by Agent: NextWake read afresh
}

// slot is one device's place in Settle.
type slot struct {
	id    scope.DeviceID
	rank  int
	a     *agent.Agent
	wake  int64 // cached NextWake, Unix nanoseconds (0: at once)
	stamp int64 // the Settle round that last picked it
	// queued: an entry at wake is in the heap.
	queued bool
	moved  bool // delivered to in the current round
	watch  bool
}

// New builds a Sim with every device powered on and connected.
func New(ctx context.Context, cfg Config) (*Sim, error) {
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 5 * time.Minute
	}
	clk := NewClock(cfg.Start)
	if cfg.Store == nil {
		cfg.Store = memstore.New()
	}
	if cfg.Inventory == nil {
		cfg.Inventory = inmem.New()
	}
	s := &Sim{Clock: clk, Store: cfg.Store, Inv: cfg.Inventory, cfg: cfg,
		devices: map[scope.DeviceID]scope.Device{}, agents: map[scope.DeviceID]*agent.Agent{},
		stores: map[scope.DeviceID]agent.Store{}, on: map[scope.DeviceID]bool{}, locs: map[string]*time.Location{},
		power: map[scope.DeviceID]int{}, byID: map[scope.DeviceID]*slot{}}
	s.Exec = &Executor{clk: clk, behavior: cfg.Behavior, devs: map[scope.DeviceID]*devRuns{},
		finished: s.finished}
	if err := s.Inv.PutGroups(ctx, cfg.Groups...); err != nil {
		return nil, err
	}
	for _, d := range cfg.Devices {
		d.Connected = true
		s.devices[d.ID] = d
		s.order = append(s.order, d.ID)
	}
	sort.Slice(s.order, func(i, j int) bool { return s.order[i] < s.order[j] })
	devs := make([]scope.Device, 0, len(s.devices))
	for _, id := range s.order {
		devs = append(devs, s.devices[id])
	}
	if err := s.Inv.PutDevices(ctx, devs...); err != nil {
		return nil, err
	}
	s.Net = inproc.New(inproc.Config{Clock: clk, Faults: cfg.Faults, Seed: cfg.Seed, Wire: cfg.Wire})
	scfg := cfg.Server
	scfg.Store, scfg.Inventory, scfg.Clock, scfg.Location = s.Store, s.Inv, clk, cfg.ServerLocation
	if scfg.ReplicaID == "" {
		scfg.ReplicaID = simReplica // RestartServer is the same replica restarting
	}
	srv, err := engine.New(scfg)
	if err != nil {
		return nil, err
	}
	s.Server = srv
	m, err := task.New(task.Config{Store: s.Store, Registry: cfg.Registry, Inventory: s.Inv, Clock: clk, Location: cfg.ServerLocation, Dispatcher: srv, Notifier: cfg.Notifier, NewID: cfg.NewID})
	if err != nil {
		return nil, err
	}
	s.Manager = m
	if err := srv.Open(ctx, m, s.Net.Server(srv)); err != nil {
		return nil, err
	}
	ids := s.order
	if cfg.ServerAgent {
		ids = append([]scope.DeviceID{task.ServerDevice}, ids...)
	}
	for _, id := range ids {
		sl := &slot{id: id, rank: len(s.slots)}
		s.slots = append(s.slots, sl)
		s.byID[id] = sl
	}
	for _, id := range ids {
		if cfg.AgentStore == nil {
			s.stores[id] = agent.NewMemStore()
		}
		if err := s.boot(ctx, id); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Sim) loc(id scope.DeviceID) *time.Location {
	if id == task.ServerDevice {
		return s.cfg.ServerLocation
	}
	name := s.devices[id].TimeZone
	if l, ok := s.locs[name]; ok {
		return l
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		l = time.UTC
	}
	s.locs[name] = l
	return l
}

func (s *Sim) boot(ctx context.Context, id scope.DeviceID) error {
	if s.cfg.AgentStore != nil {
		st, err := s.cfg.AgentStore(id)
		if err != nil {
			return err
		}
		s.stores[id] = st
	}
	var rd restart.Device
	if s.cfg.Restarter != nil {
		rd = s.cfg.Restarter(id)
	}
	a, err := agent.New(ctx, agent.Config{Device: id, Store: s.stores[id], Executor: s.Exec.For(id), Location: s.loc(id), Clock: s.Clock,
		Heartbeat: s.cfg.Heartbeat, Power: powerFunc(func() { s.power[id]++ }), Restarter: rd})
	if err != nil {
		return err
	}
	sl := s.byID[id]
	a.Attach(s.Net.Device(id, transport.HandlerFunc(func(ctx context.Context, m transport.Message) {
		if !sl.moved {
			sl.moved = true
			s.moved = append(s.moved, sl)
		}
		a.Handle(ctx, m)
		if sl.a == a {
			s.refresh(sl)
		}
	})))
	s.Net.Connect(id)
	s.agents[id] = a
	sl.a = a
	s.refresh(sl)
	s.on[id] = true
	return nil
}

type powerFunc func()

func (p powerFunc) Shutdown(context.Context) error { p(); return nil }

// Shutdowns returns how many times a device was shut down by a task.
func (s *Sim) Shutdowns(id scope.DeviceID) int { return s.power[id] }

// Agent returns a device's agent (nil while powered off). From then on
// Settle asks the device's agents afresh whether they are due at every
// step, since the caller may change them directly.
func (s *Sim) Agent(id scope.DeviceID) *agent.Agent {
	if sl := s.byID[id]; sl != nil && !sl.watch {
		sl.watch = true
		s.watchd = append(s.watchd, sl)
	}
	return s.agents[id]
}

func (s *Sim) setConnected(id scope.DeviceID, v bool) {
	d := s.devices[id]
	d.Connected = v
	s.devices[id] = d
	if err := s.Inv.PutDevices(context.Background(), d); err != nil && s.invErr == nil {
		s.invErr = fmt.Errorf("enginetest: update device %s in the inventory: %w", id, err)
	}
}

// PowerOff stops a device: its agent stops (runs in progress end with it)
// and it disconnects.
func (s *Sim) PowerOff(id scope.DeviceID) {
	if a := s.agents[id]; a != nil {
		_ = a.Close()
		if s.cfg.AgentStore != nil {
			_ = s.stores[id].Close()
		}
	}
	delete(s.agents, id)
	if sl := s.byID[id]; sl != nil {
		sl.a = nil
	}
	s.on[id] = false
	s.Net.Disconnect(id)
	s.setConnected(id, false)
}

// PowerOn boots a device's agent again on its local store (an agent
// restart) and reconnects it.
func (s *Sim) PowerOn(ctx context.Context, id scope.DeviceID) error {
	s.setConnected(id, true)
	return s.boot(ctx, id)
}

// RestartAgent is PowerOff then PowerOn at the same instant.
func (s *Sim) RestartAgent(ctx context.Context, id scope.DeviceID) error {
	s.PowerOff(id)
	return s.PowerOn(ctx, id)
}

// Disconnect cuts a device's connection; its agent keeps running tasks.
func (s *Sim) Disconnect(id scope.DeviceID) {
	s.Net.Disconnect(id)
	s.setConnected(id, false)
}

// Reconnect restores a device's connection.
func (s *Sim) Reconnect(id scope.DeviceID) {
	s.Net.Connect(id)
	s.setConnected(id, true)
}

// simReplica is the server's ReplicaID when Config.Server names none.
const simReplica = "enginetest-server"

// RestartServer replaces the server with a new one on the same store (its
// in-memory state is lost), as after a crash.
func (s *Sim) RestartServer(ctx context.Context) error {
	scfg := s.cfg.Server
	scfg.Store, scfg.Inventory, scfg.Clock, scfg.Location = s.Store, s.Inv, s.Clock, s.cfg.ServerLocation
	if scfg.ReplicaID == "" {
		scfg.ReplicaID = simReplica
	}
	srv, err := engine.New(scfg)
	if err != nil {
		return err
	}
	m, err := task.New(task.Config{Store: s.Store, Registry: s.cfg.Registry, Inventory: s.Inv, Clock: s.Clock, Location: s.cfg.ServerLocation, Dispatcher: srv, Notifier: s.cfg.Notifier, NewID: s.cfg.NewID})
	if err != nil {
		return err
	}
	if err := srv.Open(ctx, m, s.Net.Server(srv)); err != nil {
		return err
	}
	s.Server, s.Manager = srv, m
	return nil
}

// Settle lets server, agents and network work at the current instant until
// nothing is left to deliver. The first round ticks the agents that are due
// (by NextWake); after it only the agents that received messages and are
// due by then tick again.
func (s *Sim) Settle(ctx context.Context) error {
	if err := s.invErr; err != nil {
		s.invErr = nil
		return err
	}
	now := s.Clock.Now()
	s.drainWoken()
	s.round++
	due := s.dueSlots(now)
	slices.SortFunc(due, func(a, b *slot) int { return a.rank - b.rank })
	for r := range 50 {
		if err := s.Server.Tick(ctx); err != nil {
			return err
		}
		for _, sl := range due {
			a := sl.a
			if a == nil {
				continue
			}
			if err := a.Tick(ctx); err != nil {
				return fmt.Errorf("agent %s: %w", sl.id, err)
			}
			s.refresh(sl)
		}
		s.clearMoved()
		if s.Net.Pump(ctx) == 0 && len(s.moved) == 0 {
			s.due = due[:0]
			return nil
		}
		if r == 49 {
			break
		}
		// Of the agents that received messages, only those the messages
		// made due (NextWake, read afresh) tick: an acknowledgement or a
		// Sync with nothing to send leaves an agent with nothing to do,
		// and its Tick would return at once.
		due = due[:0]
		for _, sl := range s.moved {
			if sl.a == nil {
				continue
			}
			if w := sl.a.NextWake(); !w.IsZero() && w.After(now) {
				continue
			}
			due = append(due, sl)
		}
		slices.SortFunc(due, func(a, b *slot) int { return strings.Compare(string(a.id), string(b.id)) })
	}
	s.due = due[:0]
	s.clearMoved()
	return nil
}

func (s *Sim) clearMoved() {
	for _, sl := range s.moved {
		sl.moved = false
	}
	s.moved = s.moved[:0]
}

// dueSlots returns the powered-on devices whose agent has work at now.
func (s *Sim) dueSlots(now time.Time) []*slot {
	due := s.due[:0]
	n := now.UnixNano()
	for len(s.wakes) > 0 && s.wakes[0].at <= n {
		e := s.wakes.pop()
		sl := s.slots[e.rank]
		if sl.wake != e.at {
			continue // stale
		}
		sl.queued = false
		if sl.a == nil || sl.watch || sl.stamp == s.round {
			continue // off, asked below, or picked
		}
		if w := sl.a.NextWake(); !w.IsZero() && w.After(now) {
			s.refresh(sl)
			continue
		}
		sl.stamp = s.round
		due = append(due, sl)
	}
	for _, sl := range s.watchd {
		if sl.a == nil || sl.stamp == s.round {
			continue
		}
		if w := sl.a.NextWake(); !w.IsZero() && w.After(now) {
			s.refresh(sl)
			continue
		}
		sl.stamp = s.round
		due = append(due, sl)
	}
	return due
}

// refresh caches a device agent's NextWake and queues it.
func (s *Sim) refresh(sl *slot) {
	if sl.a == nil {
		return
	}
	var n int64
	if w := sl.a.NextWake(); !w.IsZero() {
		n = w.UnixNano()
	}
	if sl.queued && sl.wake == n {
		return
	}
	sl.wake, sl.queued = n, true
	s.wakes.push(wakeEntry{at: n, rank: int32(sl.rank)})
}

// finished is the Executor's note that a run of device id ended on the
// clock (its agent is due at once).
func (s *Sim) finished(id scope.DeviceID) {
	s.wmu.Lock()
	s.woken = append(s.woken, id)
	s.wmu.Unlock()
}

func (s *Sim) drainWoken() {
	s.wmu.Lock()
	ids := s.woken
	s.woken = nil
	s.wmu.Unlock()
	for _, id := range ids {
		if sl := s.byID[id]; sl != nil {
			s.refresh(sl)
		}
	}
}

// wakeEntry queues a device at its cached wake; entries whose wake is no
// longer the device's are stale and skipped.
type wakeEntry struct {
	at   int64
	rank int32
}

// wakeHeap is a min-heap of wake entries by time then rank.
type wakeHeap []wakeEntry

func (h wakeEntry) less(o wakeEntry) bool {
	return h.at < o.at || h.at == o.at && h.rank < o.rank
}

func (h *wakeHeap) push(e wakeEntry) {
	*h = append(*h, e)
	q := *h
	i := len(q) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !q[i].less(q[p]) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (h *wakeHeap) pop() wakeEntry {
	q := *h
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q = q[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(q) {
			break
		}
		m := l
		if r := l + 1; r < len(q) && q[r].less(q[l]) {
			m = r
		}
		if !q[m].less(q[i]) {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return top
}

// Step advances the clock by d in steps of at most step, settling after
// each.
func (s *Sim) Step(ctx context.Context, d, step time.Duration) error {
	end := s.Clock.Now().Add(d)
	for s.Clock.Now().Before(end) {
		n := step
		if rem := end.Sub(s.Clock.Now()); rem < n {
			n = rem
		}
		s.Clock.Add(n)
		if err := s.Settle(ctx); err != nil {
			return err
		}
	}
	return nil
}

// RunKey names the runs of a task on a device.
type RunKey struct {
	// Task is the task's ID.
	Task string
	// Device is the device.
	Device scope.DeviceID
}

// Record is one run the executor started.
type Record struct {
	// RunID identifies the run.
	RunID int64
	// At is the run's nominal start (the activation).
	At time.Time
	// Due is when it was due (At plus the randomized delay).
	Due time.Time
	// StartedAt is when the agent started it.
	StartedAt time.Time
	// Manual is true for a start by an administrator.
	Manual bool
	// Stopped is true when the agent stopped the run.
	Stopped bool
}

// Executor is the simulated security application of every device.
type Executor struct {
	mu       sync.Mutex
	clk      *Clock
	behavior func(agent.Run, scope.DeviceID) Behavior
	// devs is each device's runs: a device's executor keeps its own
	// record, so recording a run probes a map of the device's few tasks,
	// not one of every (task, device) of the fleet.
	devs     map[scope.DeviceID]*devRuns
	total    int64
	finished func(scope.DeviceID)
}

// devRuns is one device's part of the Executor (guarded by its mu).
type devRuns struct {
	runs       map[string][]Record // by task
	timers     map[string]*simTimer
	notRunning bool
}

// dev returns a device's runs, adding them; e.mu is held.
func (e *Executor) dev(id scope.DeviceID) *devRuns {
	d := e.devs[id]
	if d == nil {
		d = &devRuns{runs: map[string][]Record{}}
		e.devs[id] = d
	}
	return d
}

// SetAppRunning sets whether the application is running on a device.
func (e *Executor) SetAppRunning(id scope.DeviceID, running bool) {
	e.mu.Lock()
	e.dev(id).notRunning = !running
	e.mu.Unlock()
}

// Runs returns the runs of a task on a device.
func (e *Executor) Runs(taskID string, id scope.DeviceID) []Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := e.devs[id]
	if d == nil {
		return nil
	}
	return append([]Record(nil), d.runs[taskID]...)
}

// All returns every run started so far, by task and device.
func (e *Executor) All() map[RunKey][]Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[RunKey][]Record{}
	for id, d := range e.devs {
		for t, rs := range d.runs {
			out[RunKey{t, id}] = append([]Record(nil), rs...)
		}
	}
	return out
}

// Total returns how many runs were started.
func (e *Executor) Total() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.total
}

// For returns the agent.Executor of one device.
func (e *Executor) For(id scope.DeviceID) agent.Executor {
	e.mu.Lock()
	defer e.mu.Unlock()
	return devExec{e, id, e.dev(id)}
}

type devExec struct {
	e  *Executor
	id scope.DeviceID
	d  *devRuns
}

func (x devExec) AppRunning(context.Context, string) bool {
	x.e.mu.Lock()
	defer x.e.mu.Unlock()
	return !x.d.notRunning
}

func (x devExec) Start(_ context.Context, r agent.Run, done func(agent.Outcome)) error {
	b := Behavior{State: task.Completed}
	if x.e.behavior != nil {
		b = x.e.behavior(r, x.id)
		if b.State == "" {
			b.State = task.Completed
		}
	}
	k := r.TaskID
	x.e.mu.Lock()
	x.d.runs[k] = append(x.d.runs[k], Record{RunID: r.RunID, At: r.At, Due: r.Due, StartedAt: r.StartedAt, Manual: r.Manual})
	x.e.total++
	x.e.mu.Unlock()
	out := agent.Outcome{State: transport.State(b.State), Message: b.Message, RestartRequired: b.RestartRequired}
	if b.Duration <= 0 {
		done(out)
		return nil
	}
	var t *simTimer
	t = x.e.clk.afterFunc(b.Duration, func() {
		x.e.mu.Lock()
		if x.d.timers[k] == t {
			delete(x.d.timers, k)
		}
		x.e.mu.Unlock()
		done(out)
		x.e.finished(x.id)
	})
	x.e.mu.Lock()
	if x.d.timers == nil {
		x.d.timers = map[string]*simTimer{}
	}
	x.d.timers[k] = t
	x.e.mu.Unlock()
	return nil
}

func (x devExec) Stop(_ context.Context, taskID string, runID int64) error {
	k := taskID
	x.e.mu.Lock()
	defer x.e.mu.Unlock()
	if t := x.d.timers[k]; t != nil {
		t.stop()
		delete(x.d.timers, k)
	}
	if rs := x.d.runs[k]; len(rs) > 0 && rs[len(rs)-1].RunID == runID {
		rs[len(rs)-1].Stopped = true
	}
	return nil
}
