package httptransport_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
)

// authenticates reports whether the enrollment identity takes key for
// device.
func authenticates(e *httptransport.Enrollment, device transport.DeviceID, key httptransport.Secret) bool {
	r := httptest.NewRequest("POST", httptransport.PathSend, nil)
	for k, v := range auth(device, key) {
		r.Header.Set(k, v)
	}
	got, err := e.Authenticate(r)
	return err == nil && got == device
}

// Keys kept in the SQL store (StoreKeys on sqlstore, SQLite and, with
// TASKFLEET_TEST_POSTGRES, PostgreSQL) survive a server restart: a new
// process's Enrollment on the same database authenticates the enrolled
// device's key, its rotated key, and still refuses a revoked device and a
// second enrollment of an established one. With MemKeyStore every device
// had to enroll again after each restart.
func TestStoreKeysSurviveRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	opens := map[string]func(t *testing.T) *sqlstore.Store{
		"SQLite": func(t *testing.T) *sqlstore.Store {
			st, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "keys.db"))
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
	}
	if dsn := os.Getenv("TASKFLEET_TEST_POSTGRES"); dsn != "" {
		opens["Postgres"] = func(t *testing.T) *sqlstore.Store {
			st, err := sqlstore.Open(ctx, sqlstore.Config{Dialect: sqlstore.Postgres, DSN: dsn})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
	}
	for name, open := range opens {
		t.Run(name, func(t *testing.T) {
			first := open(t)
			for _, d := range []string{"dev-a", "dev-b", "dev-c"} {
				_ = first.DeleteDeviceKey(ctx, d) // a PostgreSQL schema from an earlier run
			}
			enr := func(st *sqlstore.Store) *httptransport.Enrollment {
				e, err := httptransport.NewEnrollment(httptransport.EnrollmentConfig{Secret: secret, Keys: httptransport.StoreKeys(st, httptransport.StoreKeysConfig{})})
				if err != nil {
					t.Fatal(err)
				}
				return e
			}
			e1 := enr(first)
			keyA, err := e1.Enroll(ctx, "dev-a", secret)
			if err != nil {
				t.Fatal(err)
			}
			keyB, err := e1.Enroll(ctx, "dev-b", secret)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e1.Enroll(ctx, "dev-c", secret); err != nil {
				t.Fatal(err)
			}
			if !authenticates(e1, "dev-a", keyA) || !authenticates(e1, "dev-b", keyB) {
				t.Fatal("fresh keys refused")
			}
			newB, err := e1.Rotate(ctx, "dev-b")
			if err != nil {
				t.Fatal(err)
			}
			if err := e1.Revoke(ctx, "dev-c"); err != nil {
				t.Fatal(err)
			}
			must(t, first.Close())

			// The restarted server.
			second := open(t)
			t.Cleanup(func() { _ = second.Close() })
			e2 := enr(second)
			if !authenticates(e2, "dev-a", keyA) {
				t.Error("dev-a's key refused after the restart")
			}
			if !authenticates(e2, "dev-b", newB) {
				t.Error("dev-b's rotated key refused after the restart")
			}
			if authenticates(e2, "dev-b", keyA) || authenticates(e2, "dev-a", newB) {
				t.Error("a device's key authenticated another device")
			}
			if _, err := e2.Enroll(ctx, "dev-c", secret); !errors.Is(err, httptransport.ErrRevoked) {
				t.Errorf("the revoked device enrolled again after the restart: %v", err)
			}
			if _, err := e2.Enroll(ctx, "dev-a", secret); !errors.Is(err, httptransport.ErrEnrolled) {
				t.Errorf("an established device enrolled again with the secret alone: %v", err)
			}
			if !authenticates(e2, "dev-a", keyA) {
				t.Error("dev-a's key refused after the refused enrollment")
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// countingKeys counts PutDeviceKeys calls and slows each one down a
// little, like a commit's fsync.
type countingKeys struct {
	*sqlstore.Store
	calls, items atomic.Int64
}

func (c *countingKeys) PutDeviceKeys(ctx context.Context, ps []storage.PutDeviceKeyParams) ([]error, error) {
	c.calls.Add(1)
	c.items.Add(int64(len(ps)))
	time.Sleep(5 * time.Millisecond)
	return c.Store.PutDeviceKeys(ctx, ps)
}

// A fleet enrolling at once is written in batches, not one transaction
// per device: 200 concurrent enrollments take far fewer store calls than
// 200, and every key is stored and works. Before, the Enrollment's one
// lock around every read-modify-write made each enrollment its own
// commit (the 100,000-agent load test enrolled about 80 devices a second
// on SQLite).
func TestStoreKeysBatchesConcurrentEnrollments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "keys.db"))
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	c := &countingKeys{Store: st}
	e, err := httptransport.NewEnrollment(httptransport.EnrollmentConfig{Secret: secret, Keys: httptransport.StoreKeys(c, httptransport.StoreKeysConfig{}), Rate: 1e6, Burst: 1e6})
	must(t, err)
	const n = 200
	keys := make([]httptransport.Secret, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k, err := e.Enroll(ctx, transport.DeviceID(fmt.Sprintf("dev-%03d", i)), secret)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	if c.items.Load() != n {
		t.Fatalf("%d key writes, want %d", c.items.Load(), n)
	}
	calls := c.calls.Load()
	if calls > n/2 {
		t.Fatalf("%d store calls for %d concurrent enrollments, want batches (at most %d)", calls, n, n/2)
	}
	t.Logf("%d enrollments in %d store calls", n, calls)
	for i, k := range keys {
		if !authenticates(e, transport.DeviceID(fmt.Sprintf("dev-%03d", i)), k) {
			t.Fatalf("dev-%03d's key refused", i)
		}
	}
}

// StoreKeys caches records: a server's own revocation takes effect at
// once; another server process on the same database sees it after
// CacheTTL; authentications within CacheTTL do not read the store.
func TestStoreKeysCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "keys.db"))
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	clk := clock.NewMock()
	c := &countingReads{Store: st}
	enr := func(ks httptransport.KeyStore) *httptransport.Enrollment {
		e, err := httptransport.NewEnrollment(httptransport.EnrollmentConfig{Secret: secret, Keys: ks, Clock: clk})
		must(t, err)
		return e
	}
	a := enr(httptransport.StoreKeys(c, httptransport.StoreKeysConfig{Clock: clk, CacheTTL: time.Minute}))
	b := enr(httptransport.StoreKeys(st, httptransport.StoreKeysConfig{Clock: clk, CacheTTL: time.Minute}))
	key, err := a.Enroll(ctx, "dev-1", secret)
	must(t, err)
	if !authenticates(a, "dev-1", key) || !authenticates(b, "dev-1", key) {
		t.Fatal("the fresh key refused")
	}
	reads := c.reads.Load()
	for range 10 {
		if !authenticates(a, "dev-1", key) {
			t.Fatal("the key refused")
		}
	}
	if got := c.reads.Load() - reads; got != 0 {
		t.Fatalf("%d store reads for 10 authentications within CacheTTL, want 0", got)
	}
	must(t, a.Revoke(ctx, "dev-1"))
	if authenticates(a, "dev-1", key) {
		t.Fatal("the revoking server still takes the key")
	}
	if !authenticates(b, "dev-1", key) {
		t.Fatal("the other server's cached record is gone before CacheTTL")
	}
	clk.Add(time.Minute)
	if authenticates(b, "dev-1", key) {
		t.Fatal("the other server takes a revoked key after CacheTTL")
	}
}

type countingReads struct {
	*sqlstore.Store
	reads atomic.Int64
}

func (c *countingReads) DeviceKey(ctx context.Context, id string) (storage.DeviceKey, error) {
	c.reads.Add(1)
	return c.Store.DeviceKey(ctx, id)
}

// failingIdentity cannot check any request (its key store is down).
type failingIdentity struct{}

func (failingIdentity) Authenticate(*http.Request) (transport.DeviceID, error) {
	return "", errors.New("key store: connection pool exhausted")
}

// A request whose identity cannot be checked (the key store failed) gets
// 503 with Retry-After, not 401: a 401 makes the device enroll again, so
// an overloaded key store turned into an enrollment storm (12,660 such
// 401s in the 100,000-agent PostgreSQL run).
func TestIdentityStoreErrorIs503(t *testing.T) {
	t.Parallel()
	srv, err := httptransport.NewServer(httptransport.ServerConfig{Identity: failingIdentity{}})
	must(t, err)
	r := httptest.NewRequest(http.MethodPost, httptransport.PathSend, nil)
	r.Header.Set(httptransport.HeaderDevice, "dev-1")
	r.Header.Set("Authorization", "Bearer k")
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q; want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	if st := srv.Stats(); st.Unauthenticated != 0 {
		t.Fatalf("counted as unauthenticated: %+v", st)
	}
}
