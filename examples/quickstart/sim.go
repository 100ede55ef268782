package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"sort"
	"sync"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/inproc"
)

// fleetSim is the embedded server (engine.Server and task.Manager on the
// SQLite store), one agent per device, and the in-process channel, all
// on one clock.Mock. It is the same wiring as package enginetest, on
// SQLite instead of memstore, so the host code reads like production.
type fleetSim struct {
	clk     *simClock
	store   *sqlstore.Store
	inv     *sqlstore.Inventory
	net     *inproc.Network
	srv     *engine.Server
	m       *task.Manager
	exec    *executor
	devices map[scope.DeviceID]scope.Device
	order   []scope.DeviceID
	agents  map[scope.DeviceID]*agent.Agent
	stores  map[scope.DeviceID]*agent.MemStore
	locs    map[string]*time.Location
	touched map[scope.DeviceID]bool
	ticking []scope.DeviceID // agents ticked by Settle (nil: rebuild)
	seed    uint64

	// restart prompt timeline on the devices
	restartTask string
	prompts     int
	accepted    map[scope.DeviceID]bool // the user clicked "Restart now"
	byUser      int                     // restarts the user accepted
	forced      int                     // restarts forced by the policy
	toAccept    []scope.DeviceID
}

// hash is a deterministic per-seed hash of parts.
func hash(seed uint64, parts ...string) uint64 {
	h := fnv.New64a()
	fmt.Fprint(h, seed)
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	// FNV's low bits follow the low bits of the input bytes; mix them
	// (splitmix64's finalizer) so "hash % n" is fair.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (s *fleetSim) loc(id scope.DeviceID) *time.Location {
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

// boot starts a device's agent on its local store (kept across power
// cycles, like the agent's SQLite file on a real device) and connects it.
func (s *fleetSim) boot(ctx context.Context, id scope.DeviceID) error {
	st := s.stores[id]
	if st == nil {
		st = agent.NewMemStore()
		s.stores[id] = st
	}
	a, err := agent.New(ctx, agent.Config{Device: id, Store: st, Executor: s.exec.For(id), Location: s.loc(id), Clock: s.clk,
		Heartbeat: heartbeat, Restarter: &restarter{s, id}})
	if err != nil {
		return err
	}
	a.Attach(s.net.Device(id, transport.HandlerFunc(func(ctx context.Context, m transport.Message) {
		s.touched[id] = true
		a.Handle(ctx, m)
	})))
	s.net.Connect(id)
	s.agents[id] = a
	s.ticking = nil
	return nil
}

func (s *fleetSim) setConnected(ctx context.Context, id scope.DeviceID, v bool) error {
	d := s.devices[id]
	d.Connected = v
	d.LastSeen = s.clk.Now().UTC()
	s.devices[id] = d
	return s.inv.PutDevices(ctx, d)
}

// powerOff turns a device off: its agent stops and it disconnects.
// Activations that fall while it is off are missed (caught up at boot
// when the task runs missed tasks).
func (s *fleetSim) powerOff(ctx context.Context, id scope.DeviceID) error {
	if a := s.agents[id]; a != nil {
		_ = a.Close()
	}
	delete(s.agents, id)
	s.ticking = nil
	s.net.Disconnect(id)
	return s.setConnected(ctx, id, false)
}

func (s *fleetSim) powerOn(ctx context.Context, id scope.DeviceID) error {
	if err := s.setConnected(ctx, id, true); err != nil {
		return err
	}
	return s.boot(ctx, id)
}

// disconnect cuts the network only: the agent keeps running its tasks on
// device-local time and its outbox keeps the results until it is back.
func (s *fleetSim) disconnect(ctx context.Context, id scope.DeviceID) error {
	s.net.Disconnect(id)
	return s.setConnected(ctx, id, false)
}

func (s *fleetSim) reconnect(ctx context.Context, id scope.DeviceID) error {
	s.net.Connect(id)
	return s.setConnected(ctx, id, true)
}

// settle lets server, agents and network work at the current instant until
// nothing is left to deliver; after the first round only agents that
// received messages tick again.
func (s *fleetSim) settle(ctx context.Context) error {
	if s.ticking == nil {
		for _, id := range s.order {
			if s.agents[id] != nil {
				s.ticking = append(s.ticking, id)
			}
		}
	}
	ids := s.ticking
	for range 50 {
		if err := s.srv.Tick(ctx); err != nil {
			return err
		}
		for _, id := range ids {
			if err := s.agents[id].Tick(ctx); err != nil {
				return fmt.Errorf("agent %s: %w", id, err)
			}
		}
		clear(s.touched)
		if s.net.Pump(ctx) == 0 && len(s.touched) == 0 {
			break
		}
		ids = ids[:0:0]
		for id := range s.touched {
			if s.agents[id] != nil {
				ids = append(ids, id)
			}
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	}
	// Users who clicked "Restart now" on a prompt (the agent's lock is
	// held while it shows the prompt, so the click is applied after).
	for _, id := range s.toAccept {
		if a := s.agents[id]; a != nil && a.AcceptRestart(s.restartTask) {
			s.accepted[id] = true
		}
	}
	s.toAccept = s.toAccept[:0]
	return nil
}

// restarter is a device's restart.Device: a quarter of the users keep
// their session locked (the forced restart is then not done and the
// result stays restart_required), a third click "Restart now" at the
// first prompt, the others are restarted when the policy forces it.
type restarter struct {
	s  *fleetSim
	id scope.DeviceID
}

func (r *restarter) ShowPrompt(context.Context, string) error {
	r.s.prompts++
	if hash(r.s.seed, "accept", string(r.id))%3 == 0 {
		r.s.toAccept = append(r.s.toAccept, r.id)
	}
	return nil
}

func (r *restarter) SessionLocked(context.Context) (bool, error) {
	return hash(r.s.seed, "locked", string(r.id))%4 == 0, nil
}

func (r *restarter) CloseApplications(context.Context) error { return nil }

func (r *restarter) Restart(context.Context) error {
	if r.s.accepted[r.id] {
		r.s.byUser++
	} else {
		r.s.forced++
	}
	return nil
}

// simClock is the simulation's clock: a settable Now. The runtimes are
// driven by Tick, which reads only Now; clock.Mock would also work but
// sleeps a millisecond on every Add and every timer it fires, which is
// most of the wall time of a simulated week. The embedded clock.Clock
// (tickers and timers, used only by the goroutine mode Run) is never
// reached here.
type simClock struct {
	clock.Clock
	mu  sync.Mutex
	now time.Time
}

func newSimClock(t time.Time) *simClock { return &simClock{Clock: clock.NewMock(), now: t} }

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *simClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c *simClock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

// Add moves the clock forward.
func (c *simClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// record is one run a device's security application started.
type record struct {
	Task    string
	Device  scope.DeviceID
	RunID   int64
	At, Due time.Time
	Started time.Time
}

// executor is the simulated security application of every device.
type executor struct {
	mu      sync.Mutex
	clk     *simClock
	seed    uint64
	records []record
	running []finish
}

// finish is a run that ends at an instant.
type finish struct {
	at   time.Time
	out  agent.Outcome
	done func(agent.Outcome)
}

// finishDue ends the runs whose time has come (called after each clock
// step, before the agents tick).
func (e *executor) finishDue(now time.Time) {
	e.mu.Lock()
	var due []finish
	keep := e.running[:0]
	for _, f := range e.running {
		if f.at.After(now) {
			keep = append(keep, f)
		} else {
			due = append(due, f)
		}
	}
	e.running = keep
	e.mu.Unlock()
	for _, f := range due {
		f.done(f.out)
	}
}

func (e *executor) For(id scope.DeviceID) agent.Executor { return devExec{e, id} }

func (e *executor) snapshot() []record {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]record(nil), e.records...)
}

type devExec struct {
	e  *executor
	id scope.DeviceID
}

func (x devExec) AppRunning(context.Context, string) bool { return true }

// Start runs r for a while: scans take 10 to 40 minutes and now and then
// end with warnings or fail; updates take 3 minutes; an installation
// takes 12 minutes and on half of the devices needs a restart.
func (x devExec) Start(_ context.Context, r agent.Run, done func(agent.Outcome)) error {
	h := hash(x.e.seed, r.TaskID, string(x.id), fmt.Sprint(r.RunID))
	out := agent.Outcome{State: task.Completed}
	d := 3 * time.Minute
	switch r.Type {
	case "virus_scan":
		d = time.Duration(10+h%31) * time.Minute
		switch h % 50 {
		case 0:
			out = agent.Outcome{State: task.Failed, Message: "scan engine error 0x80070005"}
		case 1, 2:
			out = agent.Outcome{State: task.CompletedWithWarnings, Message: "2 objects could not be disinfected"}
		}
	case "install_application":
		d = 12 * time.Minute
		out.RestartRequired = h%2 == 0
	}
	x.e.mu.Lock()
	x.e.records = append(x.e.records, record{Task: r.TaskID, Device: x.id, RunID: r.RunID, At: r.At, Due: r.Due, Started: r.StartedAt})
	x.e.running = append(x.e.running, finish{at: r.StartedAt.Add(d), out: out, done: done})
	x.e.mu.Unlock()
	return nil
}

func (x devExec) Stop(context.Context, string, int64) error { return nil }
