package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

// gateStore is a memstore whose result writes can be held (gate) or fail
// (fail), and which counts them.
type gateStore struct {
	*memstore.Store
	gate    chan struct{} // non-nil: a write waits until it is closed
	entered chan struct{} // a held write has begun
	fail    atomic.Bool
	writes  atomic.Int64
	mu      sync.Mutex
}

func (s *gateStore) UpsertResults(ctx context.Context, p storage.UpsertResultsParams) (int, error) {
	s.mu.Lock()
	gate, entered := s.gate, s.entered
	s.mu.Unlock()
	if gate != nil {
		entered <- struct{}{}
		<-gate
	}
	if s.fail.Load() {
		return 0, errors.New("disk full")
	}
	s.writes.Add(1)
	return s.Store.UpsertResults(ctx, p)
}

func (s *gateStore) hold() {
	s.mu.Lock()
	s.gate, s.entered = make(chan struct{}), make(chan struct{}, 1)
	s.mu.Unlock()
}

func (s *gateStore) release() {
	s.mu.Lock()
	close(s.gate)
	s.gate = nil
	s.mu.Unlock()
}

// Group commit: device messages are checked and buffered while a batch
// is being written (the write does not hold the server's lock); the
// messages that arrived meanwhile are written in one store call; a
// message is acknowledged only after its batch is stored, and a failed
// write acknowledges none of its messages (each device resends, nothing
// is lost or recorded twice). Before, Tick wrote the batch with the
// lock held, so every device message waited for the write.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const n = 40
	dev := func(i int) scope.DeviceID { return scope.DeviceID(fmt.Sprintf("d%02d", i)) }
	devs := make([]scope.DeviceID, n)
	for i := range devs {
		devs[i] = dev(i)
	}
	store := &gateStore{Store: memstore.New()}
	srv, m, clk, rec, tk, run := startedRun(t, store, devs...)
	msg := func(i int, key string) transport.Message {
		return transport.Message{Kind: transport.Results, Device: dev(i), Key: key, Results: []transport.Result{{
			TaskID: tk.ID, RunID: run.ID, Seq: transport.SeqDevice, State: string(task.Completed), FinishedAt: clk.Now(), UpdatedAt: clk.Now(), Progress: 100}}}
	}
	acks := func() map[string]bool {
		out := map[string]bool{}
		for _, x := range rec.take() {
			if x.Kind == transport.Ack {
				for _, k := range x.Acks {
					out[string(x.Device)+" "+k] = true
				}
			}
		}
		return out
	}

	// Device 0's result is being written (the store holds the write).
	srv.Handle(ctx, msg(0, "k0"))
	store.hold()
	ticked := make(chan error, 1)
	go func() { ticked <- srv.Tick(ctx) }()
	<-store.entered
	// Meanwhile the other devices' messages are checked and buffered.
	handled := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for i := 1; i < n; i++ {
			wg.Go(func() { srv.Handle(ctx, msg(i, "k0")) })
		}
		wg.Wait()
		close(handled)
	}()
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		store.release()
		t.Fatal("device messages waited for another batch's write")
	}
	if a := acks(); len(a) != 0 {
		t.Fatalf("acknowledged before the batch was stored: %v", a)
	}
	before := store.writes.Load()
	store.release()
	must(t, <-ticked)
	if a := acks(); len(a) != 1 || !a["d00 k0"] {
		t.Fatalf("acks after the first batch: %v, want d00's only", a)
	}
	// The 39 messages that arrived during the write: one store call.
	must(t, srv.Tick(ctx))
	if got := store.writes.Load() - before; got != 2 {
		t.Fatalf("%d result writes for two batches, want 2", got)
	}
	if a := acks(); len(a) != n-1 {
		t.Fatalf("%d acks for the second batch, want %d", len(a), n-1)
	}
	if st := srv.Stats(); st.ResultsApplied != n || st.Rejected != 0 {
		t.Fatalf("applied %d, rejected %d; want %d, 0", st.ResultsApplied, st.Rejected, n)
	}

	// A failed write acknowledges none of its messages; the resent ones
	// are recorded once.
	run2, err := m.Start(ctx, task.System, tk.ID)
	must(t, err)
	must(t, srv.Tick(ctx))
	rec.take()
	msg2 := func(i int) transport.Message {
		x := msg(i, "k2")
		x.Results[0].RunID = run2.ID
		return x
	}
	store.fail.Store(true)
	for i := range n {
		srv.Handle(ctx, msg2(i))
	}
	must(t, srv.Tick(ctx)) // the error is logged; Tick goes on
	if a := acks(); len(a) != 0 {
		t.Fatalf("a failed write acknowledged %d messages", len(a))
	}
	store.fail.Store(false)
	for i := range n {
		srv.Handle(ctx, msg2(i)) // resent
	}
	must(t, srv.Tick(ctx))
	if a := acks(); len(a) != n {
		t.Fatalf("%d acks after the resend, want %d", len(a), n)
	}
	stats, err := m.Statistics(ctx, task.System, tk.ID)
	must(t, err)
	if stats.ByState[task.Completed] != n {
		t.Fatalf("statistics %v, want %d completed", stats.ByState, n)
	}
	if st := srv.Stats(); st.ResultsApplied != 2*n {
		t.Fatalf("applied %d, want %d (each result once)", st.ResultsApplied, 2*n)
	}
}
