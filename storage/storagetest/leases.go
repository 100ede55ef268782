package storagetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/storage"
)

// The lease sections pass Now on every call (storage.LeaderParams.Now and
// the Claimer params), so no section waits for a lease to expire: the
// suite moves the lease clock itself.

// at returns a pointer to base + d, the lease clock of the sections.
func at(d time.Duration) *time.Time {
	t := base.Add(d)
	return &t
}

const leaseName = "storagetest/leader"

func acquire(t testing.TB, s storage.Store, owner string, now *time.Time, ttl time.Duration) storage.Leadership {
	t.Helper()
	l, err := s.AcquireLeader(ctx(), storage.LeaderParams{Name: leaseName, Owner: owner, TTL: ttl, Now: now})
	if err != nil {
		t.Fatalf("AcquireLeader(%s at %s): %v", owner, now.Sub(base), err)
	}
	return l
}

// testLeaderElection: one holder per name; renewal by the holder keeps
// the epoch; a lease is taken over only after it expired on the lease
// clock, with a higher epoch; the stale holder is then refused.
func testLeaderElection(t testing.TB, s storage.Store, _ Features) {
	const ttl = 10 * time.Second
	steps := []struct {
		owner string
		at    time.Duration
		want  storage.Leadership
		why   string
	}{
		{"a", 0, storage.Leadership{Held: true, Owner: "a", Epoch: 1}, "a free lease is taken"},
		{"b", time.Second, storage.Leadership{Held: false, Owner: "a", Epoch: 1}, "a held lease is not taken"},
		{"a", 5 * time.Second, storage.Leadership{Held: true, Owner: "a", Epoch: 1}, "the holder renews, same epoch"},
		{"b", 14 * time.Second, storage.Leadership{Held: false, Owner: "a", Epoch: 1}, "the renewed lease runs until 15s"},
		{"b", 16 * time.Second, storage.Leadership{Held: true, Owner: "b", Epoch: 2}, "an expired lease is taken over with a higher epoch"},
		{"a", 17 * time.Second, storage.Leadership{Held: false, Owner: "b", Epoch: 2}, "the stale holder is refused"},
		{"b", 40 * time.Second, storage.Leadership{Held: true, Owner: "b", Epoch: 2}, "the holder gets its expired lease back, same epoch"},
	}
	for _, st := range steps {
		if got := acquire(t, s, st.owner, at(st.at), ttl); got != st.want {
			t.Fatalf("AcquireLeader(%s at %s) = %+v, want %+v: %s", st.owner, st.at, got, st.want, st.why)
		}
	}
	// Names are independent.
	if l, err := s.AcquireLeader(ctx(), storage.LeaderParams{Name: "other", Owner: "c", TTL: ttl, Now: at(41 * time.Second)}); err != nil || !l.Held || l.Epoch != 1 {
		t.Fatalf("AcquireLeader(other name) = %+v, %v; want held at epoch 1", l, err)
	}
	for _, p := range []storage.LeaderParams{
		{Owner: "a", TTL: ttl},
		{Name: leaseName, TTL: ttl},
		{Name: leaseName, Owner: "a"},
		{Name: leaseName, Owner: "a", TTL: -time.Second},
	} {
		if _, err := s.AcquireLeader(ctx(), p); !errors.Is(err, storage.ErrInvalid) {
			t.Fatalf("AcquireLeader(%+v): got %v, want ErrInvalid", p, err)
		}
	}
}

// testLeaderConcurrent: callers racing for a free lease, and for an
// expired one, get exactly one holder and agree on it.
func testLeaderConcurrent(t testing.TB, s storage.Store, f Features) {
	const ttl = 10 * time.Second
	race := func(now *time.Time, round int) storage.Leadership {
		t.Helper()
		var wg sync.WaitGroup
		got := make([]storage.Leadership, f.Writers)
		errs := make([]error, f.Writers)
		for i := range f.Writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], errs[i] = s.AcquireLeader(ctx(), storage.LeaderParams{Name: leaseName, Owner: fmt.Sprintf("r%d-%d", round, i), TTL: ttl, Now: now})
			}()
		}
		wg.Wait()
		var winner storage.Leadership
		held := 0
		for i, l := range got {
			if errs[i] != nil && !errors.Is(errs[i], storage.ErrRetryable) {
				t.Fatalf("AcquireLeader: %v", errs[i])
			}
			if l.Held {
				held++
				winner = l
			}
		}
		if held != 1 {
			t.Fatalf("round %d: %d callers hold the lease, want exactly 1", round, held)
		}
		return winner
	}
	w1 := race(at(0), 1)
	if w1.Epoch != 1 {
		t.Fatalf("first holder at epoch %d, want 1", w1.Epoch)
	}
	if l := acquire(t, s, "late", at(time.Second), ttl); l.Held || l.Owner != w1.Owner {
		t.Fatalf("after the race AcquireLeader = %+v, want held by %s", l, w1.Owner)
	}
	w2 := race(at(11*time.Second), 2)
	if w2.Epoch != 2 || w2.Owner == w1.Owner {
		t.Fatalf("takeover race: %+v, want a new owner at epoch 2", w2)
	}
}

// claimFixture creates a task with n scheduled results due before base.
func claimFixture(t testing.TB, s storage.Store, n int) storage.Claimer {
	t.Helper()
	c, ok := s.(storage.Claimer)
	if !ok {
		t.Fatalf("Features.Claimer is set but %T does not implement storage.Claimer", s)
	}
	rec := NewTaskRecord("t", "T")
	if err := s.CreateTask(ctx(), storage.CreateTaskParams{Task: rec, Revision: firstRevision(rec)}); err != nil {
		t.Fatalf("CreateTask: %v", err)
	}
	rs := make([]storage.ResultRecord, n)
	for i := range rs {
		rs[i] = storage.ResultRecord{TaskID: "t", DeviceID: fmt.Sprintf("d%03d", i), RunID: 7, State: "scheduled", DueAt: base.Add(-time.Minute), UpdatedAt: base.Add(-time.Hour)}
	}
	if _, err := s.UpsertResults(ctx(), storage.UpsertResultsParams{Results: rs}); err != nil {
		t.Fatalf("UpsertResults: %v", err)
	}
	return c
}

func dispatch(owner string, now *time.Time, ttl time.Duration) storage.DispatchParams {
	return storage.DispatchParams{Owner: owner, FromState: "scheduled", State: "pending", Seq: 1, At: *now, Before: *now, TTL: ttl, Limit: storage.MaxListLimit, Now: now}
}

func stale(owner string, now *time.Time, ttl time.Duration) storage.StaleParams {
	return storage.StaleParams{Owner: owner, State: "pending", Seq: 1, TTL: ttl, Limit: storage.MaxListLimit, Now: now}
}

func renew(owner string, now *time.Time, ttl time.Duration, cs []storage.Claim) storage.RenewParams {
	return storage.RenewParams{Owner: owner, State: "pending", Seq: 1, TTL: ttl, Claims: cs, Now: now}
}

// testClaimOnce: concurrent replicas dispatch every due result exactly
// once, in due order, at epoch 1; nothing is due afterwards.
func testClaimOnce(t testing.TB, s storage.Store, f Features) {
	const n = 40
	c := claimFixture(t, s, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]int{}
	var failed error
	for w := range f.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := dispatch(fmt.Sprintf("r%d", w), at(0), time.Minute)
			p.Limit = 7
			for {
				cs, err := c.DispatchDue(ctx(), p)
				mu.Lock()
				if err != nil && !errors.Is(err, storage.ErrRetryable) {
					failed = err
				}
				for _, cl := range cs {
					seen[cl.DeviceID]++
					if cl.Epoch != 1 || cl.RunID != 7 || cl.TaskRevision != 1 {
						failed = fmt.Errorf("claim %+v: want epoch 1, run 7, task revision 1", cl)
					}
				}
				mu.Unlock()
				if err == nil && len(cs) == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		t.Fatalf("DispatchDue: %v", failed)
	}
	if len(seen) != n {
		t.Fatalf("%d results dispatched, want %d", len(seen), n)
	}
	for d, k := range seen {
		if k != 1 {
			t.Fatalf("%s dispatched %d times, want once", d, k)
		}
	}
	r, err := s.GetResult(ctx(), "t", "d000")
	if err != nil || r.State != "pending" || r.Seq != 1 {
		t.Fatalf("dispatched result = %+v, %v; want pending at seq 1", r, err)
	}
}

// testLeaseExpiryAndTakeover: a dispatched lease is not taken before it
// expired on the lease clock; after, it goes to another owner with a
// higher epoch; a renewal moves the expiry.
func testLeaseExpiryAndTakeover(t testing.TB, s storage.Store, _ Features) {
	const n, ttl = 5, 10 * time.Second
	c := claimFixture(t, s, n)
	first, err := c.DispatchDue(ctx(), dispatch("r1", at(0), ttl))
	if err != nil || len(first) != n {
		t.Fatalf("DispatchDue = %d claims, %v; want %d", len(first), err, n)
	}
	for i := 1; i < n; i++ {
		if first[i].DeviceID <= first[i-1].DeviceID {
			t.Fatalf("claims out of order: %s then %s", first[i-1].DeviceID, first[i].DeviceID)
		}
	}
	if got, err := c.ClaimStale(ctx(), stale("r2", at(9*time.Second), ttl)); err != nil || len(got) != 0 {
		t.Fatalf("ClaimStale before the lease expired = %d claims, %v; want none", len(got), err)
	}
	// r1 renews at 8s: its leases now run to 18s.
	if got, err := c.RenewClaims(ctx(), renew("r1", at(8*time.Second), ttl, first)); err != nil || len(got) != n {
		t.Fatalf("RenewClaims by the holder = %d, %v; want %d", len(got), err, n)
	}
	if got, err := c.ClaimStale(ctx(), stale("r2", at(17*time.Second), ttl)); err != nil || len(got) != 0 {
		t.Fatalf("ClaimStale before the renewed lease expired = %d claims, %v; want none", len(got), err)
	}
	taken, err := c.ClaimStale(ctx(), stale("r2", at(19*time.Second), ttl))
	if err != nil || len(taken) != n {
		t.Fatalf("ClaimStale after expiry = %d claims, %v; want %d", len(taken), err, n)
	}
	for _, cl := range taken {
		if cl.Epoch != 2 {
			t.Fatalf("taken-over claim %+v: want epoch 2", cl)
		}
	}
	if got, err := c.ClaimStale(ctx(), stale("r3", at(20*time.Second), ttl)); err != nil || len(got) != 0 {
		t.Fatalf("ClaimStale of a fresh takeover = %d claims, %v; want none", len(got), err)
	}
	// A result a device answered (its seq moved on) is never taken over.
	if _, err := s.UpsertResults(ctx(), storage.UpsertResultsParams{Results: []storage.ResultRecord{{TaskID: "t", DeviceID: "d000", RunID: 7, Seq: 2, State: "running", UpdatedAt: base}}}); err != nil {
		t.Fatalf("UpsertResults: %v", err)
	}
	if got, err := c.ClaimStale(ctx(), stale("r3", at(time.Hour), ttl)); err != nil || len(got) != n-1 {
		t.Fatalf("ClaimStale after an answer = %d claims, %v; want %d", len(got), err, n-1)
	}
}

// testFencing: once a lease was taken over, the stale owner's renewal is
// refused (its epoch is old), while the new owner's succeeds.
func testFencing(t testing.TB, s storage.Store, _ Features) {
	const n, ttl = 4, 10 * time.Second
	c := claimFixture(t, s, n)
	first, err := c.DispatchDue(ctx(), dispatch("r1", at(0), ttl))
	if err != nil || len(first) != n {
		t.Fatalf("DispatchDue = %d, %v", len(first), err)
	}
	taken, err := c.ClaimStale(ctx(), stale("r2", at(11*time.Second), ttl))
	if err != nil || len(taken) != n {
		t.Fatalf("ClaimStale = %d, %v", len(taken), err)
	}
	if got, err := c.RenewClaims(ctx(), renew("r1", at(12*time.Second), ttl, first)); err != nil || len(got) != 0 {
		t.Fatalf("the stale owner renewed %d of its claims (err %v); want none: fencing", len(got), err)
	}
	// The stale owner with a forged current epoch is refused too: the
	// lease is the new owner's.
	forged := append([]storage.Claim(nil), taken...)
	if got, err := c.RenewClaims(ctx(), renew("r1", at(12*time.Second), ttl, forged)); err != nil || len(got) != 0 {
		t.Fatalf("another owner renewed %d claims it does not hold (err %v)", len(got), err)
	}
	if got, err := c.RenewClaims(ctx(), renew("r2", at(12*time.Second), ttl, taken)); err != nil || len(got) != n {
		t.Fatalf("the new owner renewed %d, %v; want %d", len(got), err, n)
	}
	// The refused renewal did not extend anything: the leases expire at
	// 22s (r2's renewal), not later.
	if got, err := c.ClaimStale(ctx(), stale("r3", at(23*time.Second), ttl)); err != nil || len(got) != n {
		t.Fatalf("ClaimStale after the new owner's lease = %d, %v; want %d", len(got), err, n)
	}
}
