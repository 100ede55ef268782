// Package enginetest is a deterministic fleet simulation for tests,
// benchmarks and hosts that want to try schedules: one engine.Server and
// one agent.Agent per device over an in-process transport, a memstore,
// an in-memory inventory and a clock.Mock. Step advances simulated time and
// lets server, agents and network settle; Executor records every run.
package enginetest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/inproc"
)

// Config configures a Sim.
type Config struct {
	Start    time.Time
	Registry *task.Registry
	Groups   []scope.AdminGroup
	// Devices are the fleet; Connected is managed by the Sim (all start
	// connected). Their TimeZone decides each agent's zone.
	Devices []scope.Device
	// ServerLocation is the Administration Server's zone.
	ServerLocation *time.Location
	Faults         inproc.Faults
	Seed           uint64
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
	Duration        time.Duration
	State           task.State
	RestartRequired bool
	Message         string
}

// Sim is a simulated fleet.
type Sim struct {
	Clock   *clock.Mock
	Store   *memstore.Store
	Inv     *inmem.Inventory
	Net     *inproc.Network
	Server  *engine.Server
	Manager *task.Manager
	Exec    *Executor
	cfg     Config
	devices map[scope.DeviceID]scope.Device
	order   []scope.DeviceID
	agents  map[scope.DeviceID]*agent.Agent
	stores  map[scope.DeviceID]agent.Store
	on      map[scope.DeviceID]bool
	locs    map[string]*time.Location
	power   map[scope.DeviceID]int
	ids     []scope.DeviceID
	touched map[scope.DeviceID]bool
}

// New builds a Sim with every device powered on and connected.
func New(ctx context.Context, cfg Config) (*Sim, error) {
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 5 * time.Minute
	}
	clk := clock.NewMock()
	clk.Set(cfg.Start)
	s := &Sim{Clock: clk, Store: memstore.New(), Inv: inmem.New(), cfg: cfg,
		devices: map[scope.DeviceID]scope.Device{}, agents: map[scope.DeviceID]*agent.Agent{},
		stores: map[scope.DeviceID]agent.Store{}, on: map[scope.DeviceID]bool{}, locs: map[string]*time.Location{},
		power: map[scope.DeviceID]int{}, touched: map[scope.DeviceID]bool{}}
	s.Exec = &Executor{clk: clk, behavior: cfg.Behavior, runs: map[RunKey][]Record{}, timers: map[RunKey]*clock.Timer{}, notRunning: map[scope.DeviceID]bool{}}
	if err := s.Inv.PutGroups(cfg.Groups...); err != nil {
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
	if err := s.Inv.PutDevices(devs...); err != nil {
		return nil, err
	}
	s.Net = inproc.New(inproc.Config{Clock: clk, Faults: cfg.Faults, Seed: cfg.Seed})
	scfg := cfg.Server
	scfg.Store, scfg.Inventory, scfg.Clock, scfg.Location = s.Store, s.Inv, clk, cfg.ServerLocation
	srv, err := engine.New(scfg)
	if err != nil {
		return nil, err
	}
	s.Server = srv
	m, err := task.New(task.Config{Store: s.Store, Registry: cfg.Registry, Inventory: s.Inv, Clock: clk, Location: cfg.ServerLocation, Dispatcher: srv, Notifier: cfg.Notifier})
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
	a, err := agent.New(ctx, agent.Config{Device: id, Store: s.stores[id], Executor: s.Exec.For(id), Location: s.loc(id), Clock: s.Clock,
		Heartbeat: s.cfg.Heartbeat, Power: powerFunc(func() { s.power[id]++ })})
	if err != nil {
		return err
	}
	a.Attach(s.Net.Device(id, transport.HandlerFunc(func(ctx context.Context, m transport.Message) {
		s.touched[id] = true
		a.Handle(ctx, m)
	})))
	s.ids = nil
	s.Net.Connect(id)
	s.agents[id] = a
	s.on[id] = true
	return nil
}

type powerFunc func()

func (p powerFunc) Shutdown(context.Context) error { p(); return nil }

// Shutdowns returns how many times a device was shut down by a task.
func (s *Sim) Shutdowns(id scope.DeviceID) int { return s.power[id] }

// Agent returns a device's agent (nil while powered off).
func (s *Sim) Agent(id scope.DeviceID) *agent.Agent { return s.agents[id] }

func (s *Sim) setConnected(id scope.DeviceID, v bool) {
	d := s.devices[id]
	d.Connected = v
	s.devices[id] = d
	_ = s.Inv.PutDevices(d)
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
	s.ids = nil
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

// RestartServer replaces the server with a new one on the same store (its
// in-memory state is lost), as after a crash.
func (s *Sim) RestartServer(ctx context.Context) error {
	scfg := s.cfg.Server
	scfg.Store, scfg.Inventory, scfg.Clock, scfg.Location = s.Store, s.Inv, s.Clock, s.cfg.ServerLocation
	srv, err := engine.New(scfg)
	if err != nil {
		return err
	}
	m, err := task.New(task.Config{Store: s.Store, Registry: s.cfg.Registry, Inventory: s.Inv, Clock: s.Clock, Location: s.cfg.ServerLocation, Dispatcher: srv, Notifier: s.cfg.Notifier})
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
// nothing is left to deliver. After the first round only the agents that
// received messages tick again.
func (s *Sim) Settle(ctx context.Context) error {
	if s.ids == nil {
		s.ids = s.agentIDs()
	}
	ids := s.ids
	now := s.Clock.Now()
	for range 50 {
		if err := s.Server.Tick(ctx); err != nil {
			return err
		}
		for _, id := range ids {
			a := s.agents[id]
			if w := a.NextWake(); !w.IsZero() && w.After(now) {
				continue // idle until then
			}
			if err := a.Tick(ctx); err != nil {
				return fmt.Errorf("agent %s: %w", id, err)
			}
		}
		clear(s.touched)
		if s.Net.Pump(ctx) == 0 && len(s.touched) == 0 {
			return nil
		}
		ids = ids[:0:0]
		for id := range s.touched {
			if s.agents[id] != nil {
				ids = append(ids, id)
			}
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	}
	return nil
}

func (s *Sim) agentIDs() []scope.DeviceID {
	ids := make([]scope.DeviceID, 0, len(s.agents))
	if s.agents[task.ServerDevice] != nil {
		ids = append(ids, task.ServerDevice)
	}
	for _, id := range s.order {
		if s.agents[id] != nil {
			ids = append(ids, id)
		}
	}
	return ids
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
	Task   string
	Device scope.DeviceID
}

// Record is one run the executor started.
type Record struct {
	RunID     int64
	At        time.Time
	Due       time.Time
	StartedAt time.Time
	Manual    bool
	Stopped   bool
}

// Executor is the simulated security application of every device.
type Executor struct {
	mu         sync.Mutex
	clk        *clock.Mock
	behavior   func(agent.Run, scope.DeviceID) Behavior
	runs       map[RunKey][]Record
	timers     map[RunKey]*clock.Timer
	notRunning map[scope.DeviceID]bool
	total      int64
}

// SetAppRunning sets whether the application is running on a device.
func (e *Executor) SetAppRunning(id scope.DeviceID, running bool) {
	e.mu.Lock()
	e.notRunning[id] = !running
	e.mu.Unlock()
}

// Runs returns the runs of a task on a device.
func (e *Executor) Runs(taskID string, id scope.DeviceID) []Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Record(nil), e.runs[RunKey{taskID, id}]...)
}

// Total returns how many runs were started.
func (e *Executor) Total() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.total
}

// For returns the agent.Executor of one device.
func (e *Executor) For(id scope.DeviceID) agent.Executor { return devExec{e, id} }

type devExec struct {
	e  *Executor
	id scope.DeviceID
}

func (x devExec) AppRunning(context.Context, string) bool {
	x.e.mu.Lock()
	defer x.e.mu.Unlock()
	return !x.e.notRunning[x.id]
}

func (x devExec) Start(_ context.Context, r agent.Run, done func(agent.Outcome)) error {
	b := Behavior{State: task.Completed}
	if x.e.behavior != nil {
		b = x.e.behavior(r, x.id)
		if b.State == "" {
			b.State = task.Completed
		}
	}
	k := RunKey{r.TaskID, x.id}
	x.e.mu.Lock()
	x.e.runs[k] = append(x.e.runs[k], Record{RunID: r.RunID, At: r.At, Due: r.Due, StartedAt: r.StartedAt, Manual: r.Manual})
	x.e.total++
	x.e.mu.Unlock()
	out := agent.Outcome{State: b.State, Message: b.Message, RestartRequired: b.RestartRequired}
	if b.Duration <= 0 {
		done(out)
		return nil
	}
	t := x.e.clk.AfterFunc(b.Duration, func() { done(out) })
	x.e.mu.Lock()
	x.e.timers[k] = t
	x.e.mu.Unlock()
	return nil
}

func (x devExec) Stop(_ context.Context, taskID string, runID int64) error {
	k := RunKey{taskID, x.id}
	x.e.mu.Lock()
	defer x.e.mu.Unlock()
	if t := x.e.timers[k]; t != nil {
		t.Stop()
		delete(x.e.timers, k)
	}
	if rs := x.e.runs[k]; len(rs) > 0 && rs[len(rs)-1].RunID == runID {
		rs[len(rs)-1].Stopped = true
	}
	return nil
}
