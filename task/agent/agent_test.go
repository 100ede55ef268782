package agent_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

type endpoint struct {
	mu   sync.Mutex
	sent []transport.Message
	down bool
}

func (e *endpoint) Send(_ context.Context, m transport.Message) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.down {
		return transport.ErrUnreachable
	}
	e.sent = append(e.sent, m)
	return nil
}

// result is a result as the server records it.
type result struct {
	TaskID                                  string
	DeviceID                                transport.DeviceID
	RunID, Seq                              int64
	State                                   transport.State
	DueAt, StartedAt, FinishedAt, UpdatedAt time.Time
	Progress                                int
	Message                                 string
	RestartRequired                         bool
}

// results returns the final states reported, in order, de-duplicated by
// key (the server's view).
func (e *endpoint) results() []result {
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := map[string]bool{}
	var out []result
	for _, m := range e.sent {
		if m.Kind != transport.Results {
			continue
		}
		for i, r := range m.Results {
			k := m.Key
			if len(m.Merged) == len(m.Results) {
				k = m.Merged[i]
			}
			if seen[k] {
				continue
			}
			seen[k] = true
			if transport.State(r.State).Final() {
				out = append(out, result{TaskID: r.TaskID, DeviceID: m.Device, RunID: r.RunID, Seq: r.Seq, State: transport.State(r.State), DueAt: r.DueAt,
					StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, UpdatedAt: r.UpdatedAt, Progress: r.Progress, Message: r.Message, RestartRequired: r.RestartRequired})
			}
		}
	}
	return out
}

type exec struct {
	out     agent.Outcome
	running bool
	starts  int
}

func (x *exec) AppRunning(context.Context, string) bool { return x.running }
func (x *exec) Start(_ context.Context, _ agent.Run, done func(agent.Outcome)) error {
	x.starts++
	done(x.out)
	return nil
}
func (x *exec) Stop(context.Context, string, int64) error { return nil }

type restarter struct {
	prompts  []time.Time
	restarts int
	locked   bool
	clk      clock.Clock
}

func (r *restarter) ShowPrompt(context.Context, string) error {
	r.prompts = append(r.prompts, r.clk.Now())
	return nil
}
func (r *restarter) SessionLocked(context.Context) (bool, error) { return r.locked, nil }
func (r *restarter) CloseApplications(context.Context) error     { return nil }
func (r *restarter) Restart(context.Context) error               { r.restarts++; return nil }

func newAgent(t *testing.T, x *exec, rs restart.Device) (*agent.Agent, *clock.Mock, *endpoint) {
	t.Helper()
	clk := clock.NewMock()
	clk.Set(t0)
	a, err := agent.New(context.Background(), agent.Config{Device: "d1", Store: agent.NewMemStore(), Executor: x, Clock: clk, Restarter: rs})
	if err != nil {
		t.Fatal(err)
	}
	ep := &endpoint{}
	a.Attach(ep)
	return a, clk, ep
}

func manualDef(p restart.Policy) *transport.Definition {
	d := def("m")
	d.Task.Schedule = schedule.Default(schedule.Manual, t0, time.UTC)
	d.Task.Restart = p
	d.LastManual = nil
	return &d
}

func start(a *agent.Agent, d *transport.Definition, run int64) {
	a.Handle(context.Background(), transport.Message{Kind: transport.StartRun, Definition: d, Start: &transport.Start{TaskID: d.Task.ID, RunID: run, At: t0}})
}

// "Operating system restart settings": a run that needs a restart follows
// the task's policy.
func TestRestartPolicyIsApplied(t *testing.T) {
	t.Parallel()
	prompt := restart.Default() // prompt every 5 min, force after 30
	dont := restart.Default()
	dont.Action = restart.DoNotRestart
	now := restart.Default()
	now.Action = restart.Restart
	for _, c := range []struct {
		name     string
		policy   restart.Policy
		locked   bool
		state    transport.State
		restarts int
		prompts  int
	}{
		{"prompt then forced restart", prompt, false, transport.StateCompleted, 1, 6},
		{"locked session is not restarted", prompt, true, transport.StateRestartRequired, 0, 6},
		{"do not restart", dont, false, transport.StateRestartRequired, 0, 0},
		{"restart at once", now, false, transport.StateCompleted, 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			x := &exec{out: agent.Outcome{State: transport.StateCompleted, RestartRequired: true}, running: true}
			rs := &restarter{locked: c.locked}
			a, clk, ep := newAgent(t, x, rs)
			rs.clk = clk
			ctx := context.Background()
			start(a, manualDef(c.policy), 1)
			for range 40 {
				if err := a.Tick(ctx); err != nil {
					t.Fatal(err)
				}
				clk.Add(time.Minute)
			}
			res := ep.results()
			if len(res) != 1 || res[0].State != c.state {
				t.Fatalf("results %+v, want one %s", res, c.state)
			}
			if rs.restarts != c.restarts || len(rs.prompts) != c.prompts {
				t.Errorf("restarts %d prompts %d, want %d and %d", rs.restarts, len(rs.prompts), c.restarts, c.prompts)
			}
		})
	}
}

// A StartRun delivered twice (at-least-once) runs once.
func TestDuplicateStartRunsOnce(t *testing.T) {
	t.Parallel()
	x := &exec{out: agent.Outcome{State: transport.StateCompleted}, running: true}
	a, clk, ep := newAgent(t, x, nil)
	ctx := context.Background()
	d := manualDef(restart.Default())
	start(a, d, 5)
	_ = a.Tick(ctx)
	start(a, d, 5)
	clk.Add(time.Minute)
	_ = a.Tick(ctx)
	if x.starts != 1 || len(ep.results()) != 1 {
		t.Fatalf("starts %d results %d, want 1 and 1", x.starts, len(ep.results()))
	}
}

// The outbox keeps results while the server is unreachable and resends
// them until acknowledged.
func TestOutboxRetriesUntilAcknowledged(t *testing.T) {
	t.Parallel()
	x := &exec{out: agent.Outcome{State: transport.StateCompleted}, running: true}
	a, clk, ep := newAgent(t, x, nil)
	ctx := context.Background()
	ep.down = true
	start(a, manualDef(restart.Default()), 5)
	_ = a.Tick(ctx)
	if a.OutboxLen(ctx) != 2 { // running, completed
		t.Fatalf("outbox %d, want 2", a.OutboxLen(ctx))
	}
	ep.down = false
	clk.Add(time.Minute)
	_ = a.Tick(ctx)
	clk.Add(time.Minute)
	_ = a.Tick(ctx)
	ep.mu.Lock()
	var keys []string
	for _, m := range ep.sent {
		if m.Kind == transport.Results {
			keys = append(keys, m.Merged...)
		}
	}
	ep.mu.Unlock()
	if len(keys) != 4 { // sent twice: nothing was acknowledged
		t.Fatalf("sent %d outbox entries, want 4", len(keys))
	}
	a.Handle(ctx, transport.Message{Kind: transport.Ack, Acks: keys[:2]})
	if a.OutboxLen(ctx) != 0 {
		t.Errorf("outbox %d after ack, want 0", a.OutboxLen(ctx))
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	_, err := agent.New(context.Background(), agent.Config{Heartbeat: -time.Second})
	var ve agent.ValidationErrors
	if !errors.As(err, &ve) || !errors.Is(err, agent.ErrInvalid) {
		t.Fatalf("err %v", err)
	}
	fields := map[string]bool{}
	for _, e := range ve {
		fields[e.Field] = true
	}
	for _, f := range []string{"Device", "Store", "Executor", "Heartbeat"} {
		if !fields[f] {
			t.Errorf("no error for %s in %v", f, err)
		}
	}
}

// The heartbeat is Quiet (protocol 4: no Sync answer needed while the
// server has no newer updates) exactly while the outbox is empty: a new
// agent may have messages from before a restart, one with a result
// waiting for its acknowledgement needs the Sync that says "send now",
// and once the result is acknowledged and a flush found the outbox
// empty, its heartbeats are Quiet again.
func TestHeartbeatQuietOnlyWithAnEmptyOutbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, clk, ep := newAgent(t, &exec{out: agent.Outcome{State: transport.StateCompleted}}, nil)
	quiet := func() []bool {
		t.Helper()
		ep.mu.Lock()
		defer ep.mu.Unlock()
		var out []bool
		for _, m := range ep.sent {
			if m.Kind == transport.Heartbeat {
				if m.Version != transport.ProtocolVersion {
					t.Errorf("heartbeat of version %d", m.Version)
				}
				out = append(out, m.Heartbeat.Quiet)
			}
		}
		ep.sent = nil
		return out
	}
	var results []string
	takeResults := func() {
		ep.mu.Lock()
		defer ep.mu.Unlock()
		for _, m := range ep.sent {
			if m.Kind == transport.Results {
				results = append(results, m.Key)
			}
		}
	}
	tick(t, a, clk, 0) // the first heartbeat: the outbox was not read yet
	if got := quiet(); len(got) != 1 || got[0] {
		t.Fatalf("first heartbeat quiet = %v, want one, not quiet", got)
	}
	tick(t, a, clk, 10*time.Minute)
	if got := quiet(); len(got) == 0 || slices.Contains(got, false) {
		t.Fatalf("heartbeats with an empty outbox: quiet = %v, want all quiet", got)
	}
	start(a, manualDef(restart.Default()), 1)
	tick(t, a, clk, 10*time.Minute)
	takeResults()
	if got := quiet(); len(got) == 0 || slices.Contains(got, true) || len(results) == 0 {
		t.Fatalf("heartbeats with a result unacknowledged: quiet = %v (results sent %v), want none quiet", got, results)
	}
	a.Handle(ctx, transport.Message{Kind: transport.Ack, Device: "d1", Acks: results})
	tick(t, a, clk, 30*time.Minute)
	if got := quiet(); len(got) == 0 || !got[len(got)-1] {
		t.Fatalf("heartbeats after the acknowledgement: quiet = %v, want quiet again", got)
	}
}
