package httptransport_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
)

const appES = "Endpoint Security"

// fleet is an engine on a memstore behind an HTTPS Server.
type fleet struct {
	*fixture
	store  *memstore.Store
	m      *task.Manager
	eng    *engine.Server
	scan   *task.Task
	cancel context.CancelFunc
	done   chan struct{}
}

// newFleet starts an engine for devices dev-1..dev-n on store (a new one
// when nil) behind a Server listening on addr (any port when empty),
// with the enrollment keys of keys (new ones when nil).
func newFleet(t *testing.T, n int, store *memstore.Store, keys *httptransport.MemKeyStore, f *fixture, addr string) *fleet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	fl := &fleet{store: store, cancel: cancel, done: make(chan struct{})}
	if fl.store == nil {
		fl.store = memstore.New()
		if err := fl.store.Devices().PutGroups(ctx, scope.AdminGroup{ID: "root", Name: "Managed devices"}); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= n; i++ {
			if err := fl.store.Devices().PutDevices(ctx, scope.Device{ID: transport.DeviceID(fmt.Sprintf("dev-%d", i)), GroupID: "root", TimeZone: "UTC",
				Tags: []string{}, Connected: true, Server: scope.ServerRef{ID: "main", Role: scope.Primary},
				Applications: map[string]scope.AppState{appES: {Installed: true, Running: true}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	clk := clock.New()
	eng, err := engine.New(engine.Config{Store: fl.store, Inventory: fl.store.Inventory(), Clock: clk, ReplicaID: "fleet", RetryInterval: 300 * time.Millisecond, VisibilityTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	reg := task.NewRegistry()
	if err := reg.Register(task.TaskType{Application: appES, Name: "virus_scan"}); err != nil {
		t.Fatal(err)
	}
	m, err := task.New(task.Config{Store: fl.store, Registry: reg, Inventory: fl.store.Inventory(), Clock: clk, Dispatcher: eng})
	if err != nil {
		t.Fatal(err)
	}
	fc := fixtureConfig{handler: eng, addr: addr}
	if keys != nil {
		fc.enroll.Keys = keys
	}
	if f == nil {
		f = newFixture(t, fc)
	} else {
		f.setup(t, fc)
	}
	fl.fixture, fl.m, fl.eng = f, m, eng
	if err := eng.Open(ctx, m, f.srv); err != nil {
		t.Fatal(err)
	}
	list, err := m.List(ctx, task.System, task.ListParams{NameContains: "Quick scan"})
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range list.Applications {
		for _, tk := range app.Tasks {
			fl.scan = tk
		}
	}
	if fl.scan == nil {
		fl.scan, err = m.Create(ctx, task.System, task.Task{Name: "Quick scan", Application: appES, Type: "virus_scan",
			Scope: scope.Scope{Kind: scope.Group, Group: "root"}, Schedule: schedule.Default(schedule.Manual, clk.Now(), time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
	}
	go func() { defer close(fl.done); _ = eng.Run(ctx, 50*time.Millisecond) }()
	t.Cleanup(fl.stop)
	return fl
}

var stopMu sync.Mutex

func (fl *fleet) stop() {
	stopMu.Lock()
	defer stopMu.Unlock()
	fl.cancel()
	<-fl.done
	fl.ts.Close()
}

func (fl *fleet) result(t *testing.T, d transport.DeviceID) task.Result {
	t.Helper()
	rs, err := fl.m.Results(context.Background(), task.System, fl.scan.ID, task.ResultsParams{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.DeviceID == d {
			return r
		}
	}
	return task.Result{}
}

// counter is an agent.Executor that finishes every run at once and
// counts its executions.
type counter struct {
	mu   sync.Mutex
	runs map[int64]int
}

func (c *counter) AppRunning(context.Context, string) bool { return true }
func (c *counter) Start(_ context.Context, r agent.Run, done func(agent.Outcome)) error {
	c.mu.Lock()
	if c.runs == nil {
		c.runs = map[int64]int{}
	}
	c.runs[r.RunID]++
	c.mu.Unlock()
	done(agent.Outcome{State: transport.StateCompleted})
	return nil
}
func (c *counter) Stop(context.Context, string, int64) error { return nil }

func (c *counter) count() map[int64]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[int64]int{}
	for k, v := range c.runs {
		out[k] = v
	}
	return out
}

// runAgent runs a real agent of device over an enrolled Client.
func runAgent(t *testing.T, ctx context.Context, f *fixture, device transport.DeviceID) *counter {
	t.Helper()
	ex := &counter{}
	a, err := agent.New(ctx, agent.Config{Device: device, Store: agent.NewMemStore(), Executor: ex, Heartbeat: 300 * time.Millisecond, RetryInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	c := f.client(t, httptransport.ClientConfig{Device: device, EnrollSecret: secret, Wait: 2 * time.Second, BackoffMin: 50 * time.Millisecond, BackoffMax: 400 * time.Millisecond})
	a.Attach(c)
	go func() { _ = c.Run(ctx, a) }()
	go func() { _ = a.Run(ctx, 20*time.Millisecond) }()
	return ex
}

func waitState(t *testing.T, fl *fleet, d transport.DeviceID, run int64, st task.State) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if r := fl.result(t, d); r.RunID == run && r.State == st {
			return
		}
	}
	t.Fatalf("%s: result %+v, want run %d %s", d, fl.result(t, d), run, st)
}

// A device with a valid key that sends results for another device
// changes nothing of the other device; with the other's id in its
// headers it gets 401.
func TestDeviceCannotActAsAnother(t *testing.T) {
	t.Parallel()
	fl := newFleet(t, 2, nil, nil, nil, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runAgent(t, ctx, fl.fixture, "dev-2")
	_, key1 := fl.enrolled(t, "dev-1")
	run, err := fl.m.Start(ctx, task.Actor{ID: "admin"}, fl.scan.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, fl, "dev-2", run.ID, task.Completed)
	before := fl.result(t, "dev-2")
	forged := transport.Message{Kind: transport.Results, Key: "forged", Device: "dev-2", Merged: []string{"forged"},
		Results: []transport.Result{{TaskID: fl.scan.ID, Device: "dev-2", RunID: run.ID, Seq: 99, State: "failed", Message: "forged"}}}
	if code, _ := fl.raw(t, http.MethodPost, httptransport.PathSend, auth("dev-1", key1), encode(t, forged)); code != http.StatusNoContent {
		t.Errorf("dev-1's forged results: %d, want 204 (items rejected by the engine)", code)
	}
	if code, _ := fl.raw(t, http.MethodPost, httptransport.PathSend, auth("dev-2", key1), encode(t, forged)); code != http.StatusUnauthorized {
		t.Errorf("dev-1's key under dev-2's id: %d, want 401", code)
	}
	if code, _ := fl.raw(t, http.MethodGet, httptransport.PathPoll+"?wait=0", auth("dev-2", key1), nil); code != http.StatusUnauthorized {
		t.Errorf("dev-1 polling dev-2's queue: %d, want 401", code)
	}
	if after := fl.result(t, "dev-2"); after != before {
		t.Errorf("dev-2's result changed:\n%+v\n%+v", before, after)
	}
	if st := fl.eng.Stats(); st.Rejected < 1 {
		t.Errorf("engine rejected %d items, want the forged one counted", st.Rejected)
	}
}

// An agent of protocol 1 (no version field, protocol 1 field names,
// results naming their device) keeps working against this server.
func TestAgentOneProtocolVersionOlder(t *testing.T) {
	t.Parallel()
	fl := newFleet(t, 1, nil, nil, nil, "")
	ctx := context.Background()
	_, key := fl.enrolled(t, "dev-1")
	v1 := `{"Kind":"heartbeat","Device":"dev-1","SentAt":"2026-03-23T10:00:00Z","Definition":null,"Heartbeat":{"Held":null}}`
	if code, _ := fl.raw(t, http.MethodPost, httptransport.PathSend, auth("dev-1", key), []byte(v1)); code != http.StatusNoContent {
		t.Fatalf("v1 heartbeat: %d", code)
	}
	run, err := fl.m.Start(ctx, task.Actor{ID: "admin"}, fl.scan.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The v1 agent polls: the start arrives in a form it reads (unknown
	// fields ignored).
	var start *transport.Start
	for deadline := time.Now().Add(10 * time.Second); start == nil && time.Now().Before(deadline); {
		req, _ := http.NewRequest(http.MethodGet, fl.url+httptransport.PathPoll+"?wait=1", nil)
		for k, v := range auth("dev-1", key) {
			req.Header.Set(k, v)
		}
		resp, err := fl.httpClient(t, "").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var v1msgs []struct {
			Kind  string
			Start *struct {
				TaskID string
				RunID  int64
			}
		}
		err = jsonDecode(resp, &v1msgs)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range v1msgs {
			if m.Kind == "start" && m.Start != nil {
				start = &transport.Start{TaskID: m.Start.TaskID, RunID: m.Start.RunID}
			}
		}
	}
	if start == nil || start.RunID != run.ID {
		t.Fatalf("the v1 agent got start %+v, want run %d", start, run.ID)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	res := fmt.Sprintf(`{"Key":"r/dev-1/%[1]s/%[2]d/3","Kind":"results","Device":"dev-1","SentAt":%[3]q,"Results":[{"task_id":%[1]q,"device_id":"dev-1","run_id":%[2]d,"seq":3,"state":"completed","started_at":%[3]q,"finished_at":%[3]q,"updated_at":%[3]q,"progress":100,"message":"done"}],"Merged":["r/dev-1/%[1]s/%[2]d/3"]}`, fl.scan.ID, run.ID, now)
	if code, _ := fl.raw(t, http.MethodPost, httptransport.PathSend, auth("dev-1", key), []byte(res)); code != http.StatusNoContent {
		t.Fatalf("v1 results: %d", code)
	}
	waitState(t, fl, "dev-1", run.ID, task.Completed)
	if r := fl.result(t, "dev-1"); r.Message != "done" {
		t.Errorf("result %+v", r)
	}
}

// The server stops and comes back on the same address with the same
// storage: the agents reconnect on their own (backoff) and the next run
// arrives; no run is executed twice.
func TestReconnectAfterServerRestart(t *testing.T) {
	t.Parallel()
	keys := httptransport.NewMemKeyStore()
	fl := newFleet(t, 2, nil, keys, nil, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ex1 := runAgent(t, ctx, fl.fixture, "dev-1")
	ex2 := runAgent(t, ctx, fl.fixture, "dev-2")
	run1, err := fl.m.Start(ctx, task.Actor{ID: "admin"}, fl.scan.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, fl, "dev-1", run1.ID, task.Completed)
	waitState(t, fl, "dev-2", run1.ID, task.Completed)
	addr := strings.TrimPrefix(fl.url, "https://")
	fl.stop()
	time.Sleep(300 * time.Millisecond) // the agents fail and back off
	fl2 := newFleet(t, 2, fl.store, keys, fl.fixture, addr)
	if fl2.url != fl.url {
		t.Fatalf("restarted on %s, want %s", fl2.url, fl.url)
	}
	waitFor(t, func() bool { return fl2.srv.Connected("dev-1") && fl2.srv.Connected("dev-2") })
	time.Sleep(1100 * time.Millisecond) // a distinct run id (they are derived from time)
	run2, err := fl2.m.Start(ctx, task.Actor{ID: "admin"}, fl2.scan.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, fl2, "dev-1", run2.ID, task.Completed)
	waitState(t, fl2, "dev-2", run2.ID, task.Completed)
	for _, ex := range []*counter{ex1, ex2} {
		got := ex.count()
		if len(got) != 2 || got[run1.ID] != 1 || got[run2.ID] != 1 {
			t.Errorf("executions %v, want runs %d and %d once each", got, run1.ID, run2.ID)
		}
	}
}
