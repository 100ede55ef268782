package sqlstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
)

// appendEventsPerRow is AppendEvents as it was before it became set-based:
// one transaction, the known tasks read first, then two prepared
// statements per event (the key reservation, then the event). It is the
// baseline of BenchmarkAppendEvents and the reference of
// TestAppendEventsMatchesPerRow.
func appendEventsPerRow(ctx context.Context, s *sqlstore.Store, evs []storage.EventRecord) (int, error) {
	db := s.DB()
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	known := map[string]bool{}
	for _, e := range evs {
		known[e.TaskID] = false
	}
	for id := range known {
		var got string
		q := `SELECT id FROM tasks WHERE id = ?`
		if s.Dialect() == sqlstore.Postgres {
			q += ` FOR KEY SHARE`
		}
		if err := tx.QueryRowContext(ctx, tx.Rebind(q), id).Scan(&got); err == nil {
			known[id] = true
		}
	}
	keyStmt, err := tx.PrepareContext(ctx, tx.Rebind(`INSERT INTO event_keys (task_id, key) VALUES (?, ?) ON CONFLICT DO NOTHING`))
	if err != nil {
		return 0, err
	}
	defer keyStmt.Close()
	evStmt, err := tx.PrepareContext(ctx, tx.Rebind(`INSERT INTO events (task_id, device_id, run_id, at, level, severity, message, key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`))
	if err != nil {
		return 0, err
	}
	defer evStmt.Close()
	n := 0
	for _, e := range evs {
		if !known[e.TaskID] {
			continue
		}
		if e.Key != "" {
			res, err := keyStmt.ExecContext(ctx, e.TaskID, e.Key)
			if err != nil {
				return 0, err
			}
			if k, _ := res.RowsAffected(); k == 0 {
				continue
			}
		}
		var at any = e.At.UTC().Truncate(time.Microsecond)
		if s.Dialect() == sqlstore.SQLite {
			at = e.At.UnixMicro()
		}
		if _, err := evStmt.ExecContext(ctx, e.TaskID, e.DeviceID, e.RunID, at, e.Level, e.Severity, e.Message, e.Key); err != nil {
			return 0, err
		}
		n++
	}
	return n, tx.Commit()
}

func createBenchTask(tb testing.TB, s *sqlstore.Store, id string) {
	tb.Helper()
	rec := storage.TaskRecord{ID: id, Name: id, Kind: "server", Revision: 1, Body: []byte(`{}`)}
	if err := s.CreateTask(context.Background(), storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{Number: 1, Action: "create", Body: rec.Body}}); err != nil {
		tb.Fatal(err)
	}
}

type eventStores struct {
	name string
	open func(testing.TB) *sqlstore.Store
}

var eventBackends = []eventStores{
	{"SQLite", func(tb testing.TB) *sqlstore.Store { return openSQLiteFile(tb) }},
	{"Postgres", func(tb testing.TB) *sqlstore.Store { return openPG(tb) }},
}

// TestAppendEventsMatchesPerRow writes the same random batches (repeated
// keys within and across batches, keyless events, unknown tasks, several
// tasks) through AppendEvents and through the per-row reference into two
// fresh stores: the counts and the stored events, in id order, must agree.
func TestAppendEventsMatchesPerRow(t *testing.T) {
	for _, b := range eventBackends {
		t.Run(b.name, func(t *testing.T) {
			set, ref := b.open(t), b.open(t)
			defer set.Close()
			defer ref.Close()
			for _, s := range []*sqlstore.Store{set, ref} {
				createBenchTask(t, s, "t1")
				createBenchTask(t, s, "t2")
			}
			rng := rand.New(rand.NewPCG(7, 16))
			base := time.Date(2026, 12, 6, 17, 0, 0, 123456000, time.UTC)
			tasks := []string{"t1", "t2", "gone"}
			for round := range 20 {
				evs := make([]storage.EventRecord, rng.IntN(300))
				for i := range evs {
					key := ""
					if rng.IntN(4) > 0 {
						key = fmt.Sprintf("k%d", rng.IntN(400))
					}
					evs[i] = storage.EventRecord{
						TaskID: tasks[rng.IntN(len(tasks))], DeviceID: fmt.Sprintf("d%d", rng.IntN(50)), RunID: int64(round),
						At: base.Add(time.Duration(rng.IntN(1e9)) * time.Microsecond), Level: "result", Severity: "info",
						Message: fmt.Sprintf("round %d event %d", round, i), Key: key,
					}
				}
				got, err := set.AppendEvents(context.Background(), storage.AppendEventsParams{Events: evs})
				if err != nil {
					t.Fatal(err)
				}
				want, err := appendEventsPerRow(context.Background(), ref, evs)
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Fatalf("round %d: AppendEvents = %d, per-row = %d", round, got, want)
				}
			}
			for _, task := range []string{"t1", "t2"} {
				list := func(s *sqlstore.Store) []storage.EventRecord {
					evs, err := s.ListEvents(context.Background(), storage.ListEventsParams{TaskID: task, Limit: storage.MaxListLimit})
					if err != nil {
						t.Fatal(err)
					}
					for i := range evs {
						evs[i].ID = 0 // identities of two databases
					}
					return evs
				}
				want := list(ref)
				if len(want) == 0 {
					t.Fatalf("task %s: nothing stored; the test proves nothing", task)
				}
				if d := cmp.Diff(want, list(set)); d != "" {
					t.Fatalf("task %s: events (-per-row +set-based):\n%s", task, d)
				}
			}
		})
	}
}

// BenchmarkAppendEvents measures events/s for batches of 1,000 keyed
// events (the history events of one group commit of results), set-based
// (AppendEvents) against the per-row baseline, in the same run:
//
//	go test ./storage/sqlstore/ -run '^$' -bench AppendEvents -benchtime 20x
func BenchmarkAppendEvents(b *testing.B) {
	const batch = 1000
	for _, be := range eventBackends {
		for _, mode := range []string{"PerRow", "SetBased"} {
			b.Run(be.name+"/"+mode, func(b *testing.B) {
				s := be.open(b)
				defer s.Close()
				createBenchTask(b, s, "t")
				at := time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC)
				evs := make([]storage.EventRecord, batch)
				n := 0
				b.ResetTimer()
				c0 := processCPU()
				for i := range b.N {
					for j := range evs {
						evs[j] = storage.EventRecord{TaskID: "t", DeviceID: fmt.Sprintf("dev-%06d", j), RunID: int64(i + 1), At: at,
							Level: "result", Severity: "info", Message: "Completed", Key: fmt.Sprintf("dev-%06d/%d/2", j, i+1)}
					}
					var k int
					var err error
					if mode == "PerRow" {
						k, err = appendEventsPerRow(context.Background(), s, evs)
					} else {
						k, err = s.AppendEvents(context.Background(), storage.AppendEventsParams{Events: evs})
					}
					if err != nil || k != batch {
						b.Fatalf("append = %d, %v", k, err)
					}
					n += k
				}
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64((processCPU()-c0).Nanoseconds())/float64(n), "cpu-ns/event")
			})
		}
	}
}
