// Package agenttest is the conformance suite of the device agent's local
// store contract (agent.Store). Every implementation runs it from a test:
//
//	func TestConformance(t *testing.T) {
//		dir := t.TempDir()
//		agenttest.RunStore(t, agenttest.StoreConfig{Durable: true,
//			Open: func(t *testing.T, name string) agent.Store {
//				st, err := agentsqlite.Open(context.Background(), filepath.Join(dir, name+".db"))
//				if err != nil {
//					t.Fatal(err)
//				}
//				return st
//			}})
//	}
package agenttest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

// StoreConfig describes the store under test and its capabilities.
type StoreConfig struct {
	// Open returns the store named name. Each subtest uses its own name;
	// a durable store opened again under a name after Close holds what
	// was written under it. Open fails the test itself on error.
	Open func(t *testing.T, name string) agent.Store
	// Durable says the store keeps its contents across Close and Open
	// (an agent or device restart); the suite then checks it.
	Durable bool
}

var t0 = time.Date(2026, 3, 23, 0, 0, 0, 0, time.UTC)

func def(id string) transport.Definition {
	s := schedule.Default(schedule.Weekly, t0, time.UTC)
	s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayInterval, IntervalMinutes: 15}
	return transport.Definition{
		Task: transport.TaskSpec{ID: id, Name: "scan " + id, Application: "ES", Type: "scan", Scope: transport.ScopeSpec{Kind: "group"},
			Schedule: s, Restart: restart.Default(), Settings: json.RawMessage(`{"action":"report"}`), Revision: 3, SettingsRevision: 2},
		Since: t0, Devices: 10, LastManual: &transport.Start{TaskID: id, RunID: 44, At: t0, Manual: true},
	}
}

var rawEqual = cmp.Comparer(func(a, b json.RawMessage) bool { return string(a) == string(b) })

// RunStore runs the conformance suite against the store cfg opens.
func RunStore(t *testing.T, cfg StoreConfig) {
	t.Helper()
	t.Run("RoundTrip", func(t *testing.T) {
		ctx := context.Background()
		s := cfg.Open(t, "roundtrip")
		lt := agent.LocalTask{Def: def("a"), ReceivedAt: t0, Cursor: t0.Add(time.Hour), Done: []int64{1, 2},
			Queue: []transport.Start{{TaskID: "a", RunID: 9, At: t0}}, Running: &agent.RunState{RunID: 7, StartedAt: t0, Seq: 3, Executing: true}}
		if err := s.PutTask(ctx, lt); err != nil {
			t.Fatal(err)
		}
		if err := s.PutTask(ctx, agent.LocalTask{Def: def("b")}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteTask(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteTask(ctx, "missing"); err != nil {
			t.Fatalf("DeleteTask of a missing task: %v", err)
		}
		got, err := s.Tasks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("%d tasks, want 1", len(got))
		}
		if diff := cmp.Diff(lt, got[0], cmpopts.IgnoreUnexported(agent.LocalTask{}), rawEqual); diff != "" {
			t.Errorf("task round trip (-want +got):\n%s", diff)
		}
		for _, k := range []string{"k1", "k2", "k1", "k3"} {
			m := transport.Message{Key: k, Kind: transport.Results, Results: []transport.Result{{TaskID: "a", RunID: 1, State: string(transport.StateCompleted)}}}
			if err := s.Enqueue(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Enqueue(ctx, transport.Message{Kind: transport.Results}); err == nil {
			t.Error("Enqueue without a key succeeded")
		}
		if err := s.Remove(ctx, []string{"k2", "nope"}); err != nil {
			t.Fatal(err)
		}
		ms, err := s.Outbox(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, m := range ms {
			keys = append(keys, m.Key)
		}
		if diff := cmp.Diff([]string{"k1", "k3"}, keys); diff != "" {
			t.Errorf("outbox keys, in enqueue order, a key once (-want +got):\n%s", diff)
		}
		if err := s.SetMeta(ctx, "updates", t0, 5); err != nil {
			t.Fatal(err)
		}
		at, n, err := s.Meta(ctx, "updates")
		if err != nil || !at.Equal(t0) || n != 5 {
			t.Errorf("meta = %v %d %v, want %v 5", at, n, err, t0)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Tasks(ctx); err == nil {
			t.Error("Tasks after Close succeeded")
		}
	})
	if !cfg.Durable {
		return
	}
	t.Run("SurvivesReopen", func(t *testing.T) {
		ctx := context.Background()
		s := cfg.Open(t, "reopen")
		if err := s.PutTask(ctx, agent.LocalTask{Def: def("x"), Cursor: t0}); err != nil {
			t.Fatal(err)
		}
		if err := s.Enqueue(ctx, transport.Message{Key: "r1", Kind: transport.Results}); err != nil {
			t.Fatal(err)
		}
		if err := s.SetMeta(ctx, "updates", t0, 2); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = cfg.Open(t, "reopen")
		defer s.Close()
		ts, err := s.Tasks(ctx)
		if err != nil || len(ts) != 1 || ts[0].Def.Task.ID != "x" || !ts[0].Cursor.Equal(t0) {
			t.Fatalf("tasks after reopen: %v %v", ts, err)
		}
		ms, err := s.Outbox(ctx)
		if err != nil || len(ms) != 1 || ms[0].Key != "r1" {
			t.Fatalf("outbox after reopen: %v %v", ms, err)
		}
		if at, n, err := s.Meta(ctx, "updates"); err != nil || !at.Equal(t0) || n != 2 {
			t.Fatalf("meta after reopen = %v %d %v", at, n, err)
		}
	})
}
