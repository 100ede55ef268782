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

// renewPerRow is RenewClaims on SQLite as it was before it became
// multi-row: one unprepared UPDATE per claim in one transaction. It is the
// baseline of BenchmarkRenewClaimsSQLite and the reference of
// TestRenewClaimsMatchesPerRow.
func renewPerRow(ctx context.Context, s *sqlstore.Store, p storage.RenewParams) ([]storage.Claim, error) {
	const now = `COALESCE(?, CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER))`
	tx, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var lease any
	if p.Now != nil {
		lease = p.Now.UnixMicro()
	}
	held := map[[2]string]bool{}
	for _, c := range p.Claims {
		res, err := tx.ExecContext(ctx, `UPDATE results SET lease_until = `+now+` + ?
WHERE task_id = ? AND device_id = ? AND run_id = ? AND lease_epoch = ? AND lease_owner = ? AND state = ? AND seq = ?`,
			lease, p.TTL.Microseconds(), c.TaskID, c.DeviceID, c.RunID, c.Epoch, p.Owner, p.State, p.Seq)
		if err != nil {
			return nil, err
		}
		if k, _ := res.RowsAffected(); k > 0 {
			held[[2]string{c.TaskID, c.DeviceID}] = true
		}
	}
	var out []storage.Claim
	for _, c := range p.Claims {
		if held[[2]string{c.TaskID, c.DeviceID}] {
			out = append(out, c)
		}
	}
	return out, tx.Commit()
}

func leases(tb testing.TB, s *sqlstore.Store) map[string]int64 {
	tb.Helper()
	out := map[string]int64{}
	rows, err := s.DB().Query(`SELECT device_id, lease_until FROM results`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var d string
		var u int64
		if err := rows.Scan(&d, &u); err != nil {
			tb.Fatal(err)
		}
		out[d] = u
	}
	return out
}

// TestRenewClaimsMatchesPerRow renews the same claims (held ones, forged
// epochs, another owner's, unknown devices, a repeated claim; more than
// one prepared chunk) through RenewClaims and the per-row reference: the
// returned claims and every stored lease must agree.
func TestRenewClaimsMatchesPerRow(t *testing.T) {
	set, ref := openSQLiteFile(t), openSQLiteFile(t)
	defer set.Close()
	defer ref.Close()
	due := time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC)
	var claims []storage.Claim
	for _, s := range []*sqlstore.Store{set, ref} {
		createBenchTask(t, s, "t")
		scheduleStarts(t, s, 700, 1, due)
		cs, err := s.DispatchDue(context.Background(), dispatchParams(10000, due.Add(time.Second)))
		if err != nil || len(cs) != 700 {
			t.Fatalf("DispatchDue = %d, %v", len(cs), err)
		}
		claims = cs
	}
	var ask []storage.Claim
	for i, c := range claims {
		switch i % 5 {
		case 1:
			c.Epoch++ // forged
		case 2:
			c.RunID = 99 // another run
		case 3:
			c.DeviceID = "unknown-" + c.DeviceID
		}
		ask = append(ask, c)
	}
	ask = append(ask, claims[0], claims[10])
	later := due.Add(time.Minute)
	p := storage.RenewParams{Owner: "replica-1", State: "pending", Seq: 1, TTL: time.Hour, Claims: ask, Now: &later}
	got, err := set.RenewClaims(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	want, err := renewPerRow(context.Background(), ref, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < 280 {
		t.Fatalf("reference renewed %d claims; the test proves little", len(want))
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("renewed claims (-per-row +multi-row):\n%s", d)
	}
	if d := cmp.Diff(leases(t, ref), leases(t, set)); d != "" {
		t.Fatalf("stored leases (-per-row +multi-row):\n%s", d)
	}
	p.Owner = "replica-2"
	if got, err := set.RenewClaims(context.Background(), p); err != nil || len(got) != 0 {
		t.Fatalf("RenewClaims by another owner = %d, %v; want 0", len(got), err)
	}
}

// BenchmarkRenewClaimsSQLite measures renewed leases/s on SQLite: 10,000
// dispatched starts renewed per operation (the engine renews every held
// claim at each resend), RenewClaims against the per-row baseline:
//
//	go test ./storage/sqlstore/ -run '^$' -bench RenewClaimsSQLite -benchtime 5x
func BenchmarkRenewClaimsSQLite(b *testing.B) {
	const starts = 10000
	for _, mode := range []string{"PerRow", "MultiRow"} {
		b.Run(mode, func(b *testing.B) {
			s := openSQLiteFile(b)
			defer s.Close()
			createBenchTask(b, s, "t")
			due := time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC)
			scheduleStarts(b, s, starts, 1, due)
			claims, err := s.DispatchDue(context.Background(), dispatchParams(starts, due.Add(time.Second)))
			if err != nil || len(claims) != starts {
				b.Fatalf("DispatchDue = %d, %v", len(claims), err)
			}
			n := 0
			var cpu time.Duration
			b.ResetTimer()
			for i := range b.N {
				at := due.Add(time.Duration(i+2) * time.Second)
				p := storage.RenewParams{Owner: "replica-1", State: "pending", Seq: 1, TTL: time.Minute, Claims: claims, Now: &at}
				c0 := processCPU()
				var got []storage.Claim
				if mode == "PerRow" {
					got, err = renewPerRow(context.Background(), s, p)
				} else {
					got, err = s.RenewClaims(context.Background(), p)
				}
				cpu += processCPU() - c0
				if err != nil || len(got) != starts {
					b.Fatalf("renew = %d, %v", len(got), err)
				}
				n += starts
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "leases/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/lease")
		})
	}
}
