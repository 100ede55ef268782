package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
)

// TestQueueRenewalsAndCleanupsDoNotDeadlock: a replica renewing the
// leases of its starts in flight while writers reschedule some of the
// same devices (whose clean-up deletes those leases) must not deadlock.
// Both statements lock lease rows in key order; before they did, the
// renewal locked them in its claims' order and the clean-up in its join's
// order, and PostgreSQL broke the cycles by failing one of them
// (ErrRetryable), which makes an engine's intake resend a whole batch.
func TestQueueRenewalsAndCleanupsDoNotDeadlock(t *testing.T) {
	s := openPG(t)
	defer s.Close()
	ctx := context.Background()
	qCreateTask(t, s, "t")
	const devices, rounds = 600, 25
	devs := make([]string, devices)
	for i := range devs {
		devs[i] = fmt.Sprintf("d%04d", i)
	}
	qSchedule(t, s, "t", devs...)
	if cs := qDispatch(t, s, "r0", storage.MaxListLimit); len(cs) != devices {
		t.Fatalf("dispatched %d, want %d", len(cs), devices)
	}
	var mu sync.Mutex
	var retried []string
	renewed, rescheduled := 0, 0
	note := func(what string, err error) bool {
		if errors.Is(err, storage.ErrRetryable) {
			mu.Lock()
			retried = append(retried, what+": "+err.Error())
			mu.Unlock()
			return true
		}
		if err != nil {
			t.Error(what, err)
		}
		return false
	}
	var wg sync.WaitGroup
	wg.Go(func() { // the replica: renew every lease it holds, in a shuffled order
		rng := rand.New(rand.NewPCG(1, 2))
		for range rounds {
			rows, err := s.DB().QueryContext(ctx, `SELECT task_id, device_id, run_id, epoch FROM result_leases WHERE owner = 'r0'`)
			if err != nil {
				t.Error(err)
				return
			}
			var cs []storage.Claim
			for rows.Next() {
				var c storage.Claim
				if err := rows.Scan(&c.TaskID, &c.DeviceID, &c.RunID, &c.Epoch); err != nil {
					t.Error(err)
				}
				cs = append(cs, c)
			}
			rows.Close()
			rng.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
			now := qBase.Add(10 * time.Second)
			held, err := s.RenewClaims(ctx, storage.RenewParams{Owner: "r0", State: "pending", Seq: qDispSeq, TTL: time.Minute, Claims: cs, Now: &now})
			note("renew", err)
			mu.Lock()
			renewed += len(held)
			mu.Unlock()
		}
	})
	for w := range 2 {
		wg.Go(func() { // writers: reschedule random devices, then dispatch them again
			rng := rand.New(rand.NewPCG(uint64(w+10), 3))
			for i := range rounds {
				run := int64(100*(w+1) + i + 2)
				var rs []storage.ResultRecord
				for _, k := range rng.Perm(devices)[:200] {
					rs = append(rs, qRec("t", devs[k], run, 1, "scheduled"))
				}
				n, err := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: rs})
				note("reschedule", err)
				mu.Lock()
				rescheduled += n
				mu.Unlock()
				_, err = s.DispatchDue(ctx, qDispatchP("r0", storage.MaxListLimit))
				note("dispatch", err)
			}
		})
	}
	wg.Wait()
	t.Logf("%d leases renewed, %d results rescheduled", renewed, rescheduled)
	if renewed < rounds*devices/2 || rescheduled < rounds*200 {
		t.Errorf("the race did not happen: %d leases renewed, %d results rescheduled", renewed, rescheduled)
	}
	if len(retried) > 0 {
		t.Errorf("%d calls failed retryably (deadlocks), want none; first: %s", len(retried), retried[0])
	}
	mustQueueInvariants(t, s)
}

// TestDispatchIntoTheDispatchableStateIsRefused: a dispatch whose State
// is its FromState would leave every result due, to be dispatched again
// at the next call; both dialects refuse it with ErrInvalid and change
// nothing.
func TestDispatchIntoTheDispatchableStateIsRefused(t *testing.T) {
	for _, d := range []struct {
		name string
		open func(testing.TB) *sqlstore.Store
	}{{"sqlite", openSQLiteFile}, {"postgres", openPG}} {
		t.Run(d.name, func(t *testing.T) {
			s := d.open(t)
			defer s.Close()
			qCreateTask(t, s, "t")
			qSchedule(t, s, "t", "d1", "d2")
			p := qDispatchP("r0", 10)
			p.State = p.FromState
			if cs, err := s.DispatchDue(context.Background(), p); !errors.Is(err, storage.ErrInvalid) || len(cs) != 0 {
				t.Fatalf("DispatchDue into %q = %d claims, %v; want ErrInvalid", p.State, len(cs), err)
			}
			if cs := qDispatch(t, s, "r0", 10); len(cs) != 2 {
				t.Fatalf("a proper dispatch afterwards took %d, want 2", len(cs))
			}
		})
	}
}
