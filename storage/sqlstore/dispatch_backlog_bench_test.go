package sqlstore_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
)

// scheduleBacklog writes n scheduled results of run for task "t": all due
// at due (a manual start: claims take the devices in key order, so each
// claim writes neighbouring rows), or spread over 97 due instants a
// millisecond apart (like a schedule in several time zones: each claim's
// rows lie all over the table).
func scheduleBacklog(tb testing.TB, s *sqlstore.Store, n int, run int64, due time.Time, spread bool) {
	tb.Helper()
	rs := make([]storage.ResultRecord, n)
	for i := range rs {
		at := due
		if spread {
			at = due.Add(time.Duration(i%97) * time.Millisecond)
		}
		rs[i] = storage.ResultRecord{TaskID: "t", DeviceID: fmt.Sprintf("dev-%06d", i), RunID: run, Seq: 0, State: "scheduled", DueAt: at, UpdatedAt: due}
	}
	for len(rs) > 0 {
		part := rs[:min(len(rs), 5000)]
		rs = rs[len(part):]
		if _, err := s.UpsertResults(context.Background(), storage.UpsertResultsParams{Results: part}); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkDispatchBacklogSQLite (issue #16): is SQLite's DispatchDue the
// limit when a 100,000-device start is dispatched under load? One op
// dispatches a backlog of 100,000 due starts of one task in
// the engine's claims of 2,000 (DefaultClaimBatch), in a file database
// (synchronous=full) that also holds 100,000 answered results of other
// tasks, alone ("idle") and while other writers share SQLite's single
// write lock the way a loaded server does ("ingest": results of 500
// devices per transaction, back to back; "renew": lease renewals of the
// 2,000 starts last dispatched, back to back), with the starts due at one
// instant or spread (scheduleBacklog).
//
// Run it with
//
//	go test ./storage/sqlstore/ -run '^$' -bench DispatchBacklogSQLite -benchtime 1x
//
// Metrics:
//   - starts/s: dispatched starts per second of the op.
//   - p50-ms, max-ms: the claims' latency (one DispatchDue call).
//   - first-ms, last-ms: the first and last claim's latency; a claim
//     whose cost grew with the backlog would show last >> first.
//   - writes/s: the other writer's committed transactions per second.
func BenchmarkDispatchBacklogSQLite(b *testing.B) {
	for _, backlog := range []int{100_000} {
		for _, load := range []string{"idle", "ingest", "renew"} {
			for _, spread := range []bool{false, true} {
				b.Run(fmt.Sprintf("backlog=%d/%s/spread=%t", backlog, load, spread), func(b *testing.B) {
					ctx := context.Background()
					s := openSQLiteFile(b)
					defer s.Close()
					createBenchTask(b, s, "t")
					for i := range 4 {
						id := fmt.Sprintf("other-%d", i)
						createBenchTask(b, s, id)
						rs := make([]storage.ResultRecord, 25_000)
						for j := range rs {
							rs[j] = storage.ResultRecord{TaskID: id, DeviceID: fmt.Sprintf("dev-%06d", j), RunID: 1, Seq: 3, State: "completed"}
						}
						if _, err := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: rs}); err != nil {
							b.Fatal(err)
						}
					}
					due := time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC)
					var lat []time.Duration
					var first, last time.Duration
					var elapsed time.Duration
					var writes atomic.Int64
					n := 0
					for i := range b.N {
						scheduleBacklog(b, s, backlog, int64(i+1), due, spread)
						var stop atomic.Bool
						var lastClaims atomic.Pointer[[]storage.Claim]
						var wg sync.WaitGroup
						switch load {
						case "ingest":
							wg.Go(func() {
								for k := 0; !stop.Load(); k++ {
									rs := make([]storage.ResultRecord, 500)
									for j := range rs {
										rs[j] = storage.ResultRecord{TaskID: "other-0", DeviceID: fmt.Sprintf("dev-%06d", (k*500+j)%25_000), RunID: int64(2 + k), Seq: 3, State: "completed"}
									}
									if _, err := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: rs}); err != nil {
										b.Error(err)
										return
									}
									writes.Add(1)
								}
							})
						case "renew":
							wg.Go(func() {
								for !stop.Load() {
									cs := lastClaims.Load()
									if cs == nil {
										time.Sleep(time.Millisecond)
										continue
									}
									now := due.Add(2 * time.Second)
									if _, err := s.RenewClaims(ctx, storage.RenewParams{Owner: "replica-1", State: "pending", Seq: 1, TTL: time.Minute, Claims: *cs, Now: &now}); err != nil {
										b.Error(err)
										return
									}
									writes.Add(1)
								}
							})
						}
						start := time.Now()
						p := dispatchParams(2000, due.Add(time.Second))
						for got := 0; got < backlog; {
							t0 := time.Now()
							cs, err := s.DispatchDue(ctx, p)
							d := time.Since(t0)
							if err != nil || len(cs) == 0 {
								b.Fatalf("DispatchDue = %d, %v after %d", len(cs), err, got)
							}
							if got == 0 {
								first += d
							}
							got += len(cs)
							if got >= backlog {
								last += d
							}
							lat = append(lat, d)
							lastClaims.Store(&cs)
						}
						elapsed += time.Since(start)
						stop.Store(true)
						wg.Wait()
						n += backlog
					}
					slices.Sort(lat)
					b.ReportMetric(float64(n)/elapsed.Seconds(), "starts/s")
					b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
					b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
					b.ReportMetric(float64(first.Microseconds())/1000/float64(b.N), "first-ms")
					b.ReportMetric(float64(last.Microseconds())/1000/float64(b.N), "last-ms")
					b.ReportMetric(float64(writes.Load())/elapsed.Seconds(), "writes/s")
					b.ReportMetric(0, "ns/op")
				})
			}
		}
	}
}
