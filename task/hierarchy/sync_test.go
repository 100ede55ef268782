package hierarchy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/hierarchy"
)

// startLoop starts s's sync loop; its rounds' errors arrive on the
// returned channel.
func startLoop(t *testing.T, s server) (*hierarchy.Sync, chan error) {
	t.Helper()
	rounds := make(chan error, 64)
	sy, err := s.node.Start(context.Background(), hierarchy.SyncConfig{Interval: time.Minute, MinBackoff: time.Second, MaxBackoff: 4 * time.Second,
		OnRound: func(err error) { rounds <- err }})
	must(t, err)
	t.Cleanup(sy.Stop)
	return sy, rounds
}

func nextRound(t *testing.T, rounds chan error) error {
	t.Helper()
	select {
	case err := <-rounds:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no sync round within 10s")
		return nil
	}
}

// TestSyncLoop: with one Start per server, tasks reach the secondary and
// its results reach the primary; while the link is down the secondary's
// rounds fail with ErrUnreachable and it retries after a growing, jittered
// backoff (not the full interval); once the link is back the next retry
// delivers the figures, counted once. Stop ends the loop.
func TestSyncLoop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dt := newDurableTree(t)
	p, s := dt.primary, dt.sDE
	scan, err := p.m.Create(ctx, task.System, groupTask("scan de", "g-de", true))
	must(t, err)

	_, pRounds := startLoop(t, p)
	if err := nextRound(t, pRounds); err != nil {
		t.Fatalf("primary's first round: %v", err)
	}
	sCopy := copyID(t, s, scan.ID) // the primary's loop distributed it
	recordAs(t, s.m, sCopy, "de", 2, map[task.State]int{task.Completed: 2, task.Failed: 1})
	sy, sRounds := startLoop(t, s)
	if err := nextRound(t, sRounds); err != nil {
		t.Fatalf("secondary's first round: %v", err)
	}
	if got := rolledUp(t, p, scan.ID); got != (counts{Total: 3, Completed: 2, Failed: 1, Finished: 3}) {
		t.Fatalf("after the first rounds: %+v", got)
	}

	dt.link.Disconnect("primary", "s-de")
	recordAs(t, s.m, sCopy, "de", 3, map[task.State]int{task.Completed: 3})
	s.clk.Add(time.Minute) // the interval: a round, which fails
	if err := nextRound(t, sRounds); !errors.Is(err, hierarchy.ErrUnreachable) {
		t.Fatalf("round with the link down: %v", err)
	}
	s.clk.Add(time.Second) // the first backoff is at most 1s
	if err := nextRound(t, sRounds); !errors.Is(err, hierarchy.ErrUnreachable) {
		t.Fatalf("first retry with the link down: %v", err)
	}
	dt.link.Reconnect("primary", "s-de")
	s.clk.Add(2 * time.Second) // the second backoff is at most 2s
	if err := nextRound(t, sRounds); err != nil {
		t.Fatalf("retry with the link back: %v", err)
	}
	if got := rolledUp(t, p, scan.ID); got != (counts{Total: 3, Completed: 3, Finished: 3}) {
		t.Fatalf("after the link came back: %+v", got)
	}
	n, last := sy.Rounds()
	if n != 4 || last != nil {
		t.Fatalf("Rounds() = %d, %v; want 4, nil", n, last)
	}
	sy.Stop()
	select {
	case <-sy.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	sy.Stop() // idempotent
}

// TestSyncLoopValidates: a bad SyncConfig is refused.
func TestSyncLoopValidates(t *testing.T) {
	t.Parallel()
	link := hierarchy.NewInProc()
	p := newServer(t, link, hierarchy.Config{ID: "p", Role: scope.Primary})
	if _, err := p.node.Start(context.Background(), hierarchy.SyncConfig{Interval: -time.Second}); !errors.Is(err, hierarchy.ErrInvalid) {
		t.Fatalf("negative interval: %v", err)
	}
}
