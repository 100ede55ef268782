package agentsqlite_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/agent/agentsqlite"
	"github.com/taskfleet/taskfleet/task/transport"
)

type recorder struct {
	mu   sync.Mutex
	sent []transport.Message
}

func (r *recorder) Send(_ context.Context, m transport.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, m)
	return nil
}

type starts struct {
	mu   sync.Mutex
	runs []agent.Run
}

func (s *starts) AppRunning(context.Context, string) bool { return true }
func (s *starts) Start(_ context.Context, r agent.Run, _ func(agent.Outcome)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs = append(s.runs, r)
	return nil
}
func (s *starts) Stop(context.Context, string, int64) error { return nil }

var compactRaw = cmp.Comparer(func(a, b json.RawMessage) bool {
	var x, y bytes.Buffer
	if json.Compact(&x, a) != nil || json.Compact(&y, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(x.Bytes(), y.Bytes())
})

// An agent database written by the protocol 2 agent (testdata/
// protocol2.db, made by testdata/protocol2-gen.go.txt at commit 2744b2a:
// its definitions hold whole tasks) opens and works after the upgrade:
// the tasks read as TaskSpecs with the same meaning, the run the old agent
// had in progress is reported failed, the queued reports are sent, the
// local task runs on its schedule with its settings, and its user can
// edit it.
func TestProtocol2DatabaseStillWorks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := os.ReadFile(filepath.Join("testdata", "protocol2.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "agent.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := agentsqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ts, err := st.Tasks(ctx)
	if err != nil {
		t.Fatalf("the protocol 2 tasks do not decode: %v", err)
	}
	t0 := time.Date(2026, 3, 23, 8, 0, 0, 0, time.UTC)
	daily := schedule.Default(schedule.EveryDays, t0, time.UTC)
	daily.Time = schedule.Clock(21, 0, 0)
	wantLocal := transport.TaskSpec{ID: "t-local", Name: "My scan", Description: "v1", Application: "ES", Type: "scan",
		Scope: transport.ScopeSpec{Kind: transport.ScopeLocal}, Schedule: daily, Restart: restart.Default(),
		Notifications: transport.NotificationsSpec{History: transport.HistoryAll, DeviceEventLog: true},
		Settings:      json.RawMessage(`{"action":"report","depth":3}`), Revision: 4, SettingsRevision: 3}
	byID := map[string]agent.LocalTask{}
	for _, lt := range ts {
		byID[lt.Def.Task.ID] = lt
	}
	if diff := cmp.Diff(wantLocal, byID["t-local"].Def.Task, compactRaw); diff != "" {
		t.Errorf("local task (-want +read):\n%s", diff)
	}
	g := byID["t-group"]
	if g.Running == nil || !g.Running.Executing || string(g.Def.Task.Settings) != `{"source":"server"}` || g.Def.Task.Local() {
		t.Fatalf("group task read as %+v", g)
	}
	runID := g.Running.RunID

	clk := clock.NewMock()
	clk.Set(t0.Add(20 * time.Minute))
	ex := &starts{}
	a, err := agent.New(ctx, agent.Config{Device: "pc-1", Store: st, Executor: ex, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ep := &recorder{}
	a.Attach(ep)
	if err := a.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	failed := false
	for _, m := range ep.sent {
		keys[m.Key] = true
		for _, k := range m.Merged {
			keys[k] = true
		}
		for _, r := range m.Results {
			if r.TaskID == "t-group" && r.RunID == runID && r.State == string(transport.StateFailed) {
				failed = true
			}
		}
	}
	for _, k := range []string{"ev/pc-1/low-disk", "r/pc-1/t-group/7097012400001/2"} {
		if !keys[k] {
			t.Errorf("the queued report %s was not sent (sent %v)", k, keys)
		}
	}
	if !failed {
		t.Errorf("the run the old agent had in progress was not reported failed")
	}

	for end := time.Date(2026, 3, 23, 21, 1, 0, 0, time.UTC); clk.Now().Before(end); {
		clk.Add(5 * time.Minute) // the device stays awake (ticks closer than SleepGap)
		if err := a.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ex.mu.Lock()
	runs := ex.runs
	ex.mu.Unlock()
	if len(runs) != 1 || runs[0].TaskID != "t-local" || string(runs[0].Settings) != `{"action":"report","depth":3}` {
		t.Errorf("runs at 21:01: %+v, want the local task's daily run with its settings", runs)
	}

	edit := byID["t-local"].Def.Task
	edit.Description = "v2"
	if err := a.EditLocalTask(ctx, "alice", edit); err != nil {
		t.Fatalf("the local task cannot be edited: %v", err)
	}
}
