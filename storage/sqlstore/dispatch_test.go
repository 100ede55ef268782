package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
)

func dispatchTargets() []target {
	return []target{
		{"SQLite", sqlstore.SQLite, func(t *testing.T) string { return filepath.Join(t.TempDir(), "claims.db") }},
		{"Postgres", sqlstore.Postgres, func(t *testing.T) string { return pgSchemaDSN(t) }},
	}
}

// seedScheduled creates task "t" with n scheduled results due at `due`.
func seedScheduled(t *testing.T, s *sqlstore.Store, n int, due time.Time) {
	t.Helper()
	ctx := context.Background()
	rec := storage.TaskRecord{ID: "t", Name: "t", Kind: "group", Revision: 1, Body: []byte(`{}`)}
	if err := s.CreateTask(ctx, storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{Number: 1, Body: rec.Body}}); err != nil {
		t.Fatal(err)
	}
	rs := make([]storage.ResultRecord, n)
	for i := range rs {
		rs[i] = storage.ResultRecord{TaskID: "t", DeviceID: fmt.Sprintf("d%05d", i), RunID: 7, Seq: 1, State: "scheduled", DueAt: due, UpdatedAt: due}
	}
	if _, err := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: rs}); err != nil {
		t.Fatal(err)
	}
}

func complete(ctx context.Context, s *sqlstore.Store, owner string, cs []storage.Claim, at time.Time) ([]storage.Claim, error) {
	return s.CompleteClaims(ctx, storage.CompleteParams{Owner: owner, FromState: "scheduled", State: "pending", Seq: 2, At: at, Claims: cs})
}

// TestClaimsExactlyOnce: four concurrent claimers drain 2,000 due results;
// every result is completed exactly once and the dispatch ledger has one
// row per result.
func TestClaimsExactlyOnce(t *testing.T) {
	t.Parallel()
	for _, tg := range dispatchTargets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := open(t, tg.dialect, tg.dsn(t))
			defer s.Close()
			due := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
			const n = 2000
			seedScheduled(t, s, n, due)
			var mu sync.Mutex
			got := map[string]int{}
			var wg sync.WaitGroup
			errc := make(chan error, 4)
			for w := range 4 {
				wg.Go(func() {
					owner := fmt.Sprintf("r%d", w)
					for {
						cs, err := s.ClaimDue(ctx, storage.ClaimParams{Owner: owner, State: "scheduled", Before: due, TTL: time.Minute, Limit: 97})
						if errors.Is(err, storage.ErrRetryable) {
							continue
						}
						if err != nil {
							errc <- err
							return
						}
						if len(cs) == 0 {
							return
						}
						ok, err := complete(ctx, s, owner, cs, due)
						if err != nil {
							errc <- err
							return
						}
						if len(ok) != len(cs) {
							errc <- fmt.Errorf("%s: %d of %d own claims accepted", owner, len(ok), len(cs))
							return
						}
						mu.Lock()
						for _, c := range ok {
							got[c.DeviceID]++
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Fatal(err)
			}
			if len(got) != n {
				t.Fatalf("%d results dispatched, want %d", len(got), n)
			}
			for d, k := range got {
				if k != 1 {
					t.Fatalf("%s dispatched %d times", d, k)
				}
			}
			var rows, keys int
			if err := s.DB().QueryRow(`SELECT COUNT(*), COUNT(DISTINCT device_id) FROM dispatch_log`).Scan(&rows, &keys); err != nil {
				t.Fatal(err)
			}
			if rows != n || keys != n {
				t.Fatalf("dispatch_log has %d rows for %d results, want %d", rows, keys, n)
			}
			st, err := s.TaskStatistics(ctx, "t")
			if err != nil {
				t.Fatal(err)
			}
			if st.ByState["pending"] != n {
				t.Fatalf("statistics %+v, want %d pending", st, n)
			}
		})
	}
}

// TestClaimFencing: a lease that expired (TTL of one microsecond, judged by
// the database's clock) is claimed again with a higher epoch; the first
// owner's late completion is rejected and the second owner's accepted.
// Results not yet due, or in another state, are never claimed.
func TestClaimFencing(t *testing.T) {
	t.Parallel()
	for _, tg := range dispatchTargets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := open(t, tg.dialect, tg.dsn(t))
			defer s.Close()
			due := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
			seedScheduled(t, s, 3, due)
			if cs, err := s.ClaimDue(ctx, storage.ClaimParams{Owner: "a", State: "scheduled", Before: due.Add(-time.Second), TTL: time.Minute, Limit: 10}); err != nil || len(cs) != 0 {
				t.Fatalf("claims before due: %v, %v", cs, err)
			}
			stale, err := s.ClaimDue(ctx, storage.ClaimParams{Owner: "a", State: "scheduled", Before: due, TTL: time.Microsecond, Limit: 1})
			if err != nil || len(stale) != 1 || stale[0].Epoch != 1 || stale[0].DeviceID != "d00000" {
				t.Fatalf("first claim %+v, %v", stale, err)
			}
			var fresh []storage.Claim
			for range 1000 { // the expired lease is free once the database's clock passed it
				fresh, err = s.ClaimDue(ctx, storage.ClaimParams{Owner: "c", State: "scheduled", Before: due, TTL: time.Hour, Limit: 1})
				if err != nil {
					t.Fatal(err)
				}
				if len(fresh) > 0 && fresh[0].DeviceID == "d00000" {
					break
				}
			}
			if len(fresh) == 0 || fresh[0].DeviceID != "d00000" || fresh[0].Epoch != 2 {
				t.Fatalf("re-claim after expiry %+v", fresh)
			}
			// A live lease is not claimed again.
			live, err := s.ClaimDue(ctx, storage.ClaimParams{Owner: "b", State: "scheduled", Before: due, TTL: time.Hour, Limit: 10})
			if err != nil || len(live) == 0 {
				t.Fatalf("claim of the free results %+v, %v", live, err)
			}
			for _, c := range live {
				if c.DeviceID == "d00000" {
					t.Fatalf("a live lease was claimed again: %+v", live)
				}
			}
			if ok, err := complete(ctx, s, "a", stale, due); err != nil || len(ok) != 0 {
				t.Fatalf("stale completion accepted: %+v, %v", ok, err)
			}
			if ok, err := complete(ctx, s, "c", fresh[:1], due); err != nil || len(ok) != 1 {
				t.Fatalf("fresh completion: %+v, %v", ok, err)
			}
			if ok, err := complete(ctx, s, "c", fresh[:1], due); err != nil || len(ok) != 0 {
				t.Fatalf("second completion accepted: %+v, %v", ok, err)
			}
			r, err := s.GetResult(ctx, "t", "d00000")
			if err != nil || r.State != "pending" || r.Seq != 2 {
				t.Fatalf("result %+v, %v", r, err)
			}
			if err := s.ReleaseClaims(ctx, "b", live); err != nil {
				t.Fatal(err)
			}
			again, err := s.ClaimDue(ctx, storage.ClaimParams{Owner: "d", State: "scheduled", Before: due, TTL: time.Minute, Limit: 10})
			if err != nil || len(again) != len(live) {
				t.Fatalf("after release %+v, %v; want the %d released results", again, err, len(live))
			}
		})
	}
}

// TestLeader: one owner holds a named lease; renewals keep the epoch; after
// expiry another owner takes it with a higher epoch.
func TestLeader(t *testing.T) {
	t.Parallel()
	for _, tg := range dispatchTargets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := open(t, tg.dialect, tg.dsn(t))
			defer s.Close()
			l, err := s.AcquireLeader(ctx, storage.LeaderParams{Name: "engine", Owner: "a", TTL: time.Hour})
			if err != nil || !l.Held || l.Epoch != 1 {
				t.Fatalf("first acquire %+v, %v", l, err)
			}
			if l, err = s.AcquireLeader(ctx, storage.LeaderParams{Name: "engine", Owner: "b", TTL: time.Hour}); err != nil || l.Held || l.Owner != "a" {
				t.Fatalf("contender %+v, %v", l, err)
			}
			if l, err = s.AcquireLeader(ctx, storage.LeaderParams{Name: "engine", Owner: "a", TTL: time.Microsecond}); err != nil || !l.Held || l.Epoch != 1 {
				t.Fatalf("renewal %+v, %v", l, err)
			}
			for range 1000 {
				if l, err = s.AcquireLeader(ctx, storage.LeaderParams{Name: "engine", Owner: "b", TTL: time.Hour}); err != nil || l.Held {
					break
				}
			}
			if err != nil || !l.Held || l.Epoch != 2 {
				t.Fatalf("take-over after expiry %+v, %v", l, err)
			}
			if _, err := s.AcquireLeader(ctx, storage.LeaderParams{Name: "", Owner: "a", TTL: 0}); !errors.Is(err, storage.ErrInvalid) {
				t.Fatalf("bad params: %v", err)
			}
			if _, err := s.ClaimDue(ctx, storage.ClaimParams{}); !errors.Is(err, storage.ErrInvalid) {
				t.Fatalf("bad claim params: %v", err)
			}
		})
	}
}
