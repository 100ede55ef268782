package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/storage/storagetest"
)

// The tests of this file check PostgreSQL's dispatch tables (schema
// version 11): result_queue holds the scheduled results no replica has
// dispatched, result_leases the dispatched ones no device answered, and
// every read overlays a leased result with its lease.

// qBase is the instant the queue tests schedule at; every scheduled
// record is due then.
var qBase = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// qDispSeq is the seq DispatchDue gives the results it dispatches.
const qDispSeq = 2

// qRec is a result record of the queue tests: due at qBase, updated at
// an instant derived from (run, seq), with a message naming both.
func qRec(task, dev string, run, seq int64, state string) storage.ResultRecord {
	return storage.ResultRecord{TaskID: task, DeviceID: dev, RunID: run, Seq: seq, State: state,
		DueAt: qBase, UpdatedAt: qBase.Add(time.Duration(run*1000+seq) * time.Second),
		Message: fmt.Sprintf("%d/%d", run, seq)}
}

// qCreateTask creates task id.
func qCreateTask(t testing.TB, s storage.Store, id string) {
	t.Helper()
	rec := storagetest.NewTaskRecord(id, "Task "+id)
	if err := s.CreateTask(context.Background(), storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{Number: 1, Body: rec.Body}}); err != nil {
		t.Fatal(err)
	}
}

// qUpsert writes rs and returns the number of records applied.
func qUpsert(t testing.TB, s *sqlstore.Store, rs ...storage.ResultRecord) int {
	t.Helper()
	n, err := s.UpsertResults(context.Background(), storage.UpsertResultsParams{Results: rs})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// qSchedule schedules run 1 (seq 1) of task's devices.
func qSchedule(t testing.TB, s *sqlstore.Store, task string, devs ...string) {
	t.Helper()
	var rs []storage.ResultRecord
	for _, d := range devs {
		rs = append(rs, qRec(task, d, 1, 1, "scheduled"))
	}
	if n := qUpsert(t, s, rs...); n != len(rs) {
		t.Fatalf("scheduling %d devices applied %d", len(rs), n)
	}
}

// qDispatchP are the DispatchDue parameters of the queue tests: from
// scheduled to pending with seq qDispSeq, leases of a minute from qBase.
func qDispatchP(owner string, limit int) storage.DispatchParams {
	now := qBase
	return storage.DispatchParams{Owner: owner, FromState: "scheduled", State: "pending", Seq: qDispSeq,
		At: qBase.Add(time.Second), Before: qBase, TTL: time.Minute, Limit: limit, Now: &now}
}

// qDispatch dispatches up to limit due results for owner.
func qDispatch(t testing.TB, s *sqlstore.Store, owner string, limit int) []storage.Claim {
	t.Helper()
	cs, err := s.DispatchDue(context.Background(), qDispatchP(owner, limit))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// qStale takes over, for owner, the pending leases expired at now.
func qStale(t testing.TB, s *sqlstore.Store, owner string, now time.Time) []storage.Claim {
	t.Helper()
	cs, err := s.ClaimStale(context.Background(), storage.StaleParams{Owner: owner, State: "pending", Seq: qDispSeq, TTL: time.Minute, Limit: 1000, Now: &now})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// claimKeys returns "task/device/run" of each claim, sorted.
func claimKeys(cs []storage.Claim) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s/%s/%d", c.TaskID, c.DeviceID, c.RunID)
	}
	sort.Strings(out)
	return out
}

// queueInvariants checks the invariants of the dispatch tables after a
// committed transaction, over the whole schema:
//
//	I0 no results, queue or lease rows of a task that does not exist;
//	I1 a queue row exists only if its result is 'scheduled' with the same
//	   run and seq, and no lease row exists for the key;
//	I2 a lease row exists only if its result is 'scheduled' with the
//	   lease's run and base_seq;
//	I3 every 'scheduled' result has exactly one of a queue or a lease row;
//	I4 TaskStatistics of every task equals a recount of the overlaid
//	   states (the lease's state where there is one), restarts included.
//
// It returns an error naming every broken invariant and its offending keys.
func queueInvariants(ctx context.Context, s *sqlstore.Store) error {
	db := s.DB()
	var broken []string
	for _, c := range []struct{ name, q string }{
		{"I0 (rows of a task that does not exist)", `SELECT x FROM (
SELECT 'result ' || task_id || '/' || device_id AS x FROM results WHERE task_id NOT IN (SELECT id FROM tasks)
UNION ALL SELECT 'queue ' || task_id || '/' || device_id FROM result_queue WHERE task_id NOT IN (SELECT id FROM tasks)
UNION ALL SELECT 'lease ' || task_id || '/' || device_id FROM result_leases WHERE task_id NOT IN (SELECT id FROM tasks)) o
ORDER BY 1 LIMIT 20`},
		{"I1 (a queue row without its scheduled, unleased result)", `SELECT q.task_id || '/' || q.device_id || ': queue run ' || q.run_id || ' seq ' || q.seq ||
 ', result ' || COALESCE(r.state || ' run ' || r.run_id || ' seq ' || r.seq, 'missing') ||
 CASE WHEN l.task_id IS NULL THEN '' ELSE ', leased run ' || l.run_id || ' base ' || l.base_seq END
FROM result_queue q
LEFT JOIN results r ON r.task_id = q.task_id AND r.device_id = q.device_id
LEFT JOIN result_leases l ON l.task_id = q.task_id AND l.device_id = q.device_id
WHERE r.task_id IS NULL OR r.state <> 'scheduled' OR r.run_id <> q.run_id OR r.seq <> q.seq OR l.task_id IS NOT NULL
ORDER BY 1 LIMIT 20`},
		{"I2 (a lease row without its scheduled result)", `SELECT l.task_id || '/' || l.device_id || ': lease run ' || l.run_id || ' base ' || l.base_seq ||
 ', result ' || COALESCE(r.state || ' run ' || r.run_id || ' seq ' || r.seq, 'missing')
FROM result_leases l
LEFT JOIN results r ON r.task_id = l.task_id AND r.device_id = l.device_id
WHERE r.task_id IS NULL OR r.state <> 'scheduled' OR r.run_id <> l.run_id OR r.seq <> l.base_seq
ORDER BY 1 LIMIT 20`},
		{"I3 (a scheduled result with neither or both of a queue and a lease row)", `SELECT r.task_id || '/' || r.device_id || ': run ' || r.run_id || ' seq ' || r.seq ||
 CASE WHEN q.task_id IS NULL THEN ', no queue row' ELSE ', queued' END ||
 CASE WHEN l.task_id IS NULL THEN ', no lease' ELSE ', leased' END
FROM results r
LEFT JOIN result_queue q ON q.task_id = r.task_id AND q.device_id = r.device_id
LEFT JOIN result_leases l ON l.task_id = r.task_id AND l.device_id = r.device_id
WHERE r.state = 'scheduled' AND (q.task_id IS NULL) = (l.task_id IS NULL)
ORDER BY 1 LIMIT 20`},
	} {
		var keys []string
		if err := db.SelectContext(ctx, &keys, c.q); err != nil {
			return fmt.Errorf("checking %s: %w", c.name, err)
		}
		if len(keys) > 0 {
			broken = append(broken, c.name+": "+strings.Join(keys, "; "))
		}
	}
	// I4: the counters against a recount, for every task with results,
	// counters or a task row.
	var rows []struct {
		Task    string `db:"task_id"`
		State   string `db:"state"`
		N       int    `db:"n"`
		Restart int    `db:"restart"`
	}
	if err := db.SelectContext(ctx, &rows, `SELECT r.task_id, COALESCE(l.state, r.state) AS state, COUNT(*) AS n,
 COUNT(*) FILTER (WHERE r.restart_required) AS restart
FROM results r LEFT JOIN result_leases l ON l.task_id = r.task_id AND l.device_id = r.device_id
GROUP BY 1, 2`); err != nil {
		return fmt.Errorf("checking I4: %w", err)
	}
	recount := map[string]storage.Statistics{}
	for _, r := range rows {
		st, ok := recount[r.Task]
		if !ok {
			st = storage.Statistics{ByState: map[string]int{}}
		}
		st.ByState[r.State] += r.N
		st.Total += r.N
		st.RestartRequired += r.Restart
		recount[r.Task] = st
	}
	var tasks []string
	if err := db.SelectContext(ctx, &tasks, `SELECT id FROM tasks UNION SELECT task_id FROM results UNION SELECT task_id FROM result_deltas ORDER BY 1`); err != nil {
		return fmt.Errorf("checking I4: %w", err)
	}
	for _, task := range tasks {
		got, err := s.TaskStatistics(ctx, task)
		if err != nil {
			return fmt.Errorf("checking I4: %w", err)
		}
		want := recount[task]
		if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
			broken = append(broken, fmt.Sprintf("I4 (counters differ from the overlaid recount) of task %s (-recount +TaskStatistics):\n%s", task, d))
		}
	}
	if len(broken) > 0 {
		return errors.New(strings.Join(broken, "\n"))
	}
	return nil
}

// mustQueueInvariants fails the test when queueInvariants does.
func mustQueueInvariants(t testing.TB, s *sqlstore.Store) {
	t.Helper()
	if err := queueInvariants(context.Background(), s); err != nil {
		t.Fatalf("dispatch table invariants:\n%v", err)
	}
}

// qView is what every read must show of one result: its run, seq and
// (overlaid) state, and whether it needs a restart.
type qView struct {
	Run     int64
	Seq     int64
	State   string
	Restart bool
}

func viewOf(r storage.ResultRecord) qView {
	return qView{Run: r.RunID, Seq: r.Seq, State: r.State, Restart: r.RestartRequired}
}

// checkViews checks every read of task's results against want (device ->
// view): GetResult, ListResults without and with a States filter and
// paged by AfterDevice, DueResults of scheduled and of pending, and
// TaskStatistics.
func checkViews(t testing.TB, s *sqlstore.Store, task string, want map[string]qView) {
	t.Helper()
	ctx := context.Background()
	devs := make([]string, 0, len(want))
	states := map[string]bool{}
	for d, v := range want {
		devs = append(devs, d)
		states[v.State] = true
	}
	sort.Strings(devs)
	viewsOf := func(rs []storage.ResultRecord) map[string]qView {
		m := map[string]qView{}
		for _, r := range rs {
			if r.TaskID != task {
				continue
			}
			m[r.DeviceID] = viewOf(r)
		}
		return m
	}
	devsOf := func(rs []storage.ResultRecord) []string {
		var out []string
		for _, r := range rs {
			if r.TaskID == task {
				out = append(out, r.DeviceID)
			}
		}
		return out
	}
	filter := func(keep func(qView) bool) []string {
		var out []string
		for _, d := range devs {
			if keep(want[d]) {
				out = append(out, d)
			}
		}
		return out
	}
	for _, d := range devs {
		r, err := s.GetResult(ctx, task, d)
		if err != nil {
			t.Fatalf("GetResult(%s): %v", d, err)
		}
		if d := cmp.Diff(want[d], viewOf(r)); d != "" {
			t.Fatalf("GetResult(%s/%s) (-want +got):\n%s", task, r.DeviceID, d)
		}
	}
	all, err := s.ListResults(ctx, storage.ListResultsParams{TaskID: task, Limit: storage.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, viewsOf(all), cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("ListResults(%s) (-want +got):\n%s", task, d)
	}
	if d := cmp.Diff(devs, devsOf(all), cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("ListResults(%s) order (-want +got):\n%s", task, d)
	}
	// Every state alone, every pair with scheduled, and all of them.
	var filters [][]string
	var every []string
	for st := range states {
		filters = append(filters, []string{st})
		every = append(every, st)
		if st != "scheduled" {
			filters = append(filters, []string{"scheduled", st})
		}
	}
	if len(every) > 0 {
		filters = append(filters, every)
	}
	filters = append(filters, []string{"no_such_state"})
	for _, f := range filters {
		wantDevs := filter(func(v qView) bool { return slices.Contains(f, v.State) })
		got, err := s.ListResults(ctx, storage.ListResultsParams{TaskID: task, States: f, Limit: storage.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(wantDevs, devsOf(got), cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("ListResults(%s, States %v) (-want +got):\n%s", task, f, d)
		}
		for _, r := range got {
			if d := cmp.Diff(want[r.DeviceID], viewOf(r)); d != "" {
				t.Fatalf("ListResults(%s, States %v) row %s (-want +got):\n%s", task, f, r.DeviceID, d)
			}
		}
		// Paged two at a time.
		var paged []string
		after := ""
		for range len(devs) + 2 {
			page, err := s.ListResults(ctx, storage.ListResultsParams{TaskID: task, States: f, AfterDevice: after, Limit: 2})
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			paged = append(paged, devsOf(page)...)
			after = page[len(page)-1].DeviceID
		}
		if d := cmp.Diff(wantDevs, paged, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("ListResults(%s, States %v) paged by AfterDevice (-want +got):\n%s", task, f, d)
		}
	}
	var pagedAll []string
	after := ""
	for range len(devs) + 2 {
		page, err := s.ListResults(ctx, storage.ListResultsParams{TaskID: task, AfterDevice: after, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		pagedAll = append(pagedAll, devsOf(page)...)
		after = page[len(page)-1].DeviceID
	}
	if d := cmp.Diff(devs, pagedAll, cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("ListResults(%s) paged by AfterDevice (-want +got):\n%s", task, d)
	}
	for _, st := range []string{"scheduled", "pending"} {
		due, err := s.DueResults(ctx, storage.DueResultsParams{State: st, Before: qBase.Add(time.Hour), Limit: storage.MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		wantDevs := filter(func(v qView) bool { return v.State == st })
		if d := cmp.Diff(wantDevs, devsOf(due), cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("DueResults(%s) of task %s (-want +got):\n%s", st, task, d)
		}
		for _, r := range due {
			if r.TaskID == task {
				if d := cmp.Diff(want[r.DeviceID], viewOf(r)); d != "" {
					t.Fatalf("DueResults(%s) row %s (-want +got):\n%s", st, r.DeviceID, d)
				}
			}
		}
	}
	wantSt := storage.Statistics{ByState: map[string]int{}}
	for _, v := range want {
		wantSt.ByState[v.State]++
		wantSt.Total++
		if v.Restart {
			wantSt.RestartRequired++
		}
	}
	st, err := s.TaskStatistics(ctx, task)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(wantSt, st, cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("TaskStatistics(%s) (-want +got):\n%s", task, d)
	}
}

// qLease is one result_leases row.
type qLease struct {
	Task    string `db:"task_id"`
	Device  string `db:"device_id"`
	Run     int64  `db:"run_id"`
	BaseSeq int64  `db:"base_seq"`
	Seq     int64  `db:"seq"`
	State   string `db:"state"`
	Owner   string `db:"owner"`
	Epoch   int64  `db:"epoch"`
}

// qQueued is one result_queue row.
type qQueued struct {
	Task   string `db:"task_id"`
	Device string `db:"device_id"`
	Run    int64  `db:"run_id"`
	Seq    int64  `db:"seq"`
}

// qTables returns the queue and lease rows of task, in device order.
func qTables(t testing.TB, s *sqlstore.Store, task string) ([]qQueued, []qLease) {
	t.Helper()
	var q []qQueued
	if err := s.DB().Select(&q, `SELECT task_id, device_id, run_id, seq FROM result_queue WHERE task_id = $1 ORDER BY device_id`, task); err != nil {
		t.Fatal(err)
	}
	var l []qLease
	if err := s.DB().Select(&l, `SELECT task_id, device_id, run_id, base_seq, seq, state, owner, epoch FROM result_leases WHERE task_id = $1 ORDER BY device_id`, task); err != nil {
		t.Fatal(err)
	}
	return q, l
}

// qLedger returns the dispatch ledger as "task/device/run" -> rows.
func qLedger(t testing.TB, s *sqlstore.Store) map[string]int {
	t.Helper()
	var rows []struct {
		Task   string `db:"task_id"`
		Device string `db:"device_id"`
		Run    int64  `db:"run_id"`
		N      int    `db:"n"`
	}
	if err := s.DB().Select(&rows, `SELECT task_id, device_id, run_id, COUNT(*) AS n FROM dispatch_log GROUP BY 1, 2, 3`); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range rows {
		out[fmt.Sprintf("%s/%s/%d", r.Task, r.Device, r.Run)] = r.N
	}
	return out
}

func scheduledView(run int64) qView { return qView{Run: run, Seq: 1, State: "scheduled"} }
func pendingView(run int64) qView   { return qView{Run: run, Seq: qDispSeq, State: "pending"} }

// TestQueueDeviceAnswerWins: a device's answer (seq above the dispatched
// one) replaces the lease's overlay; the lease row goes, the answered
// result is neither taken over nor renewable, and the counters move from
// pending to the answered state.
func TestQueueDeviceAnswerWins(t *testing.T) {
	t.Parallel()
	s := openPG(t)
	defer s.Close()
	ctx := context.Background()
	qCreateTask(t, s, "t")
	devs := []string{"d0", "d1", "d2", "d3", "d4", "d5"}
	qSchedule(t, s, "t", devs...)
	want := map[string]qView{}
	for _, d := range devs {
		want[d] = scheduledView(1)
	}
	checkViews(t, s, "t", want)
	mustQueueInvariants(t, s)

	cs := qDispatch(t, s, "a", 3)
	if d := cmp.Diff([]string{"t/d0/1", "t/d1/1", "t/d2/1"}, claimKeys(cs)); d != "" {
		t.Fatalf("first dispatch (-want +got):\n%s", d)
	}
	for _, c := range cs {
		if c.Seq != qDispSeq || c.Epoch != 1 || !c.DueAt.Equal(qBase) || c.TaskRevision != 1 {
			t.Fatalf("claim %+v", c)
		}
	}
	for _, d := range devs[:3] {
		want[d] = pendingView(1)
	}
	checkViews(t, s, "t", want)
	mustQueueInvariants(t, s)
	// The overlay shows the dispatch's update time, the result's own
	// fields otherwise.
	r, err := s.GetResult(ctx, "t", "d0")
	if err != nil {
		t.Fatal(err)
	}
	if !r.UpdatedAt.Equal(qBase.Add(time.Second)) || r.Message != "1/1" || !r.DueAt.Equal(qBase) {
		t.Fatalf("dispatched result %+v: want UpdatedAt %v (the dispatch's), message 1/1", r, qBase.Add(time.Second))
	}

	// d1's device answers.
	if n := qUpsert(t, s, qRec("t", "d1", 1, 3, "running")); n != 1 {
		t.Fatalf("the device's answer applied %d, want 1", n)
	}
	want["d1"] = qView{Run: 1, Seq: 3, State: "running"}
	checkViews(t, s, "t", want)
	mustQueueInvariants(t, s)
	q, l := qTables(t, s, "t")
	wantL := []qLease{
		{"t", "d0", 1, 1, qDispSeq, "pending", "a", 1},
		{"t", "d2", 1, 1, qDispSeq, "pending", "a", 1},
	}
	if d := cmp.Diff(wantL, l); d != "" {
		t.Fatalf("lease rows after d1 answered (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]qQueued{{"t", "d3", 1, 1}, {"t", "d4", 1, 1}, {"t", "d5", 1, 1}}, q); d != "" {
		t.Fatalf("queue rows (-want +got):\n%s", d)
	}
	r, err = s.GetResult(ctx, "t", "d1")
	if err != nil {
		t.Fatal(err)
	}
	if !r.UpdatedAt.Equal(qRec("t", "d1", 1, 3, "").UpdatedAt) || r.Message != "1/3" {
		t.Fatalf("answered result %+v: want the answer's update time and message", r)
	}
	// The answered result is not renewable by its replica ...
	ok, err := s.RenewClaims(ctx, storage.RenewParams{Owner: "a", State: "pending", Seq: qDispSeq, TTL: time.Minute, Claims: cs, Now: &qBase})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"t/d0/1", "t/d2/1"}, claimKeys(ok)); d != "" {
		t.Fatalf("renewed claims (-want +got):\n%s", d)
	}
	// ... nor taken over once the leases expired.
	took := qStale(t, s, "b", qBase.Add(time.Hour))
	if d := cmp.Diff([]string{"t/d0/1", "t/d2/1"}, claimKeys(took)); d != "" {
		t.Fatalf("ClaimStale after expiry (-want +got):\n%s", d)
	}
	for _, c := range took {
		if c.Epoch != 2 {
			t.Fatalf("taken over %+v, want epoch 2", c)
		}
	}
	// A late answer of d1's old dispatch seq changes nothing.
	if n := qUpsert(t, s, qRec("t", "d1", 1, qDispSeq, "pending")); n != 0 {
		t.Fatalf("a record older than the answer applied %d", n)
	}
	checkViews(t, s, "t", want)
	mustQueueInvariants(t, s)
	if d := cmp.Diff(map[string]int{"t/d0/1": 1, "t/d1/1": 1, "t/d2/1": 1}, qLedger(t, s)); d != "" {
		t.Fatalf("dispatch ledger (-want +got):\n%s", d)
	}
}

// TestQueueRecordEqualToLease: a record whose (run, seq) equals the
// lease's, or is older, is ignored (the dispatched state is what it
// competes with); a newer record in the same batch is applied.
func TestQueueRecordEqualToLease(t *testing.T) {
	t.Parallel()
	s := openPG(t)
	defer s.Close()
	qCreateTask(t, s, "t")
	qSchedule(t, s, "t", "d0", "d1", "d2")
	if cs := qDispatch(t, s, "a", 10); len(cs) != 3 {
		t.Fatalf("dispatched %d, want 3", len(cs))
	}
	want := map[string]qView{"d0": pendingView(1), "d1": pendingView(1), "d2": pendingView(1)}
	for _, tc := range []struct {
		name  string
		batch []storage.ResultRecord
		want  int
	}{
		{"equal to the lease", []storage.ResultRecord{qRec("t", "d0", 1, qDispSeq, "running")}, 0},
		{"equal to the result under the lease", []storage.ResultRecord{qRec("t", "d0", 1, 1, "scheduled")}, 0},
		{"an older run with a higher seq", []storage.ResultRecord{qRec("t", "d1", 0, 9, "completed")}, 0},
		{"equal and newer in one batch", []storage.ResultRecord{qRec("t", "d0", 1, qDispSeq, "failed"), qRec("t", "d2", 1, qDispSeq+1, "completed")}, 1},
		{"equal after newer for the same device", []storage.ResultRecord{qRec("t", "d1", 1, qDispSeq+1, "running"), qRec("t", "d1", 1, qDispSeq, "failed")}, 1},
	} {
		if n := qUpsert(t, s, tc.batch...); n != tc.want {
			t.Fatalf("%s: UpsertResults applied %d, want %d", tc.name, n, tc.want)
		}
	}
	want["d2"] = qView{Run: 1, Seq: qDispSeq + 1, State: "completed"}
	want["d1"] = qView{Run: 1, Seq: qDispSeq + 1, State: "running"}
	checkViews(t, s, "t", want)
	mustQueueInvariants(t, s)
	_, l := qTables(t, s, "t")
	if d := cmp.Diff([]qLease{{"t", "d0", 1, 1, qDispSeq, "pending", "a", 1}}, l); d != "" {
		t.Fatalf("lease rows (-want +got):\n%s", d)
	}
}

// TestQueueRescheduleLeased: a new run of a leased result removes the old
// lease and queues the new run once; the next dispatch sends the new run
// exactly once.
func TestQueueRescheduleLeased(t *testing.T) {
	t.Parallel()
	s := openPG(t)
	defer s.Close()
	qCreateTask(t, s, "t")
	devs := []string{"d0", "d1", "d2", "d3"}
	qSchedule(t, s, "t", devs...)
	if cs := qDispatch(t, s, "a", 10); len(cs) != 4 {
		t.Fatalf("dispatched %d, want 4", len(cs))
	}
	if n := qUpsert(t, s, qRec("t", "d0", 2, 1, "scheduled"), qRec("t", "d1", 2, 1, "scheduled")); n != 2 {
		t.Fatalf("rescheduling applied %d, want 2", n)
	}
	want := map[string]qView{"d0": scheduledView(2), "d1": scheduledView(2), "d2": pendingView(1), "d3": pendingView(1)}
	checkViews(t, s, "t", want)
	mustQueueInvariants(t, s)
	q, l := qTables(t, s, "t")
	if d := cmp.Diff([]qQueued{{"t", "d0", 2, 1}, {"t", "d1", 2, 1}}, q); d != "" {
		t.Fatalf("queue rows after rescheduling (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]qLease{{"t", "d2", 1, 1, qDispSeq, "pending", "a", 1}, {"t", "d3", 1, 1, qDispSeq, "pending", "a", 1}}, l); d != "" {
		t.Fatalf("lease rows after rescheduling (-want +got):\n%s", d)
	}
	cs := qDispatch(t, s, "b", 10)
	if d := cmp.Diff([]string{"t/d0/2", "t/d1/2"}, claimKeys(cs)); d != "" {
		t.Fatalf("second dispatch (-want +got):\n%s", d)
	}
	if more := qDispatch(t, s, "a", 10); len(more) != 0 {
		t.Fatalf("third dispatch %+v, want none", more)
	}
	want["d0"], want["d1"] = pendingView(2), pendingView(2)
	checkViews(t, s, "t", want)
	mustQueueInvariants(t, s)
	wantLedger := map[string]int{"t/d0/1": 1, "t/d1/1": 1, "t/d2/1": 1, "t/d3/1": 1, "t/d0/2": 1, "t/d1/2": 1}
	if d := cmp.Diff(wantLedger, qLedger(t, s)); d != "" {
		t.Fatalf("dispatch ledger (-want +got):\n%s", d)
	}
	// The old run's claim is no longer renewable; the new one is.
	old := storage.Claim{TaskID: "t", DeviceID: "d0", RunID: 1, Epoch: 1}
	ok, err := s.RenewClaims(context.Background(), storage.RenewParams{Owner: "a", State: "pending", Seq: qDispSeq, TTL: time.Minute, Claims: []storage.Claim{old}, Now: &qBase})
	if err != nil || len(ok) != 0 {
		t.Fatalf("renewal of the replaced run: %+v, %v", ok, err)
	}
	ok, err = s.RenewClaims(context.Background(), storage.RenewParams{Owner: "b", State: "pending", Seq: qDispSeq, TTL: time.Minute, Claims: cs, Now: &qBase})
	if err != nil || len(ok) != 2 {
		t.Fatalf("renewal of the new run: %+v, %v", ok, err)
	}
}

// TestQueueStopBeforeDispatch: a stop of a queued result removes its
// queue row, so it is never dispatched; a stop of a leased result removes
// the lease, so it is never taken over.
func TestQueueStopBeforeDispatch(t *testing.T) {
	t.Parallel()
	s := openPG(t)
	defer s.Close()
	qCreateTask(t, s, "t")
	qSchedule(t, s, "t", "d0", "d1", "d2", "d3")
	if n := qUpsert(t, s, qRec("t", "d1", 1, 5, "stopped")); n != 1 {
		t.Fatalf("stop applied %d, want 1", n)
	}
	q, _ := qTables(t, s, "t")
	if d := cmp.Diff([]qQueued{{"t", "d0", 1, 1}, {"t", "d2", 1, 1}, {"t", "d3", 1, 1}}, q); d != "" {
		t.Fatalf("queue rows after the stop (-want +got):\n%s", d)
	}
	want := map[string]qView{"d0": scheduledView(1), "d1": {Run: 1, Seq: 5, State: "stopped"}, "d2": scheduledView(1), "d3": scheduledView(1)}
	checkViews(t, s, "t", want)
	mustQueueInvariants(t, s)
	cs := qDispatch(t, s, "a", 10)
	if d := cmp.Diff([]string{"t/d0/1", "t/d2/1", "t/d3/1"}, claimKeys(cs)); d != "" {
		t.Fatalf("dispatch (-want +got):\n%s", d)
	}
	want["d0"], want["d2"], want["d3"] = pendingView(1), pendingView(1), pendingView(1)
	// A stop of a leased result (and a stop of a new run, in one batch).
	if n := qUpsert(t, s, qRec("t", "d0", 1, 5, "stopped"), qRec("t", "d3", 2, 1, "scheduled"), qRec("t", "d3", 2, 2, "stopped")); n != 3 {
		t.Fatalf("stops applied %d, want 3", n)
	}
	want["d0"] = qView{Run: 1, Seq: 5, State: "stopped"}
	want["d3"] = qView{Run: 2, Seq: 2, State: "stopped"}
	checkViews(t, s, "t", want)
	mustQueueInvariants(t, s)
	if more := qDispatch(t, s, "a", 10); len(more) != 0 {
		t.Fatalf("dispatched after the stops: %+v", more)
	}
	if d := cmp.Diff([]string{"t/d2/1"}, claimKeys(qStale(t, s, "b", qBase.Add(time.Hour)))); d != "" {
		t.Fatalf("ClaimStale after the stops (-want +got):\n%s", d)
	}
}

// TestQueueBatchEqualsOneByOne: batches naming keys several times in mixed
// order (leased, queued and new keys; newer, equal and stale records)
// leave the store, the dispatch tables and the counters exactly as
// applying the records one at a time does, and count the same.
func TestQueueBatchEqualsOneByOne(t *testing.T) {
	t.Parallel()
	r := qRec
	for _, tc := range []struct {
		name  string
		batch []storage.ResultRecord
	}{
		{"mixed", []storage.ResultRecord{
			r("t", "n0", 1, 1, "scheduled"), r("t", "l0", 1, 3, "running"), r("t", "q0", 1, 5, "stopped"),
			r("t", "l1", 1, qDispSeq, "running"), r("t", "l0", 1, qDispSeq, "failed"), r("t", "n0", 1, 2, "stopped"),
			r("t", "q1", 2, 1, "scheduled"), r("t", "l2", 2, 1, "scheduled"), r("t", "n2", 3, 1, "running"),
			r("t", "l0", 2, 1, "scheduled"), r("t", "q0", 2, 1, "scheduled"), r("t", "q1", 1, 7, "failed"),
			r("t", "l1", 1, 1, "scheduled"), r("t", "n1", 1, 1, "scheduled"), r("t", "l2", 2, 2, "stopped"),
			r("t", "q2", 1, 1, "scheduled"), r("t", "n2", 2, 1, "scheduled"), r("t", "l0", 1, 9, "completed"),
			r("t", "l3", 1, 4, "completed"), r("t", "n3", 1, 1, "scheduled"), r("t", "n3", 2, 1, "scheduled"),
			r("t", "q0", 2, 2, "running"), r("t", "l3", 3, 1, "scheduled"),
		}},
		{"new keys repeated", []storage.ResultRecord{
			r("t", "n0", 1, 1, "scheduled"), r("t", "n1", 1, 1, "scheduled"), r("t", "n0", 1, 2, "stopped"),
			r("t", "n2", 1, 1, "scheduled"), r("t", "n1", 2, 1, "scheduled"), r("t", "n0", 2, 1, "scheduled"),
			r("t", "n2", 1, 1, "running"), r("t", "n3", 4, 4, "completed"), r("t", "n3", 5, 1, "scheduled"),
		}},
		{"existing keys repeated", []storage.ResultRecord{
			r("t", "q0", 1, 2, "scheduled"), r("t", "l0", 2, 1, "scheduled"), r("t", "q0", 1, 3, "scheduled"),
			r("t", "l0", 2, 2, "scheduled"), r("t", "l1", 1, 3, "running"), r("t", "q1", 1, 1, "scheduled"),
			r("t", "l1", 1, 4, "completed"), r("t", "l2", 1, qDispSeq, "completed"), r("t", "q2", 3, 1, "running"),
			r("t", "l2", 1, qDispSeq+1, "scheduled"), r("t", "q2", 2, 9, "scheduled"), r("t", "l3", 1, 1, "stopped"),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			batch, single := openPG(t), openPG(t)
			defer batch.Close()
			defer single.Close()
			for _, s := range []*sqlstore.Store{batch, single} {
				qCreateTask(t, s, "t")
				qSchedule(t, s, "t", "l0", "l1", "l2", "l3", "q0", "q1", "q2", "q3")
				if d := cmp.Diff([]string{"t/l0/1", "t/l1/1", "t/l2/1", "t/l3/1"}, claimKeys(qDispatch(t, s, "a", 4))); d != "" {
					t.Fatalf("setup dispatch (-want +got):\n%s", d)
				}
			}
			nb := qUpsert(t, batch, tc.batch...)
			ns := 0
			for _, rec := range tc.batch {
				ns += qUpsert(t, single, rec)
			}
			if nb != ns {
				t.Fatalf("the batch applied %d records, one by one %d", nb, ns)
			}
			for _, s := range []*sqlstore.Store{batch, single} {
				mustQueueInvariants(t, s)
			}
			ctx := context.Background()
			list := func(s *sqlstore.Store) []storage.ResultRecord {
				rs, err := s.ListResults(ctx, storage.ListResultsParams{TaskID: "t", Limit: storage.MaxListLimit})
				if err != nil {
					t.Fatal(err)
				}
				return rs
			}
			if d := cmp.Diff(list(single), list(batch)); d != "" {
				t.Fatalf("results (-one by one +batch):\n%s", d)
			}
			// Every read of both agrees with the one-by-one store's list.
			want := map[string]qView{}
			for _, r := range list(single) {
				want[r.DeviceID] = viewOf(r)
			}
			checkViews(t, batch, "t", want)
			checkViews(t, single, "t", want)
			qs, ls := qTables(t, single, "t")
			qb, lb := qTables(t, batch, "t")
			if d := cmp.Diff(qs, qb); d != "" {
				t.Fatalf("queue rows (-one by one +batch):\n%s", d)
			}
			if d := cmp.Diff(ls, lb); d != "" {
				t.Fatalf("lease rows (-one by one +batch):\n%s", d)
			}
			stats := func(s *sqlstore.Store) storage.Statistics {
				st, err := s.TaskStatistics(ctx, "t")
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
			if d := cmp.Diff(stats(single), stats(batch), cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("statistics (-one by one +batch):\n%s", d)
			}
			// Both dispatch the same runs next.
			if d := cmp.Diff(claimKeys(qDispatch(t, single, "b", 100)), claimKeys(qDispatch(t, batch, "b", 100))); d != "" {
				t.Fatalf("next dispatch (-one by one +batch):\n%s", d)
			}
			for _, s := range []*sqlstore.Store{batch, single} {
				mustQueueInvariants(t, s)
			}
		})
	}
}

// TestQueueDeleteTask: deleting a task with queued and leased results
// empties both tables and the counters for it, and leaves another task's
// alone; a task re-created under the same id starts clean.
func TestQueueDeleteTask(t *testing.T) {
	t.Parallel()
	s := openPG(t)
	defer s.Close()
	ctx := context.Background()
	for _, task := range []string{"t", "u"} {
		qCreateTask(t, s, task)
		qSchedule(t, s, task, "d0", "d1", "d2", "d3")
	}
	// Dispatch order is due, task, device (all due alike): t's four and
	// u's d0, d1 are leased.
	cs := qDispatch(t, s, "a", 6)
	if d := cmp.Diff([]string{"t/d0/1", "t/d1/1", "t/d2/1", "t/d3/1", "u/d0/1", "u/d1/1"}, claimKeys(cs)); d != "" {
		t.Fatalf("setup dispatch (-want +got):\n%s", d)
	}
	if n := qUpsert(t, s, qRec("t", "d3", 1, 3, "running")); n != 1 {
		t.Fatalf("answer applied %d", n)
	}
	if n := qUpsert(t, s, qRec("t", "d2", 2, 1, "scheduled"), qRec("u", "d3", 1, 4, "completed")); n != 2 {
		t.Fatalf("reschedule applied %d", n)
	}
	mustQueueInvariants(t, s)
	if err := s.DeleteTask(ctx, storage.DeleteTaskParams{ID: "t"}); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"results", "result_queue", "result_leases", "result_deltas"} {
		var n int
		if err := s.DB().Get(&n, `SELECT COUNT(*) FROM `+table+` WHERE task_id = 't'`); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("%d rows of the deleted task in %s", n, table)
		}
	}
	st, err := s.TaskStatistics(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(storage.Statistics{}, st, cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("statistics of the deleted task (-want +got):\n%s", d)
	}
	mustQueueInvariants(t, s)
	checkViews(t, s, "u", map[string]qView{"d0": pendingView(1), "d1": pendingView(1), "d2": scheduledView(1), "d3": {Run: 1, Seq: 4, State: "completed"}})
	if d := cmp.Diff([]string{"u/d2/1"}, claimKeys(qDispatch(t, s, "b", 10))); d != "" {
		t.Fatalf("dispatch after the delete (-want +got):\n%s", d)
	}
	// The same id again: nothing of the old task shows.
	qCreateTask(t, s, "t")
	qSchedule(t, s, "t", "d0", "d5")
	checkViews(t, s, "t", map[string]qView{"d0": scheduledView(1), "d5": scheduledView(1)})
	if d := cmp.Diff([]string{"t/d0/1", "t/d5/1"}, claimKeys(qDispatch(t, s, "b", 10))); d != "" {
		t.Fatalf("dispatch of the re-created task (-want +got):\n%s", d)
	}
	mustQueueInvariants(t, s)
}

// qSnapshot is every row of the dispatch tables, the ledger and the
// counters, as text, for "nothing changed" checks.
func qSnapshot(t testing.TB, s *sqlstore.Store) []string {
	t.Helper()
	var out []string
	for _, q := range []string{
		`SELECT 'queue ' || task_id || '/' || device_id || ' ' || run_id || ' ' || seq || ' ' || due_at FROM result_queue`,
		`SELECT 'lease ' || task_id || '/' || device_id || ' ' || run_id || ' ' || base_seq || ' ' || seq || ' ' || state || ' ' || owner || ' ' || epoch || ' ' || until FROM result_leases`,
		`SELECT 'result ' || task_id || '/' || device_id || ' ' || run_id || ' ' || seq || ' ' || state || ' ' || updated_at FROM results`,
		`SELECT 'ledger ' || task_id || '/' || device_id || ' ' || run_id || ' ' || COUNT(*) FROM dispatch_log GROUP BY task_id, device_id, run_id`,
		`SELECT 'counter ' || task_id || ' ' || state || ' ' || SUM(n) || ' ' || SUM(restart) FROM result_deltas GROUP BY task_id, state`,
	} {
		var rows []string
		if err := s.DB().Select(&rows, q); err != nil {
			t.Fatal(err)
		}
		out = append(out, rows...)
	}
	sort.Strings(out)
	return out
}

// TestQueueDispatchFromOtherState: on PostgreSQL only scheduled results
// are queued, so DispatchDue from any other state is refused with
// ErrInvalid and changes nothing.
func TestQueueDispatchFromOtherState(t *testing.T) {
	t.Parallel()
	s := openPG(t)
	defer s.Close()
	qCreateTask(t, s, "t")
	qSchedule(t, s, "t", "d0", "d1", "d2")
	qDispatch(t, s, "a", 1)
	qUpsert(t, s, qRec("t", "d2", 1, 3, "running"))
	before := qSnapshot(t, s)
	for _, from := range []string{"pending", "running", "stopped", "schedule", "scheduled_"} {
		p := qDispatchP("b", 10)
		p.FromState = from
		cs, err := s.DispatchDue(context.Background(), p)
		if !errors.Is(err, storage.ErrInvalid) {
			t.Fatalf("DispatchDue from %q = %+v, %v; want ErrInvalid", from, cs, err)
		}
		if len(cs) != 0 {
			t.Fatalf("DispatchDue from %q returned claims %+v with its error", from, cs)
		}
	}
	if d := cmp.Diff(before, qSnapshot(t, s)); d != "" {
		t.Fatalf("a refused dispatch changed the tables (-before +after):\n%s", d)
	}
	checkViews(t, s, "t", map[string]qView{"d0": pendingView(1), "d1": scheduledView(1), "d2": {Run: 1, Seq: 3, State: "running"}})
	mustQueueInvariants(t, s)
}

// TestQueueConcurrentWriters: two dispatching replicas, a replica taking
// over expired leases and renewing them, and two writers (new runs,
// device answers, stops, new devices) work on the same few hundred keys
// at once. Afterwards the invariants hold, the counters equal a recount,
// and no run was dispatched twice (claims and ledger alike).
func TestQueueConcurrentWriters(t *testing.T) {
	t.Parallel()
	s := openPG(t)
	defer s.Close()
	ctx := context.Background()
	keys, iterations := 240, 30
	if n, err := strconv.Atoi(os.Getenv("TASKFLEET_QUEUE_STRESS")); err == nil && n > 0 {
		iterations = n // a longer run by hand; CI runs the default
	}
	tasks := []string{"t", "u"}
	for _, task := range tasks {
		qCreateTask(t, s, task)
		var devs []string
		for i := range keys / 2 {
			devs = append(devs, fmt.Sprintf("d%03d", i))
		}
		qSchedule(t, s, task, devs...)
	}
	// Task v is due first and deleted once its first results are
	// dispatched, with others of them still queued.
	qCreateTask(t, s, "v")
	var early []storage.ResultRecord
	for i := range 40 {
		r := qRec("v", fmt.Sprintf("d%03d", i), 1, 1, "scheduled")
		r.DueAt = qBase.Add(-time.Minute)
		early = append(early, r)
	}
	qUpsert(t, s, early...)
	var vDispatched atomic.Int64
	// retry runs f until it does not fail with ErrRetryable (a deadlock
	// or serialization failure PostgreSQL broke; the contract says retry).
	var retries, takeovers, applied atomic.Int64
	retry := func(f func() error) error {
		for {
			err := f()
			if !errors.Is(err, storage.ErrRetryable) {
				return err
			}
			if retries.Add(1) <= 3 {
				t.Logf("retrying: %v", err)
			}
		}
	}
	var nextRun atomic.Int64
	nextRun.Store(1)
	var mu sync.Mutex
	dispatched := map[string]int{} // task/device/run -> claims from DispatchDue
	dispatches := 0
	// The dispatchers and the sweep run at least iterations rounds and
	// on until the writers (a fixed number of batches) are done.
	var wg, writers sync.WaitGroup
	writersDone := make(chan struct{})
	writersFinished := func() bool {
		select {
		case <-writersDone:
			return true
		default:
			return false
		}
	}
	errc := make(chan error, 16)
	for w, owner := range []string{"a", "b"} {
		wg.Go(func() {
			now := qBase
			for i := 0; i < iterations || !writersFinished(); i++ { // until the writers are done
				p := qDispatchP(owner, 7+w)
				p.Now = &now
				var cs []storage.Claim
				if err := retry(func() (err error) { cs, err = s.DispatchDue(ctx, p); return err }); err != nil {
					errc <- fmt.Errorf("dispatch: %w", err)
					return
				}
				mu.Lock()
				for _, k := range claimKeys(cs) {
					dispatched[k]++
					if strings.HasPrefix(k, "v/") {
						vDispatched.Add(1)
					}
				}
				dispatches += len(cs)
				mu.Unlock()
				if i%10 == 9 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	wg.Go(func() { // the leader's sweep: take over expired leases, renew them
		for i := 0; i < iterations || !writersFinished(); i++ {
			now := qBase.Add(time.Duration(i+2) * time.Minute)
			var cs []storage.Claim
			if err := retry(func() (err error) {
				cs, err = s.ClaimStale(ctx, storage.StaleParams{Owner: "c", State: "pending", Seq: qDispSeq, TTL: 30 * time.Second, Limit: 50, Now: &now})
				return err
			}); err != nil {
				errc <- fmt.Errorf("claim stale: %w", err)
				return
			}
			takeovers.Add(int64(len(cs)))
			if err := retry(func() error {
				_, err := s.RenewClaims(ctx, storage.RenewParams{Owner: "c", State: "pending", Seq: qDispSeq, TTL: 30 * time.Second, Claims: cs, Now: &now})
				return err
			}); err != nil {
				errc <- fmt.Errorf("renew: %w", err)
				return
			}
		}
	})
	writers.Go(func() { // deletes task v once some of it is leased
		// (A bound, so a store that never dispatches v fails below
		// instead of hanging.)
		for i := 0; vDispatched.Load() == 0 && i < 5000; i++ {
			time.Sleep(time.Millisecond)
		}
		if err := retry(func() error { return s.DeleteTask(ctx, storage.DeleteTaskParams{ID: "v"}) }); err != nil {
			errc <- fmt.Errorf("delete task: %w", err)
		}
	})
	writers.Go(func() { // stops or reschedules the runs next in line for dispatch
		rnd := rand.New(rand.NewPCG(7, 42))
		for i := range iterations {
			due, err := s.DueResults(ctx, storage.DueResultsParams{State: "scheduled", Before: qBase, Limit: 6})
			if err != nil {
				errc <- err
				return
			}
			var batch []storage.ResultRecord
			for _, r := range due {
				if rnd.IntN(2) == 0 {
					batch = append(batch, qRec(r.TaskID, r.DeviceID, r.RunID, r.Seq+5, "stopped"))
				} else {
					batch = append(batch, qRec(r.TaskID, r.DeviceID, nextRun.Add(1), 1, "scheduled"))
				}
			}
			if err := retry(func() error {
				n, err := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: batch})
				applied.Add(int64(n))
				return err
			}); err != nil {
				errc <- fmt.Errorf("upsert (iteration %d): %w", i, err)
				return
			}
		}
	})
	for w := range 2 {
		writers.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 42))
			for i := range iterations {
				var batch []storage.ResultRecord
				seen := map[string]bool{}
				for range 12 {
					task := tasks[rnd.IntN(len(tasks))]
					dev := fmt.Sprintf("d%03d", rnd.IntN(keys/2))
					if rnd.IntN(20) == 0 { // a new device
						dev = fmt.Sprintf("n%03d", rnd.IntN(keys/4))
					}
					if seen[task+dev] {
						continue
					}
					seen[task+dev] = true
					cur, err := s.GetResult(ctx, task, dev)
					if errors.Is(err, storage.ErrNotFound) {
						batch = append(batch, qRec(task, dev, nextRun.Add(1), 1, "scheduled"))
						continue
					}
					if err != nil {
						errc <- err
						return
					}
					switch k := rnd.IntN(6); {
					case k <= 1: // a new run
						batch = append(batch, qRec(task, dev, nextRun.Add(1), 1, "scheduled"))
					case k <= 3 && cur.State == "pending": // the device answers
						answer := qRec(task, dev, cur.RunID, cur.Seq+1, []string{"running", "completed"}[k-2])
						answer.RestartRequired = k == 3
						batch = append(batch, answer)
					case k == 4: // a stop
						stop := qRec(task, dev, cur.RunID, cur.Seq+5, "stopped")
						stop.RestartRequired = rnd.IntN(2) == 0
						batch = append(batch, stop)
					default: // a stale or equal record
						batch = append(batch, qRec(task, dev, cur.RunID, cur.Seq, "failed"))
					}
				}
				if err := retry(func() error {
					n, err := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: batch})
					applied.Add(int64(n))
					return err
				}); err != nil {
					errc <- fmt.Errorf("upsert (iteration %d): %w", i, err)
					return
				}
			}
		})
	}
	writers.Wait()
	close(writersDone)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	t.Logf("%d dispatched, %d taken over, %d records applied, %d retries", dispatches, takeovers.Load(), applied.Load(), retries.Load())
	if dispatches == 0 || takeovers.Load() == 0 || applied.Load() == 0 || vDispatched.Load() == 0 {
		t.Fatal("the race did not dispatch, take over and write")
	}
	for k, n := range dispatched {
		if n > 1 {
			t.Errorf("%s dispatched %d times", k, n)
		}
	}
	mustQueueInvariants(t, s)
	for _, table := range []string{"results", "result_queue", "result_leases", "result_deltas"} {
		var n int
		if err := s.DB().Get(&n, `SELECT COUNT(*) FROM `+table+` WHERE task_id = 'v'`); err != nil || n != 0 {
			t.Fatalf("%d rows of the deleted task v in %s (%v)", n, table, err)
		}
	}
	ledger := qLedger(t, s)
	rows := 0
	for k, n := range ledger {
		rows += n
		if n > 1 {
			t.Errorf("dispatch_log has %d rows for %s", n, k)
		}
		if dispatched[k] != 1 {
			t.Errorf("dispatch_log has %s, DispatchDue returned it %d times", k, dispatched[k])
		}
	}
	if rows != dispatches {
		t.Fatalf("dispatch_log has %d rows, DispatchDue returned %d claims", rows, dispatches)
	}
	// Draining the queue dispatches every scheduled result once more at
	// most, and leaves none scheduled.
	for i := 0; ; i++ {
		cs := qDispatch(t, s, "d", 100)
		if len(cs) == 0 {
			break
		}
		if i == 100 {
			t.Fatal("the queue does not drain")
		}
		for _, k := range claimKeys(cs) {
			if ledger[k] > 0 {
				t.Fatalf("%s dispatched again after the race", k)
			}
			ledger[k]++
		}
	}
	mustQueueInvariants(t, s)
	for _, task := range tasks {
		st, err := s.TaskStatistics(ctx, task)
		if err != nil {
			t.Fatal(err)
		}
		if st.ByState["scheduled"] != 0 {
			t.Fatalf("task %s: %d results still scheduled after draining the queue", task, st.ByState["scheduled"])
		}
	}
}

// TestQueueMigrateFromVersion10 builds a version-10 database by hand (the
// embedded migrations 1 to 10), with scheduled, dispatched-and-leased,
// answered and unleased pending results, and opens it (migrating to 11):
// the scheduled results are dispatchable once, the leases are renewable
// by their owner and taken over with epoch+1 once expired, the reads show
// the leased results pending, and the counters do not move.
func TestQueueMigrateFromVersion10(t *testing.T) {
	t.Parallel()
	dsn := pgSchemaDSN(t)
	ctx := context.Background()
	files, err := filepath.Glob(filepath.Join("migrations", "postgres", "*.sql"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if len(files) < 11 {
		t.Fatalf("%d PostgreSQL migrations on disk, want at least 11", len(files))
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
	}
	exec(`CREATE TABLE taskfleet_schema (version integer PRIMARY KEY, name text NOT NULL, applied_at text NOT NULL DEFAULT CURRENT_TIMESTAMP)`)
	for i, f := range files[:10] {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		exec(string(b))
		exec(`INSERT INTO taskfleet_schema (version, name) VALUES ($1, $2)`, i+1, strings.TrimSuffix(filepath.Base(f), ".sql"))
	}
	exec(`INSERT INTO tasks (id, name, search_name, unique_name, application, task_type, kind, group_id, device_id, revision, suspended, created_at, updated_at, body)
VALUES ('t', 'T', 't', NULL, 'app', 'type', 'group', '', '', 4, false, $1, $1, '\x7b7d')`, qBase)
	// Version 10 rows: (device, run, seq, state, lease owner, epoch, lease
	// end, restart).
	until := qBase.Add(time.Minute)
	for _, r := range []struct {
		dev     string
		seq     int64
		state   string
		owner   string
		epoch   int64
		restart bool
	}{
		{"s0", 1, "scheduled", "", 0, false},
		{"s1", 1, "scheduled", "", 0, true},
		{"s2", 1, "scheduled", "old", 3, false}, // rescheduled after an earlier dispatch
		{"p0", qDispSeq, "pending", "a", 1, false},
		{"p1", qDispSeq, "pending", "a", 1, true},
		{"p2", qDispSeq, "pending", "b", 4, false},
		{"c0", 5, "completed", "a", 1, false},
		{"c1", 5, "running", "b", 2, true},
		{"u0", qDispSeq, "pending", "", 0, false}, // pending, never leased
	} {
		exec(`INSERT INTO results (task_id, device_id, run_id, seq, state, due_at, started_at, finished_at, updated_at, progress, message, restart_required, lease_owner, lease_epoch, lease_until)
VALUES ('t', $1, 1, $2, $3, $4, $5, $5, $6, 0, $1, $7, $8, $9, $10)`, r.dev, r.seq, r.state, qBase, time.Time{}.UTC(), qBase.Add(time.Duration(r.seq)*time.Second), r.restart, r.owner, r.epoch, until)
	}
	// The counters as TaskStatistics reads them: results per state, and
	// restarts in all (the dispatch tables count a leased result's
	// restart under scheduled, DispatchDue moving only n).
	counters := func() []string {
		rows, err := db.QueryContext(ctx, `SELECT x FROM (
SELECT state || ' ' || SUM(n) AS x FROM result_deltas WHERE task_id = 't' GROUP BY state HAVING SUM(n) <> 0
UNION ALL SELECT 'restart ' || SUM(restart) FROM result_deltas WHERE task_id = 't') c ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	before := counters()
	if d := cmp.Diff([]string{"completed 1", "pending 4", "restart 3", "running 1", "scheduled 3"}, before); d != "" {
		t.Fatalf("version-10 counters (-want +got):\n%s", d)
	}

	s := open(t, sqlstore.Postgres, dsn)
	defer s.Close()
	if rows := schemaRows(t, s); len(rows) != sqlstore.SchemaVersion() || sqlstore.SchemaVersion() < 11 {
		t.Fatalf("schema rows after the migration: %+v", rows)
	}
	mustQueueInvariants(t, s)
	if d := cmp.Diff(before, counters()); d != "" {
		t.Fatalf("the migration moved the counters (-before +after):\n%s", d)
	}
	want := map[string]qView{
		"s0": scheduledView(1), "s1": {Run: 1, Seq: 1, State: "scheduled", Restart: true}, "s2": scheduledView(1),
		"p0": pendingView(1), "p1": {Run: 1, Seq: qDispSeq, State: "pending", Restart: true}, "p2": pendingView(1),
		"c0": {Run: 1, Seq: 5, State: "completed"}, "c1": {Run: 1, Seq: 5, State: "running", Restart: true},
		"u0": pendingView(1),
	}
	checkViews(t, s, "t", want)
	p0, err := s.GetResult(ctx, "t", "p0")
	if err != nil {
		t.Fatal(err)
	}
	if !p0.UpdatedAt.Equal(qBase.Add(qDispSeq*time.Second)) || p0.Message != "p0" {
		t.Fatalf("migrated lease reads %+v: want its version-10 update time and message", p0)
	}
	_, l := qTables(t, s, "t")
	wantL := []qLease{
		{"t", "p0", 1, qDispSeq, qDispSeq, "pending", "a", 1},
		{"t", "p1", 1, qDispSeq, qDispSeq, "pending", "a", 1},
		{"t", "p2", 1, qDispSeq, qDispSeq, "pending", "b", 4},
	}
	if d := cmp.Diff(wantL, l); d != "" {
		t.Fatalf("migrated lease rows (-want +got):\n%s", d)
	}
	renew := func(owner string, now time.Time, cs ...storage.Claim) []string {
		t.Helper()
		ok, err := s.RenewClaims(ctx, storage.RenewParams{Owner: owner, State: "pending", Seq: qDispSeq, TTL: time.Minute, Claims: cs, Now: &now})
		if err != nil {
			t.Fatal(err)
		}
		return claimKeys(ok)
	}
	claim := func(dev string, epoch int64) storage.Claim {
		return storage.Claim{TaskID: "t", DeviceID: dev, RunID: 1, Seq: qDispSeq, Epoch: epoch}
	}
	// Renewable by their owner with their epoch, by nobody else.
	if d := cmp.Diff([]string{"t/p0/1"}, renew("a", qBase, claim("p0", 1), claim("p2", 4), claim("p1", 2), claim("u0", 0))); d != "" {
		t.Fatalf("renewals by a (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"t/p2/1"}, renew("b", qBase, claim("p2", 4), claim("c1", 2))); d != "" {
		t.Fatalf("renewals by b (-want +got):\n%s", d)
	}
	// p1's lease ends at qBase+1m, p0's and p2's at qBase+1m (renewed
	// from qBase): nothing is stale before then, all three after.
	if took := qStale(t, s, "c", qBase.Add(30*time.Second)); len(took) != 0 {
		t.Fatalf("live migrated leases taken over: %+v", took)
	}
	took := qStale(t, s, "c", qBase.Add(2*time.Minute))
	epochs := map[string]int64{}
	for _, c := range took {
		epochs[c.DeviceID] = c.Epoch
	}
	if d := cmp.Diff(map[string]int64{"p0": 2, "p1": 2, "p2": 5}, epochs); d != "" {
		t.Fatalf("epochs of the expired migrated leases taken over (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"t/p0/1", "t/p2/1"}, renew("c", qBase.Add(2*time.Minute), claim("p0", 2), claim("p2", 5), claim("p1", 1))); d != "" {
		t.Fatalf("renewals by the new owner (-want +got):\n%s", d)
	}
	// The scheduled results are dispatched once.
	if d := cmp.Diff([]string{"t/s0/1", "t/s1/1", "t/s2/1"}, claimKeys(qDispatch(t, s, "d", 100))); d != "" {
		t.Fatalf("dispatch after the migration (-want +got):\n%s", d)
	}
	if more := qDispatch(t, s, "d", 100); len(more) != 0 {
		t.Fatalf("second dispatch after the migration: %+v", more)
	}
	want["s0"], want["s1"], want["s2"] = pendingView(1), qView{Run: 1, Seq: qDispSeq, State: "pending", Restart: true}, pendingView(1)
	checkViews(t, s, "t", want)
	// A migrated lease answered by its device.
	if n := qUpsert(t, s, qRec("t", "p1", 1, qDispSeq+1, "completed")); n != 1 {
		t.Fatalf("answer to a migrated lease applied %d", n)
	}
	want["p1"] = qView{Run: 1, Seq: qDispSeq + 1, State: "completed"}
	checkViews(t, s, "t", want)
	mustQueueInvariants(t, s)
}

// TestQueueIngestPaths: PostgreSQL writes a batch by COPY (new devices),
// by the upsert (existing ones, and new ones the sample missed), or, when
// COPY meets a device that exists, again by the upsert alone in a new
// transaction. Each path keeps the dispatch tables in step: afterwards
// the invariants hold and one dispatch sends every queued run exactly
// once, the batch's new run where it has one.
func TestQueueIngestPaths(t *testing.T) {
	t.Parallel()
	dev := func(i int) string { return fmt.Sprintf("d%05d", i) }
	span := func(from, to int) []int {
		var out []int
		for i := from; i < to; i++ {
			out = append(out, i)
		}
		return out
	}
	cat := func(parts ...[]int) []int { return slices.Concat(parts...) }
	// Devices 0..999 are scheduled (run 1) before each case, and 0..299
	// dispatched; every record of a case schedules run 2.
	for _, tc := range []struct {
		name string
		devs []int
	}{
		{"all new (COPY)", span(1000, 2000)},
		{"all existing, leased and queued (upsert)", span(0, 1000)},
		{"one new hidden among existing (upsert inserts)", cat(span(0, 501), []int{5007}, span(501, 1000))},
		{"one leased hidden among new (COPY fails, upsert alone)", cat(span(1000, 1501), []int{7}, span(1501, 2000))},
		{"one queued hidden among new (COPY fails, upsert alone)", cat(span(1000, 1501), []int{707}, span(1501, 2000))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openPG(t)
			defer s.Close()
			qCreateTask(t, s, "t")
			var devs []string
			for _, i := range span(0, 1000) {
				devs = append(devs, dev(i))
			}
			qSchedule(t, s, "t", devs...)
			if cs := qDispatch(t, s, "a", 300); len(cs) != 300 || cs[299].DeviceID != dev(299) {
				t.Fatalf("setup dispatch: %d claims", len(cs))
			}
			var batch []storage.ResultRecord
			run := map[int]int64{}
			for _, i := range span(0, 1000) {
				run[i] = 1
			}
			for _, i := range tc.devs {
				batch = append(batch, qRec("t", dev(i), 2, 1, "scheduled"))
				run[i] = 2
			}
			if n := qUpsert(t, s, batch...); n != len(batch) {
				t.Fatalf("UpsertResults applied %d, want %d", n, len(batch))
			}
			mustQueueInvariants(t, s)
			// Due now: every device not leased by the setup dispatch,
			// and every device of the batch.
			var want []string
			for i, r := range run {
				if i >= 300 || r == 2 {
					want = append(want, fmt.Sprintf("t/%s/%d", dev(i), r))
				}
			}
			sort.Strings(want)
			if d := cmp.Diff(want, claimKeys(qDispatch(t, s, "b", storage.MaxListLimit))); d != "" {
				t.Fatalf("dispatch after the batch (-want +got):\n%s", d)
			}
			if more := qDispatch(t, s, "b", 10); len(more) != 0 {
				t.Fatalf("dispatched again: %+v", more)
			}
			st, err := s.TaskStatistics(context.Background(), "t")
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(storage.Statistics{ByState: map[string]int{"pending": len(run)}, Total: len(run)}, st); d != "" {
				t.Fatalf("statistics (-want +got):\n%s", d)
			}
			mustQueueInvariants(t, s)
		})
	}
}
