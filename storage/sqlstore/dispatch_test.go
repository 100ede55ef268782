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

func dispatch(ctx context.Context, s *sqlstore.Store, owner string, before time.Time, ttl time.Duration, limit int) ([]storage.Claim, error) {
	return s.DispatchDue(ctx, storage.DispatchParams{Owner: owner, FromState: "scheduled", State: "pending", Seq: 2, At: before, Before: before, TTL: ttl, Limit: limit})
}

// TestDispatchExactlyOnce: four concurrent replicas drain 2,000 due
// results; every result is dispatched exactly once and the dispatch ledger
// has one row per result.
func TestDispatchExactlyOnce(t *testing.T) {
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
						cs, err := dispatch(ctx, s, owner, due, time.Minute, 97)
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
						mu.Lock()
						for _, c := range cs {
							got[c.DeviceID]++
							if c.Epoch != 1 || c.Seq != 2 || c.RunID != 7 || c.TaskRevision != 1 || !c.DueAt.Equal(due) {
								errc <- fmt.Errorf("claim %+v", c)
							}
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

// TestDispatchTakeover: results not yet due, of a suspended task, or in
// another state are not dispatched; a dispatched start whose lease expired
// (TTL of one microsecond on the database's clock) is taken over by
// another replica with a higher epoch; the first replica's renewal is then
// rejected, the new owner's accepted; a result the device answered (seq
// moved on) is never taken over.
func TestDispatchTakeover(t *testing.T) {
	t.Parallel()
	for _, tg := range dispatchTargets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := open(t, tg.dialect, tg.dsn(t))
			defer s.Close()
			due := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
			seedScheduled(t, s, 3, due)
			if cs, err := dispatch(ctx, s, "a", due.Add(-time.Second), time.Minute, 10); err != nil || len(cs) != 0 {
				t.Fatalf("dispatched before due: %v, %v", cs, err)
			}
			// A suspended task's starts wait.
			rec, err := s.GetTask(ctx, "t")
			if err != nil {
				t.Fatal(err)
			}
			rec.Suspended, rec.Revision = true, 2
			if err := s.UpdateTask(ctx, storage.UpdateTaskParams{Task: rec, ExpectRevision: 1, Revision: storage.RevisionRecord{Number: 2, Body: rec.Body}}); err != nil {
				t.Fatal(err)
			}
			if cs, err := dispatch(ctx, s, "a", due, time.Minute, 10); err != nil || len(cs) != 0 {
				t.Fatalf("dispatched a suspended task: %v, %v", cs, err)
			}
			rec.Suspended, rec.Revision = false, 3
			if err := s.UpdateTask(ctx, storage.UpdateTaskParams{Task: rec, ExpectRevision: 2, Revision: storage.RevisionRecord{Number: 3, Body: rec.Body}}); err != nil {
				t.Fatal(err)
			}
			stale, err := dispatch(ctx, s, "a", due, time.Microsecond, 2)
			if err != nil || len(stale) != 2 || stale[0].Epoch != 1 || stale[0].DeviceID != "d00000" || stale[0].TaskRevision != 3 {
				t.Fatalf("first dispatch %+v, %v", stale, err)
			}
			// d00001 is answered by its device before the lease expires.
			if _, err := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: []storage.ResultRecord{{TaskID: "t", DeviceID: "d00001", RunID: 7, Seq: 3, State: "running", DueAt: due, UpdatedAt: due}}}); err != nil {
				t.Fatal(err)
			}
			var took []storage.Claim
			for range 1000 { // the lease is free once the database's clock passed it
				took, err = s.ClaimStale(ctx, storage.StaleParams{Owner: "c", State: "pending", Seq: 2, TTL: time.Hour, Limit: 10})
				if err != nil {
					t.Fatal(err)
				}
				if len(took) > 0 {
					break
				}
			}
			if len(took) != 1 || took[0].DeviceID != "d00000" || took[0].Epoch != 2 {
				t.Fatalf("takeover after expiry %+v (want only d00000, epoch 2)", took)
			}
			// A live lease is not taken over again.
			if again, err := s.ClaimStale(ctx, storage.StaleParams{Owner: "b", State: "pending", Seq: 2, TTL: time.Hour, Limit: 10}); err != nil || len(again) != 0 {
				t.Fatalf("a live lease was taken over: %+v, %v", again, err)
			}
			renew := func(owner string, cs []storage.Claim) []storage.Claim {
				t.Helper()
				ok, err := s.RenewClaims(ctx, storage.RenewParams{Owner: owner, State: "pending", Seq: 2, TTL: time.Hour, Claims: cs})
				if err != nil {
					t.Fatal(err)
				}
				return ok
			}
			if ok := renew("a", stale); len(ok) != 0 {
				t.Fatalf("the stale replica renewed %+v", ok)
			}
			if ok := renew("c", took); len(ok) != 1 {
				t.Fatalf("the new owner's renewal: %+v", ok)
			}
			// The third result is dispatched once, and only once.
			rest, err := dispatch(ctx, s, "b", due, time.Minute, 10)
			if err != nil || len(rest) != 1 || rest[0].DeviceID != "d00002" {
				t.Fatalf("remaining dispatch %+v, %v", rest, err)
			}
			if more, err := dispatch(ctx, s, "b", due, time.Minute, 10); err != nil || len(more) != 0 {
				t.Fatalf("second dispatch %+v, %v", more, err)
			}
			var ledger int
			if err := s.DB().QueryRow(`SELECT COUNT(*) FROM dispatch_log`).Scan(&ledger); err != nil || ledger != 3 {
				t.Fatalf("ledger rows %d, %v; want 3 (a takeover is not a new dispatch)", ledger, err)
			}
			for _, p := range []storage.DispatchParams{{}, {Owner: "x", FromState: "scheduled", State: "pending", TTL: time.Second, Limit: storage.MaxListLimit + 1}} {
				if _, err := s.DispatchDue(ctx, p); !errors.Is(err, storage.ErrInvalid) {
					t.Fatalf("DispatchDue(%+v) = %v, want ErrInvalid", p, err)
				}
			}
			if _, err := s.ClaimStale(ctx, storage.StaleParams{Owner: "x"}); !errors.Is(err, storage.ErrInvalid) {
				t.Fatalf("ClaimStale without ttl/limit/state = %v, want ErrInvalid", err)
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
		})
	}
}
