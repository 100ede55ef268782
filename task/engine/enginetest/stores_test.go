package enginetest_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
)

// openPostgres returns a store in a fresh schema of the server named by
// TASKFLEET_TEST_POSTGRES (CI sets it), or nil without one.
func openPostgres(t *testing.T) *sqlstore.Store {
	t.Helper()
	base := os.Getenv("TASKFLEET_TEST_POSTGRES")
	if base == "" {
		return nil
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema := "tf_sim_" + hex.EncodeToString(rnd[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err == nil {
			_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
			_ = db.Close()
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal("TASKFLEET_TEST_POSTGRES must be a postgres:// URL")
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	s, err := sqlstore.Open(context.Background(), sqlstore.Config{Dialect: sqlstore.Postgres, DSN: u.String()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// simulate runs three days and an hour of a small fleet on store (nil: the default
// memstore) and returns how many runs each device started and the task's
// statistics.
func simulate(t *testing.T, store *sqlstore.Store) (map[scope.DeviceID][]time.Time, task.Statistics) {
	t.Helper()
	ctx := context.Background()
	reg := task.NewRegistry()
	if err := reg.Register(task.TaskType{Application: "ES", Name: "scan"}); err != nil {
		t.Fatal(err)
	}
	var devices []scope.Device
	for i := range 12 {
		devices = append(devices, scope.Device{ID: scope.DeviceID(fmt.Sprintf("pc-%02d", i)), GroupID: "office",
			TimeZone:     []string{"Europe/Berlin", "Asia/Tokyo", "America/New_York"}[i%3],
			Applications: map[string]scope.AppState{"ES": {Installed: true, Running: true}}})
	}
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	cfg := enginetest.Config{Start: start, Registry: reg, ServerLocation: time.UTC,
		Groups: []scope.AdminGroup{{ID: "office", Name: "Office"}}, Devices: devices,
		Behavior: func(r agent.Run, id scope.DeviceID) enginetest.Behavior {
			if id == "pc-00" {
				return enginetest.Behavior{Duration: 10 * time.Minute, State: task.Failed, Message: "engine error"}
			}
			return enginetest.Behavior{Duration: 10 * time.Minute}
		}}
	if store != nil {
		cfg.Store, cfg.Inventory = store, store.Devices()
	}
	sim, err := enginetest.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	daily := schedule.Default(schedule.EveryDays, start, time.UTC)
	daily.Time = schedule.Clock(9, 0, 0)
	tk, err := sim.Manager.Create(ctx, task.System, task.Task{Name: "daily scan", Application: "ES", Type: "scan",
		Scope: scope.Scope{Kind: scope.Group, Group: "office"}, Schedule: daily})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	sim.Disconnect("pc-05") // runs on device time, reports when back
	if err := sim.Step(ctx, 36*time.Hour, 15*time.Minute); err != nil {
		t.Fatal(err)
	}
	sim.Reconnect("pc-05")
	if err := sim.Step(ctx, 37*time.Hour, 15*time.Minute); err != nil {
		t.Fatal(err)
	}
	runs := map[scope.DeviceID][]time.Time{}
	for _, d := range devices {
		for _, r := range sim.Exec.Runs(tk.ID, d.ID) {
			runs[d.ID] = append(runs[d.ID], r.At)
		}
	}
	st, err := sim.Manager.Statistics(ctx, task.System, tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	return runs, st
}

// The simulation runs on the stores a host ships and gives the same fleet
// the same week on each.
func TestSimOnEveryStore(t *testing.T) {
	t.Parallel()
	wantRuns, wantStats := simulate(t, nil)
	if len(wantRuns) != 12 {
		t.Fatalf("%d devices ran the task on memstore, want 12", len(wantRuns))
	}
	for id, at := range wantRuns {
		if len(at) != 3 {
			t.Errorf("memstore: %s ran %d times in three days, want 3", id, len(at))
		}
	}
	if wantStats.Total != 12 || wantStats.ByState[task.Failed] != 1 || wantStats.ByState[task.Completed] != 11 {
		t.Fatalf("memstore statistics %+v, want 11 completed and 1 failed of 12", wantStats)
	}
	stores := map[string]func(t *testing.T) *sqlstore.Store{
		"sqlite": func(t *testing.T) *sqlstore.Store {
			s, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "sim.db"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	if os.Getenv("TASKFLEET_TEST_POSTGRES") != "" {
		stores["postgres"] = openPostgres
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			store := open(t)
			defer store.Close()
			runs, st := simulate(t, store)
			if diff := cmp.Diff(wantRuns, runs); diff != "" {
				t.Errorf("runs differ from memstore's (-memstore +%s):\n%s", name, diff)
			}
			if diff := cmp.Diff(wantStats, st); diff != "" {
				t.Errorf("statistics differ from memstore's (-memstore +%s):\n%s", name, diff)
			}
		})
	}
}
