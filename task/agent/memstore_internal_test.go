package agent

import (
	"context"
	"fmt"
	"testing"

	"github.com/taskfleet/taskfleet/task/transport"
)

// The MemStore's queue keeps removed messages only until the outbox is
// read or emptied: an agent whose flushes send what it enqueued without
// reading the outbox back (Agent.fresh) must not make it grow without
// bound.
func TestMemStoreQueueStaysBoundedWithoutReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewMemStore()
	for i := range 1000 {
		keys := []string{fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)}
		for _, k := range keys {
			if err := s.Enqueue(ctx, transport.Message{Key: k, Kind: transport.Results}); err != nil {
				t.Fatal(err)
			}
		}
		// A message that stays unacknowledged for a while.
		if i%100 == 0 {
			if err := s.Enqueue(ctx, transport.Message{Key: fmt.Sprintf("slow%d", i), Kind: transport.Results}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Remove(ctx, keys); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 {
			if err := s.Remove(ctx, []string{fmt.Sprintf("slow%d", i-99)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.mu.Lock()
	n, live := len(s.queue), len(s.outbox)
	s.mu.Unlock()
	if live != 0 || n > 64 {
		t.Fatalf("queue holds %d entries for %d messages in the outbox, want at most 64", n, live)
	}
	// The order of what is left is kept.
	for _, k := range []string{"x", "y", "z"} {
		if err := s.Enqueue(ctx, transport.Message{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remove(ctx, []string{"y"}); err != nil {
		t.Fatal(err)
	}
	ms, err := s.Outbox(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Key != "x" || ms[1].Key != "z" {
		t.Fatalf("outbox %v, want x, z", ms)
	}
}
