package sqlstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
)

// dispatchDuePerRow is DispatchDue on SQLite as it was before its ledger
// write became multi-row: one UPDATE ... RETURNING, then one prepared
// INSERT per dispatched start (prepared in every call). It is the baseline
// of BenchmarkDispatchDueSQLite and the reference of
// TestDispatchDueMatchesPerRow.
func dispatchDuePerRow(ctx context.Context, s *sqlstore.Store, p storage.DispatchParams) ([]storage.Claim, error) {
	const now = `CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)`
	tx, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var lease any
	if p.Now != nil {
		lease = p.Now.UnixMicro()
	}
	rows, err := tx.QueryContext(ctx, `UPDATE results SET state = ?, seq = ?, updated_at = ?, lease_owner = ?, lease_epoch = lease_epoch + 1,
    lease_until = COALESCE(?, `+now+`) + ?
WHERE (task_id, device_id) IN (SELECT r.task_id, r.device_id FROM results r JOIN tasks t ON t.id = r.task_id AND NOT t.suspended
    WHERE r.state = '`+p.FromState+`' AND r.due_at <= ? ORDER BY r.due_at, r.task_id, r.device_id LIMIT ?)
RETURNING task_id, device_id, run_id, seq, due_at, lease_epoch, (SELECT revision FROM tasks WHERE tasks.id = results.task_id)`,
		p.State, p.Seq, p.At.UnixMicro(), p.Owner, lease, p.TTL.Microseconds(), p.Before.UnixMicro(), p.Limit)
	if err != nil {
		return nil, err
	}
	var out []storage.Claim
	for rows.Next() {
		var c storage.Claim
		var due int64
		if err := rows.Scan(&c.TaskID, &c.DeviceID, &c.RunID, &c.Seq, &due, &c.Epoch, &c.TaskRevision); err != nil {
			rows.Close()
			return nil, err
		}
		c.DueAt = time.UnixMicro(due).UTC()
		out = append(out, c)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO dispatch_log (task_id, device_id, run_id, epoch, owner, at) VALUES (?, ?, ?, ?, ?, `+now+`)`)
	if err != nil {
		return nil, err
	}
	defer ins.Close()
	for _, c := range out {
		if _, err := ins.ExecContext(ctx, c.TaskID, c.DeviceID, c.RunID, c.Epoch, p.Owner); err != nil {
			return nil, err
		}
	}
	return out, tx.Commit()
}

// scheduleStarts writes n scheduled results of run for task "t", due at
// due.
func scheduleStarts(tb testing.TB, s *sqlstore.Store, n int, run int64, due time.Time) {
	tb.Helper()
	rs := make([]storage.ResultRecord, n)
	for i := range rs {
		rs[i] = storage.ResultRecord{TaskID: "t", DeviceID: fmt.Sprintf("dev-%06d", i), RunID: run, Seq: 0, State: "scheduled",
			DueAt: due.Add(time.Duration(i%97) * time.Millisecond), UpdatedAt: due}
	}
	for len(rs) > 0 {
		part := rs[:min(len(rs), 5000)]
		rs = rs[len(part):]
		if _, err := s.UpsertResults(context.Background(), storage.UpsertResultsParams{Results: part}); err != nil {
			tb.Fatal(err)
		}
	}
}

type ledgerRow struct {
	Task, Device string
	Run, Epoch   int64
	Owner        string
}

func ledger(tb testing.TB, s *sqlstore.Store) []ledgerRow {
	tb.Helper()
	var out []ledgerRow
	rows, err := s.DB().Query(`SELECT task_id, device_id, run_id, epoch, owner FROM dispatch_log ORDER BY task_id, device_id, run_id, epoch`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var r ledgerRow
		if err := rows.Scan(&r.Task, &r.Device, &r.Run, &r.Epoch, &r.Owner); err != nil {
			tb.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func dispatchParams(limit int, at time.Time) storage.DispatchParams {
	now := at
	return storage.DispatchParams{Owner: "replica-1", FromState: "scheduled", State: "pending", Seq: 1, At: at, Before: at,
		TTL: time.Minute, Limit: limit, Now: &now}
}

// TestDispatchDueMatchesPerRow dispatches the same due starts (in batches
// of several sizes, the last one partial) through DispatchDue and through
// the per-row reference: the claims and the ledgers must agree.
func TestDispatchDueMatchesPerRow(t *testing.T) {
	set, ref := openSQLiteFile(t), openSQLiteFile(t)
	defer set.Close()
	defer ref.Close()
	due := time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC)
	for _, s := range []*sqlstore.Store{set, ref} {
		createBenchTask(t, s, "t")
		scheduleStarts(t, s, 1234, 1, due)
	}
	at := due.Add(time.Second)
	total := 0
	for _, limit := range []int{1, 300, 257, 10000, 5} {
		got, err := set.DispatchDue(context.Background(), dispatchParams(limit, at))
		if err != nil {
			t.Fatal(err)
		}
		want, err := dispatchDuePerRow(context.Background(), ref, dispatchParams(limit, at))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("limit %d: DispatchDue took %d, per-row %d", limit, len(got), len(want))
		}
		total += len(got)
		// The reference returns the rows in SQLite's order; compare as sets
		// by sorting both like DispatchDue does.
		seen := map[string]storage.Claim{}
		for _, c := range want {
			seen[c.DeviceID] = c
		}
		for _, c := range got {
			if d := cmp.Diff(seen[c.DeviceID], c); d != "" {
				t.Fatalf("limit %d: claim of %s (-per-row +set):\n%s", limit, c.DeviceID, d)
			}
		}
	}
	if total != 1234 {
		t.Fatalf("dispatched %d starts, want 1234", total)
	}
	got, want := ledger(t, set), ledger(t, ref)
	if len(want) != 1234 {
		t.Fatalf("reference ledger has %d rows, want 1234", len(want))
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("ledger (-per-row +set):\n%s", d)
	}
}

// BenchmarkDispatchDueSQLite measures dispatched starts/s on SQLite (a
// file database, synchronous=full): 10,000 due starts dispatched per
// operation in claims of limit starts (2,000 is the engine's
// DefaultClaimBatch), DispatchDue against the per-row baseline, in the
// same run:
//
//	go test ./storage/sqlstore/ -run '^$' -bench DispatchDueSQLite -benchtime 5x
func BenchmarkDispatchDueSQLite(b *testing.B) {
	const starts = 10000
	for _, limit := range []int{2000, 10000} {
		for _, mode := range []string{"PerRow", "MultiRow"} {
			b.Run(fmt.Sprintf("limit=%d/%s", limit, mode), func(b *testing.B) {
				s := openSQLiteFile(b)
				defer s.Close()
				createBenchTask(b, s, "t")
				due := time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC)
				n := 0
				var cpu time.Duration
				for i := range b.N {
					b.StopTimer()
					scheduleStarts(b, s, starts, int64(i+1), due)
					b.StartTimer()
					c0 := processCPU()
					p := dispatchParams(limit, due.Add(time.Second))
					for got := 0; got < starts; {
						var cs []storage.Claim
						var err error
						if mode == "PerRow" {
							cs, err = dispatchDuePerRow(context.Background(), s, p)
						} else {
							cs, err = s.DispatchDue(context.Background(), p)
						}
						if err != nil || len(cs) == 0 {
							b.Fatalf("dispatch = %d, %v after %d", len(cs), err, got)
						}
						got += len(cs)
					}
					cpu += processCPU() - c0
					n += starts
				}
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "starts/s")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/start")
			})
		}
	}
}
