package storagetest

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
)

// recorder is a testing.TB that records failures instead of failing the
// test, so the suite's own tests can assert that a section fails.
type recorder struct {
	testing.TB // the real test: Cleanup, TempDir, Logf
	mu         sync.Mutex
	failures   []string
}

func (r *recorder) record(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, msg)
}

func (r *recorder) Helper()                        {}
func (r *recorder) Error(args ...any)              { r.record(fmt.Sprint(args...)) }
func (r *recorder) Errorf(format string, a ...any) { r.record(fmt.Sprintf(format, a...)) }
func (r *recorder) Fail()                          { r.record("Fail") }
func (r *recorder) FailNow()                       { r.record("FailNow"); runtime.Goexit() }
func (r *recorder) Fatal(args ...any)              { r.record(fmt.Sprint(args...)); runtime.Goexit() }
func (r *recorder) Fatalf(format string, a ...any) {
	r.record(fmt.Sprintf(format, a...))
	runtime.Goexit()
}
func (r *recorder) Failed() bool                    { r.mu.Lock(); defer r.mu.Unlock(); return len(r.failures) > 0 }
func (r *recorder) Log(args ...any)                 {}
func (r *recorder) Logf(format string, args ...any) {}

// runSection runs one suite section against s and returns its failures.
func runSection(t *testing.T, fn section, s storage.Store) []string {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r, s, Features{Writers: 8, Claimer: true})
	}()
	<-done
	_ = s.Close()
	return r.failures
}

// frozen is a lease clock that never moves: leases judged by it never
// expire.
var frozen = base

// leaseNeverExpires judges its leader lease by a clock that never moves.
type leaseNeverExpires struct{ *memstore.Store }

func (s leaseNeverExpires) AcquireLeader(ctx context.Context, p storage.LeaderParams) (storage.Leadership, error) {
	p.Now = &frozen
	return s.Store.AcquireLeader(ctx, p)
}

// leaderIgnoresFencing grants the lease to every caller, keeping the
// epoch: two replicas lead at once.
type leaderIgnoresFencing struct{ *memstore.Store }

func (s leaderIgnoresFencing) AcquireLeader(ctx context.Context, p storage.LeaderParams) (storage.Leadership, error) {
	l, err := s.Store.AcquireLeader(ctx, p)
	if err == nil && !l.Held {
		l.Held, l.Owner = true, p.Owner
	}
	return l, err
}

// claimsNeverExpire judges dispatch leases by a clock that never moves.
type claimsNeverExpire struct{ *sqlstore.Store }

func (s claimsNeverExpire) ClaimStale(ctx context.Context, p storage.StaleParams) ([]storage.Claim, error) {
	p.Now = &frozen
	return s.Store.ClaimStale(ctx, p)
}

// renewIgnoresFencing renews every claim it is given, whoever holds it.
type renewIgnoresFencing struct{ *sqlstore.Store }

func (s renewIgnoresFencing) RenewClaims(ctx context.Context, p storage.RenewParams) ([]storage.Claim, error) {
	if _, err := s.Store.RenewClaims(ctx, p); err != nil {
		return nil, err
	}
	return p.Claims, nil
}

// dispatchTwice hands every due result to every caller once.
type dispatchTwice struct {
	*sqlstore.Store
	mu   sync.Mutex
	seen map[string]bool
}

func (s *dispatchTwice) DispatchDue(ctx context.Context, p storage.DispatchParams) ([]storage.Claim, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[p.Owner] {
		return nil, nil
	}
	s.seen[p.Owner] = true
	out := make([]storage.Claim, 0)
	rs, err := s.Store.ListResults(ctx, storage.ListResultsParams{TaskID: "t", Limit: storage.MaxListLimit})
	for _, r := range rs {
		out = append(out, storage.Claim{TaskID: r.TaskID, DeviceID: r.DeviceID, RunID: r.RunID, Seq: 1, DueAt: r.DueAt, Epoch: 1, TaskRevision: 1})
	}
	if len(out) > 0 {
		_, _ = s.Store.DispatchDue(ctx, p)
	}
	return out, err
}

func sqlite(t *testing.T) *sqlstore.Store {
	s, err := sqlstore.OpenSQLite(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A store that breaks one lease rule fails the suite; the honest store
// it wraps passes the same sections (so the failures are the rule's).
func TestBrokenStoresFailTheSuite(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		section section
		honest  func(t *testing.T) storage.Store
		broken  func(t *testing.T) storage.Store
		wantMsg string
	}{
		{"LeaderLeaseNeverExpires", testLeaderElection,
			func(*testing.T) storage.Store { return memstore.New() },
			func(*testing.T) storage.Store { return leaseNeverExpires{memstore.New()} },
			"an expired lease is taken over"},
		{"LeaderLeaseNeverExpiresUnderRace", testLeaderConcurrent,
			func(*testing.T) storage.Store { return memstore.New() },
			func(*testing.T) storage.Store { return leaseNeverExpires{memstore.New()} },
			"round 2: 0 callers hold the lease"},
		{"LeaderIgnoresFencing", testLeaderElection,
			func(*testing.T) storage.Store { return memstore.New() },
			func(*testing.T) storage.Store { return leaderIgnoresFencing{memstore.New()} },
			"a held lease is not taken"},
		{"LeaderIgnoresFencingUnderRace", testLeaderConcurrent,
			func(*testing.T) storage.Store { return memstore.New() },
			func(*testing.T) storage.Store { return leaderIgnoresFencing{memstore.New()} },
			"callers hold the lease"},
		{"ClaimLeaseNeverExpires", testLeaseExpiryAndTakeover,
			func(t *testing.T) storage.Store { return sqlite(t) },
			func(t *testing.T) storage.Store { return claimsNeverExpire{sqlite(t)} },
			"ClaimStale after expiry"},
		{"RenewIgnoresFencing", testFencing,
			func(t *testing.T) storage.Store { return sqlite(t) },
			func(t *testing.T) storage.Store { return renewIgnoresFencing{sqlite(t)} },
			"the stale owner renewed"},
		{"DispatchTwice", testClaimOnce,
			func(t *testing.T) storage.Store { return sqlite(t) },
			func(t *testing.T) storage.Store { return &dispatchTwice{Store: sqlite(t), seen: map[string]bool{}} },
			"dispatched 8 times"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if f := runSection(t, tc.section, tc.honest(t)); len(f) != 0 {
				t.Fatalf("the honest store fails the section: %q", f)
			}
			f := runSection(t, tc.section, tc.broken(t))
			if len(f) == 0 {
				t.Fatal("the broken store passes the section")
			}
			if !strings.Contains(strings.Join(f, "\n"), tc.wantMsg) {
				t.Fatalf("the section failed for another reason: %q, want one mentioning %q", f, tc.wantMsg)
			}
		})
	}
}
