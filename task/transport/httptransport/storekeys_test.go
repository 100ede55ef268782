package httptransport_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
)

// authenticates reports whether the enrollment identity takes key for
// device.
func authenticates(e *httptransport.Enrollment, device scope.DeviceID, key httptransport.Secret) bool {
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
				e, err := httptransport.NewEnrollment(httptransport.EnrollmentConfig{Secret: secret, Keys: httptransport.StoreKeys(st)})
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
