package agent_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

// PutTask over a stored task reuses the store's own arrays: neither the
// caller's later changes nor Tasks' results may reach the stored copy.
func TestMemStorePutTaskKeepsItsOwnCopy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := agent.NewMemStore()
	lt := agent.LocalTask{Def: def("a"), Done: []int64{1, 2, 3}, Queue: []transport.Start{{TaskID: "a", RunID: 4}},
		Running: &agent.RunState{RunID: 5, Seq: 1, Executing: true}}
	put := func(lt agent.LocalTask) {
		t.Helper()
		if err := s.PutTask(ctx, lt); err != nil {
			t.Fatal(err)
		}
	}
	stored := func() agent.LocalTask {
		t.Helper()
		ts, err := s.Tasks(ctx)
		if err != nil || len(ts) != 1 {
			t.Fatalf("Tasks = %d tasks, %v", len(ts), err)
		}
		return ts[0]
	}
	put(lt)
	// A second save: shorter Done, no queue, the run's next state.
	lt.Done = lt.Done[:2]
	lt.Queue = nil
	lt.Running = &agent.RunState{RunID: 5, Seq: 2}
	put(lt)
	lt.Done[0] = 99
	lt.Running.Seq = 99
	got := stored()
	got.Done[1] = 98
	got.Running.Seq = 98
	got = stored()
	if diff := cmp.Diff([]int64{1, 2}, got.Done); diff != "" {
		t.Errorf("Done (-want +got):\n%s", diff)
	}
	if got.Queue != nil {
		t.Errorf("Queue = %v, want none", got.Queue)
	}
	if got.Running == nil || got.Running.Seq != 2 || got.Running.Executing {
		t.Errorf("Running = %+v, want seq 2, not executing", got.Running)
	}
	lt.Running = nil
	put(lt)
	if got := stored(); got.Running != nil {
		t.Errorf("Running = %+v after the run ended", got.Running)
	}
	// The next run begins (the store reuses the ended run's state): still
	// the store's own.
	lt.Running = &agent.RunState{RunID: 7, Seq: 1, Executing: true}
	put(lt)
	lt.Running.Seq = 97
	got = stored()
	got.Running.Seq = 96
	if got := stored(); got.Running == nil || got.Running.RunID != 7 || got.Running.Seq != 1 {
		t.Errorf("Running = %+v, want run 7 seq 1", got.Running)
	}
	lt.Running = nil
	// The queue fills again after it emptied (the store keeps its
	// array): still a copy of the caller's.
	lt.Queue = []transport.Start{{TaskID: "a", RunID: 6}}
	put(lt)
	lt.Queue[0].RunID = 77
	got = stored()
	got.Queue[0].RunID = 78
	if diff := cmp.Diff([]transport.Start{{TaskID: "a", RunID: 6}}, stored().Queue); diff != "" {
		t.Errorf("Queue (-want +got):\n%s", diff)
	}
}

// A key removed and enqueued again is in the outbox once, at its new place.
func TestMemStoreOutboxReEnqueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := agent.NewMemStore()
	for _, k := range []string{"a", "b", "a"} {
		if err := s.Enqueue(ctx, transport.Message{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remove(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"c", "a"} {
		if err := s.Enqueue(ctx, transport.Message{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // reading compacts the queue; a second read agrees
		ms, err := s.Outbox(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, m := range ms {
			keys = append(keys, m.Key)
		}
		if diff := cmp.Diff([]string{"b", "c", "a"}, keys); diff != "" {
			t.Errorf("outbox (-want +got):\n%s", diff)
		}
	}
}
