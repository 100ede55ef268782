// Package storagetest is the conformance suite every storage.Store must
// pass. A backend calls Run from a test with a Harness that makes empty
// stores:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, storagetest.Harness{
//			New: func(t *testing.T) storage.Store { return memstore.New() },
//		})
//	}
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/taskfleet/taskfleet/storage"
)

// Harness tells the suite how to make stores and what they support.
type Harness struct {
	// New returns a new, empty store. The suite closes it at the end of
	// the test. Each subtest gets its own store, so New must be safe for
	// concurrent use when Features.Sequential is false.
	New func(t *testing.T) storage.Store
	// Features are the backend's capability flags.
	Features Features
}

// Features are capability flags that decide which tests run and how big.
type Features struct {
	// Sequential runs the subtests one after another (for backends whose
	// New shares one database between subtests).
	Sequential bool
	// LargeBodyBytes is the size of the large settings blob round-tripped
	// (default 4 MiB).
	LargeBodyBytes int
	// Writers is the number of concurrent writers in the concurrency
	// tests (default 8).
	Writers int
	// Claimer: the store implements storage.Claimer, so the claim, lease
	// expiry, takeover and fencing sections run. The suite fails when the
	// flag and the store disagree.
	Claimer bool
	// Hierarchy: the store implements storage.HierarchyStore, so the
	// hierarchy sections run. The suite fails when the flag and the store
	// disagree.
	Hierarchy bool
	// DeviceKeys: the store implements storage.DeviceKeyStore, so the
	// device key sections run. The suite fails when the flag and the
	// store disagree.
	DeviceKeys bool
}

// Run runs the whole conformance suite.
func Run(t *testing.T, h Harness) {
	if h.Features.LargeBodyBytes == 0 {
		h.Features.LargeBodyBytes = 4 << 20
	}
	if h.Features.Writers == 0 {
		h.Features.Writers = 8
	}
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store, Features)
	}{
		{"TaskRoundTrip", testTaskRoundTrip},
		{"CreateConflicts", testCreateConflicts},
		{"NotFound", testNotFound},
		{"UpdateOptimisticConcurrency", testUpdateCAS},
		{"UpdateUniqueName", testUpdateUniqueName},
		{"Delete", testDelete},
		{"ListFiltersOrdersPages", testList},
		{"ListBadArguments", testListBad},
		{"Revisions", testRevisions},
		{"AllocateRunID", testAllocateRunID},
		{"ResultsIdempotentAndMonotonic", testResults},
		{"ResultsListAndDue", testResultsListDue},
		{"StatisticsCounters", testStatisticsCounters},
		{"Events", testEvents},
		{"CallerBuffersReused", testCallerBuffersReused},
		{"EngineState", testEngineState},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"ConcurrentResults", testConcurrentResults},
		{"UTCRoundTrip", testUTC},
		{"UniqueNameLookup", testUniqueNameLookup},
		{"Closed", testClosed},
		{"LeaderElection", tb(testLeaderElection)},
		{"LeaderConcurrent", tb(testLeaderConcurrent)},
		{"ClaimerFlag", testClaimerFlag},
		{"HierarchyFlag", testHierarchyFlag},
		{"DeviceKeysFlag", testDeviceKeysFlag},
	}
	if h.Features.DeviceKeys {
		tests = append(tests, []struct {
			name string
			fn   func(*testing.T, storage.Store, Features)
		}{
			{"DeviceKeys", testDeviceKeys},
			{"DeviceKeysConcurrent", testDeviceKeysConcurrent},
		}...)
	}
	if h.Features.Hierarchy {
		tests = append(tests, []struct {
			name string
			fn   func(*testing.T, storage.Store, Features)
		}{
			{"HierarchyRoundTrip", testHierarchyRoundTrip},
			{"HierarchyIsolation", testHierarchyIsolation},
			{"HierarchyInvalid", testHierarchyInvalid},
			{"HierarchyConcurrentReports", testHierarchyConcurrentReports},
		}...)
	}
	if h.Features.Claimer {
		tests = append(tests, []struct {
			name string
			fn   func(*testing.T, storage.Store, Features)
		}{
			{"ClaimOnce", tb(testClaimOnce)},
			{"LeaseExpiryAndTakeover", tb(testLeaseExpiryAndTakeover)},
			{"Fencing", tb(testFencing)},
		}...)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !h.Features.Sequential {
				t.Parallel()
			}
			s := h.New(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s, h.Features)
		})
	}
}

// section is a suite section written against testing.TB, so the suite's
// own tests can run it against a recorder.
type section func(testing.TB, storage.Store, Features)

func tb(fn section) func(*testing.T, storage.Store, Features) {
	return func(t *testing.T, s storage.Store, f Features) { fn(t, s, f) }
}

// testClaimerFlag fails when Features.Claimer and the store disagree, so a
// backend cannot leave its claim layer untested by accident.
func testClaimerFlag(t *testing.T, s storage.Store, f Features) {
	if _, ok := s.(storage.Claimer); ok != f.Claimer {
		t.Fatalf("%T implements storage.Claimer: %v, but Features.Claimer is %v", s, ok, f.Claimer)
	}
}

var base = time.Date(2026, 11, 20, 8, 30, 15, 123456000, time.UTC)

func ctx() context.Context { return context.Background() }

// NewTaskRecord returns a valid record for tests (exported for backends'
// own tests).
func NewTaskRecord(id, name string) storage.TaskRecord {
	return storage.TaskRecord{
		ID:          id,
		Name:        name,
		SearchName:  strings.ToLower(name),
		UniqueName:  "global/" + strings.ToLower(name),
		Application: "Endpoint Security",
		TaskType:    "virus_scan",
		Kind:        "group",
		GroupID:     "g1",
		Revision:    1,
		CreatedAt:   base,
		UpdatedAt:   base,
		Body:        []byte(fmt.Sprintf(`{"name":%q}`, name)),
	}
}

func firstRevision(t storage.TaskRecord) storage.RevisionRecord {
	return storage.RevisionRecord{TaskID: t.ID, Number: 1, Author: "admin", At: t.CreatedAt, Action: "create", Body: t.Body, Diff: []byte(`[]`)}
}

func create(t *testing.T, s storage.Store, rec storage.TaskRecord) {
	t.Helper()
	if err := s.CreateTask(ctx(), storage.CreateTaskParams{Task: rec, Revision: firstRevision(rec)}); err != nil {
		t.Fatalf("CreateTask(%s): %v", rec.ID, err)
	}
}

func update(s storage.Store, rec storage.TaskRecord, expect int64, author string) error {
	rec.Revision = expect + 1
	return s.UpdateTask(ctx(), storage.UpdateTaskParams{
		Task: rec, ExpectRevision: expect,
		Revision: storage.RevisionRecord{TaskID: rec.ID, Number: expect + 1, Author: author, At: rec.UpdatedAt, Action: "update", Body: rec.Body, Diff: []byte(`[{"path":"name"}]`)},
	})
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one matching %v", what, err, target)
	}
}

// emptyAsNil compares nil and empty slices/maps as equal.
var emptyAsNil = cmpopts.EquateEmpty()

// ignoreBody leaves large bodies to bytes.Equal (cmp walks them byte by byte).
var ignoreBody = cmp.FilterPath(func(p cmp.Path) bool {
	f, ok := p.Last().(cmp.StructField)
	return ok && f.Name() == "Body"
}, cmp.Ignore())

func testTaskRoundTrip(t *testing.T, s storage.Store, f Features) {
	rec := NewTaskRecord("t-1", "Ежедневная проверка 🛡 — Überprüfung")
	rec.Kind, rec.GroupID, rec.DeviceID = "local", "", "dev-ü-1"
	rec.Suspended = true
	big := make([]byte, 0, f.LargeBodyBytes+64)
	big = append(big, `{"blob":"`...)
	for len(big) < f.LargeBodyBytes {
		big = append(big, "abcdefghijklmnopqrstuvwxyzéß"...)
	}
	big = append(big, `"}`...)
	rec.Body = big
	create(t, s, rec)
	got, err := s.GetTask(ctx(), rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.Body, got.Body) {
		t.Fatalf("GetTask: body of %d bytes came back as %d different bytes", len(rec.Body), len(got.Body))
	}
	if d := cmp.Diff(rec, got, emptyAsNil, ignoreBody); d != "" {
		t.Fatalf("GetTask mismatch (-want +got):\n%s", d)
	}
	// The store must not alias the caller's memory.
	got.Body[10] = 'X'
	again, _ := s.GetTask(ctx(), rec.ID)
	if again.Body[10] == 'X' {
		t.Fatal("GetTask returned memory shared with the store")
	}
	rev, err := s.GetRevision(ctx(), rec.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.Body, rev.Body) {
		t.Fatal("GetRevision: body differs")
	}
	if d := cmp.Diff(firstRevision(rec), rev, emptyAsNil, ignoreBody); d != "" {
		t.Fatalf("GetRevision mismatch (-want +got):\n%s", d)
	}
}

func testCreateConflicts(t *testing.T, s storage.Store, _ Features) {
	a := NewTaskRecord("a", "Scan")
	create(t, s, a)
	dupID := NewTaskRecord("a", "Other")
	wantErr(t, s.CreateTask(ctx(), storage.CreateTaskParams{Task: dupID, Revision: firstRevision(dupID)}), storage.ErrConflict, "create with duplicate id")
	dupName := NewTaskRecord("b", "Scan")
	wantErr(t, s.CreateTask(ctx(), storage.CreateTaskParams{Task: dupName, Revision: firstRevision(dupName)}), storage.ErrConflict, "create with duplicate unique name")
	if _, err := s.GetTask(ctx(), "b"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a refused create left a task behind: %v", err)
	}
	// Empty UniqueName is never unique-checked.
	for _, id := range []string{"c", "d"} {
		r := NewTaskRecord(id, "Same")
		r.UniqueName = ""
		create(t, s, r)
	}
	got, err := s.GetTask(ctx(), "a")
	if err != nil || got.Name != "Scan" {
		t.Fatalf("original task changed by refused creates: %+v %v", got, err)
	}
}

func testNotFound(t *testing.T, s storage.Store, _ Features) {
	_, err := s.GetTask(ctx(), "missing")
	wantErr(t, err, storage.ErrNotFound, "GetTask")
	wantErr(t, update(s, NewTaskRecord("missing", "x"), 1, "a"), storage.ErrNotFound, "UpdateTask")
	wantErr(t, s.DeleteTask(ctx(), storage.DeleteTaskParams{ID: "missing"}), storage.ErrNotFound, "DeleteTask")
	_, err = s.GetRevision(ctx(), "missing", 1)
	wantErr(t, err, storage.ErrNotFound, "GetRevision")
	_, err = s.AllocateRunID(ctx(), "missing")
	wantErr(t, err, storage.ErrNotFound, "AllocateRunID")
	_, err = s.GetResult(ctx(), "missing", "d")
	wantErr(t, err, storage.ErrNotFound, "GetResult")
	revs, err := s.ListRevisions(ctx(), storage.ListRevisionsParams{TaskID: "missing"})
	if err != nil || len(revs) != 0 {
		t.Fatalf("ListRevisions of unknown task = %v, %v; want empty, nil", revs, err)
	}
	st, err := s.TaskStatistics(ctx(), "missing")
	if err != nil || st.Total != 0 {
		t.Fatalf("TaskStatistics of unknown task = %+v, %v", st, err)
	}
	create(t, s, NewTaskRecord("t", "T"))
	_, err = s.GetRevision(ctx(), "t", 2)
	wantErr(t, err, storage.ErrNotFound, "GetRevision of a revision not yet written")
}

func testUpdateCAS(t *testing.T, s storage.Store, _ Features) {
	rec := NewTaskRecord("t", "Scan")
	create(t, s, rec)
	rec.Body = []byte(`{"name":"Scan","v":2}`)
	rec.UpdatedAt = base.Add(time.Minute)
	if err := update(s, rec, 1, "alice"); err != nil {
		t.Fatal(err)
	}
	stale := rec
	stale.Body = []byte(`{"stale":true}`)
	wantErr(t, update(s, stale, 1, "bob"), storage.ErrConflict, "update with a stale revision")
	got, _ := s.GetTask(ctx(), "t")
	if got.Revision != 2 || string(got.Body) != `{"name":"Scan","v":2}` {
		t.Fatalf("after refused update: revision %d body %s", got.Revision, got.Body)
	}
	revs, _ := s.ListRevisions(ctx(), storage.ListRevisionsParams{TaskID: "t"})
	if len(revs) != 2 || revs[1].Author != "alice" {
		t.Fatalf("revisions after refused update = %+v", revs)
	}
}

func testUpdateUniqueName(t *testing.T, s storage.Store, _ Features) {
	a, b := NewTaskRecord("a", "Alpha"), NewTaskRecord("b", "Beta")
	create(t, s, a)
	create(t, s, b)
	b2 := b
	b2.Name, b2.SearchName, b2.UniqueName = "Alpha", "alpha", a.UniqueName
	wantErr(t, update(s, b2, 1, "x"), storage.ErrConflict, "rename onto a taken name")
	a2 := a
	a2.Name, a2.SearchName, a2.UniqueName = "Gamma", "gamma", "global/gamma"
	if err := update(s, a2, 1, "x"); err != nil {
		t.Fatal(err)
	}
	// The old name is free now.
	if err := update(s, b2, 1, "x"); err != nil {
		t.Fatalf("rename onto a freed name: %v", err)
	}
}

func testDelete(t *testing.T, s storage.Store, _ Features) {
	rec := NewTaskRecord("t", "Scan")
	create(t, s, rec)
	if _, err := s.UpsertResults(ctx(), storage.UpsertResultsParams{Results: []storage.ResultRecord{{TaskID: "t", DeviceID: "d1", RunID: 1, State: "completed", UpdatedAt: base}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendEvents(ctx(), storage.AppendEventsParams{Events: []storage.EventRecord{{TaskID: "t", At: base, Level: "result", Severity: "info", Message: "ok"}}}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.DeleteTask(ctx(), storage.DeleteTaskParams{ID: "t", ExpectRevision: 7}), storage.ErrConflict, "delete with a stale revision")
	if err := s.DeleteTask(ctx(), storage.DeleteTaskParams{ID: "t", ExpectRevision: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := s.GetTask(ctx(), "t")
	wantErr(t, err, storage.ErrNotFound, "GetTask after delete")
	if revs, _ := s.ListRevisions(ctx(), storage.ListRevisionsParams{TaskID: "t"}); len(revs) != 0 {
		t.Fatalf("revisions survive delete: %v", revs)
	}
	if st, _ := s.TaskStatistics(ctx(), "t"); st.Total != 0 {
		t.Fatalf("results survive delete: %+v", st)
	}
	if ev, _ := s.ListEvents(ctx(), storage.ListEventsParams{TaskID: "t"}); len(ev) != 0 {
		t.Fatalf("events survive delete: %v", ev)
	}
	// The name is free again, and the id can be reused.
	create(t, s, rec)
	if id, err := s.AllocateRunID(ctx(), "t"); err != nil || id != 1 {
		t.Fatalf("AllocateRunID on a re-created task = %d, %v; want 1", id, err)
	}
	// Results for a deleted task are ignored.
	_ = s.DeleteTask(ctx(), storage.DeleteTaskParams{ID: "t"})
	n, err := s.UpsertResults(ctx(), storage.UpsertResultsParams{Results: []storage.ResultRecord{{TaskID: "t", DeviceID: "d1", RunID: 2, State: "completed"}}})
	if err != nil || n != 0 {
		t.Fatalf("UpsertResults for a deleted task = %d, %v; want 0, nil", n, err)
	}
}

func listAll(t *testing.T, s storage.Store, p storage.ListTasksParams) []string {
	t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("pagination does not end")
		}
		page, err := s.ListTasks(ctx(), p)
		if err != nil {
			t.Fatal(err)
		}
		if p.Limit > 0 && len(page.Tasks) > p.Limit {
			t.Fatalf("page of %d tasks exceeds limit %d", len(page.Tasks), p.Limit)
		}
		for _, r := range page.Tasks {
			ids = append(ids, r.ID)
		}
		if page.Next == "" {
			return ids
		}
		p.After = page.Next
	}
}

func testList(t *testing.T, s storage.Store, _ Features) {
	names := []string{"beta", "Alpha", "gamma", "alpha-2", "Ωmega", "delta", "Epsilon", "zeta"}
	for i, n := range names {
		r := NewTaskRecord(fmt.Sprintf("id-%02d", i), n)
		r.CreatedAt = base.Add(time.Duration(len(names)-i) * time.Second)
		if i%2 == 0 {
			r.Application = "Network Agent"
		}
		if i%3 == 0 {
			r.Kind = "global"
			r.GroupID = ""
		}
		create(t, s, r)
	}
	byName := []string{"id-01", "id-06", "id-03", "id-00", "id-05", "id-02", "id-07", "id-04"} // byte order: A.., E.., a.., b.., d.., g.., z.., Ω..
	for _, limit := range []int{1, 3, 100} {
		got := listAll(t, s, storage.ListTasksParams{Limit: limit})
		if d := cmp.Diff(byName, got); d != "" {
			t.Fatalf("by name, limit %d (-want +got):\n%s", limit, d)
		}
		desc := listAll(t, s, storage.ListTasksParams{Limit: limit, Descending: true})
		rev := append([]string(nil), byName...)
		for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
			rev[i], rev[j] = rev[j], rev[i]
		}
		if d := cmp.Diff(rev, desc); d != "" {
			t.Fatalf("by name descending, limit %d (-want +got):\n%s", limit, d)
		}
	}
	byCreated := listAll(t, s, storage.ListTasksParams{Order: storage.OrderByCreatedAt, Limit: 2})
	if d := cmp.Diff([]string{"id-07", "id-06", "id-05", "id-04", "id-03", "id-02", "id-01", "id-00"}, byCreated); d != "" {
		t.Fatalf("by created_at (-want +got):\n%s", d)
	}
	byID := listAll(t, s, storage.ListTasksParams{Order: storage.OrderByID, Limit: 5})
	if len(byID) != 8 || byID[0] != "id-00" || byID[7] != "id-07" {
		t.Fatalf("by id = %v", byID)
	}
	filtered := listAll(t, s, storage.ListTasksParams{Application: "Network Agent", Kind: "global"})
	if d := cmp.Diff([]string{"id-06", "id-00"}, filtered); d != "" {
		t.Fatalf("filter application+kind (-want +got):\n%s", d)
	}
	contains := listAll(t, s, storage.ListTasksParams{NameContains: "alpha"})
	if d := cmp.Diff([]string{"id-01", "id-03"}, contains); d != "" {
		t.Fatalf("name contains (-want +got):\n%s", d)
	}
	uni := listAll(t, s, storage.ListTasksParams{NameContains: "ωm"})
	if d := cmp.Diff([]string{"id-04"}, uni); d != "" {
		t.Fatalf("unicode name contains (-want +got):\n%s", d)
	}
	if got := listAll(t, s, storage.ListTasksParams{GroupID: "nope"}); len(got) != 0 {
		t.Fatalf("filter on unknown group = %v", got)
	}
}

func testListBad(t *testing.T, s storage.Store, _ Features) {
	create(t, s, NewTaskRecord("a", "A"))
	_, err := s.ListTasks(ctx(), storage.ListTasksParams{After: "%%%not-a-cursor"})
	wantErr(t, err, storage.ErrInvalid, "ListTasks with a bad cursor")
	_, err = s.ListTasks(ctx(), storage.ListTasksParams{Order: "color"})
	wantErr(t, err, storage.ErrInvalid, "ListTasks with an unknown order")
}

func testRevisions(t *testing.T, s storage.Store, _ Features) {
	rec := NewTaskRecord("t", "T")
	create(t, s, rec)
	for i := int64(1); i < 25; i++ {
		rec.Body = []byte(fmt.Sprintf(`{"v":%d}`, i))
		rec.UpdatedAt = base.Add(time.Duration(i) * time.Minute)
		if err := update(s, rec, i, fmt.Sprintf("user%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var nums []int64
	after := int64(0)
	for {
		page, err := s.ListRevisions(ctx(), storage.ListRevisionsParams{TaskID: "t", AfterNumber: after, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 7 {
			t.Fatalf("page of %d revisions exceeds limit 7", len(page))
		}
		for _, r := range page {
			nums = append(nums, r.Number)
		}
		after = page[len(page)-1].Number
	}
	if len(nums) != 25 {
		t.Fatalf("got %d revisions, want 25: %v", len(nums), nums)
	}
	for i, n := range nums {
		if n != int64(i+1) {
			t.Fatalf("revisions out of order: %v", nums)
		}
	}
	r13, err := s.GetRevision(ctx(), "t", 13)
	if err != nil || string(r13.Body) != `{"v":12}` || r13.Author != "user12" || r13.Action != "update" {
		t.Fatalf("GetRevision 13 = %+v, %v", r13, err)
	}
}

func testAllocateRunID(t *testing.T, s storage.Store, f Features) {
	create(t, s, NewTaskRecord("t", "T"))
	create(t, s, NewTaskRecord("u", "U"))
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for range f.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				id, err := s.AllocateRunID(ctx(), "t")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[id] {
					t.Errorf("run id %d allocated twice", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i := int64(1); i <= int64(20*f.Writers); i++ {
		if !seen[i] {
			t.Fatalf("run ids are not contiguous from 1: %d missing", i)
		}
	}
	if id, err := s.AllocateRunID(ctx(), "u"); err != nil || id != 1 {
		t.Fatalf("run ids are not per task: got %d, %v", id, err)
	}
}

func testResults(t *testing.T, s storage.Store, _ Features) {
	create(t, s, NewTaskRecord("t", "T"))
	up := func(rs ...storage.ResultRecord) int {
		t.Helper()
		n, err := s.UpsertResults(ctx(), storage.UpsertResultsParams{Results: rs})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	r := func(dev string, run, seq int64, state string) storage.ResultRecord {
		return storage.ResultRecord{TaskID: "t", DeviceID: dev, RunID: run, Seq: seq, State: state, UpdatedAt: base.Add(time.Duration(run*10+seq) * time.Second), Progress: int(seq * 10), Message: "msg " + state}
	}
	if n := up(r("d1", 1, 1, "running"), r("d2", 1, 1, "running"), r("d3", 1, 1, "pending")); n != 3 {
		t.Fatalf("first batch applied %d, want 3", n)
	}
	if n := up(r("d1", 1, 1, "running")); n != 0 {
		t.Fatalf("a retried delivery applied %d, want 0", n)
	}
	done := r("d1", 1, 2, "completed")
	done.FinishedAt = base.Add(time.Hour)
	if n := up(done, r("d2", 1, 2, "failed")); n != 2 {
		t.Fatalf("newer seq applied %d, want 2", n)
	}
	if n := up(r("d1", 1, 1, "running")); n != 0 {
		t.Fatalf("an older seq regressed a result (%d applied)", n)
	}
	got, err := s.GetResult(ctx(), "t", "d1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(done, got); d != "" {
		t.Fatalf("GetResult (-want +got):\n%s", d)
	}
	rr := r("d2", 2, 1, "restart_required")
	rr.RestartRequired = true
	if n := up(rr, r("d3", 0, 5, "running")); n != 1 {
		t.Fatalf("new run applied %d (want 1: run 0 is older than run 1)", n)
	}
	st, err := s.TaskStatistics(ctx(), "t")
	if err != nil {
		t.Fatal(err)
	}
	want := storage.Statistics{ByState: map[string]int{"completed": 1, "restart_required": 1, "pending": 1}, Total: 3, RestartRequired: 1}
	if d := cmp.Diff(want, st, emptyAsNil); d != "" {
		t.Fatalf("TaskStatistics (-want +got):\n%s", d)
	}
	// Duplicates inside one batch: the newest wins, applied once each.
	if n := up(r("d4", 1, 1, "running"), r("d4", 1, 3, "completed"), r("d4", 1, 2, "running")); n != 2 {
		t.Fatalf("in-batch sequence applied %d, want 2", n)
	}
	if g, _ := s.GetResult(ctx(), "t", "d4"); g.State != "completed" {
		t.Fatalf("in-batch newest did not win: %+v", g)
	}
}

func testResultsListDue(t *testing.T, s storage.Store, _ Features) {
	create(t, s, NewTaskRecord("t", "T"))
	create(t, s, NewTaskRecord("u", "U"))
	var batch []storage.ResultRecord
	for i := range 50 {
		state := "scheduled"
		if i%5 == 0 {
			state = "completed"
		}
		batch = append(batch, storage.ResultRecord{TaskID: "t", DeviceID: fmt.Sprintf("dev-%03d", i), State: state, DueAt: base.Add(time.Duration(50-i) * time.Minute), UpdatedAt: base})
	}
	batch = append(batch, storage.ResultRecord{TaskID: "u", DeviceID: "dev-000", State: "scheduled", DueAt: base.Add(10 * time.Minute), UpdatedAt: base})
	if _, err := s.UpsertResults(ctx(), storage.UpsertResultsParams{Results: batch}); err != nil {
		t.Fatal(err)
	}
	var devs []string
	after := ""
	for {
		page, err := s.ListResults(ctx(), storage.ListResultsParams{TaskID: "t", States: []string{"completed"}, AfterDevice: after, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			devs = append(devs, r.DeviceID)
		}
		after = page[len(page)-1].DeviceID
	}
	if d := cmp.Diff([]string{"dev-000", "dev-005", "dev-010", "dev-015", "dev-020", "dev-025", "dev-030", "dev-035", "dev-040", "dev-045"}, devs); d != "" {
		t.Fatalf("ListResults completed (-want +got):\n%s", d)
	}
	all, _ := s.ListResults(ctx(), storage.ListResultsParams{TaskID: "t", Limit: 1000})
	if len(all) != 50 {
		t.Fatalf("ListResults all = %d, want 50", len(all))
	}
	due, err := s.DueResults(ctx(), storage.DueResultsParams{State: "scheduled", Before: base.Add(10 * time.Minute), Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range due {
		got = append(got, r.TaskID+"/"+r.DeviceID)
	}
	// due at 1..10 minutes: t dev-049..dev-040 minus completed dev-045, dev-040 (10 min) and u dev-000 (10 min).
	want := []string{"t/dev-049", "t/dev-048", "t/dev-047", "t/dev-046", "t/dev-044", "t/dev-043", "t/dev-042", "t/dev-041", "u/dev-000"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("DueResults (-want +got):\n%s", d)
	}
	few, _ := s.DueResults(ctx(), storage.DueResultsParams{State: "scheduled", Before: base.Add(time.Hour), Limit: 2})
	if len(few) != 2 || few[0].DeviceID != "dev-049" {
		t.Fatalf("DueResults limit 2 = %+v", few)
	}
}

func testEvents(t *testing.T, s storage.Store, _ Features) {
	create(t, s, NewTaskRecord("t", "T"))
	var evs []storage.EventRecord
	for i := range 30 {
		evs = append(evs, storage.EventRecord{TaskID: "t", DeviceID: fmt.Sprintf("d%d", i%3), RunID: 1, At: base.Add(time.Duration(i) * time.Hour), Level: "progress", Severity: "info", Message: fmt.Sprintf("event %d ✓", i), Key: fmt.Sprintf("k%d", i)})
	}
	n, err := s.AppendEvents(ctx(), storage.AppendEventsParams{Events: evs})
	if err != nil || n != 30 {
		t.Fatalf("AppendEvents = %d, %v", n, err)
	}
	n, err = s.AppendEvents(ctx(), storage.AppendEventsParams{Events: append(evs[:2:2], storage.EventRecord{TaskID: "t", At: base, Level: "info", Severity: "warning", Message: "no key"}, storage.EventRecord{TaskID: "t", At: base, Level: "info", Severity: "warning", Message: "no key"}, storage.EventRecord{TaskID: "nope", At: base, Message: "x"})})
	if err != nil || n != 2 {
		t.Fatalf("AppendEvents with duplicate keys = %d, %v; want 2 (keyless events are never de-duplicated, unknown tasks ignored)", n, err)
	}
	all, _ := s.ListEvents(ctx(), storage.ListEventsParams{TaskID: "t", Limit: 1000})
	if len(all) != 32 {
		t.Fatalf("ListEvents = %d events, want 32", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Fatalf("event ids not increasing: %d then %d", all[i-1].ID, all[i].ID)
		}
	}
	if all[0].Message != "event 0 ✓" || !all[0].At.Equal(base) || all[0].Key != "k0" {
		t.Fatalf("first event = %+v", all[0])
	}
	win, _ := s.ListEvents(ctx(), storage.ListEventsParams{TaskID: "t", DeviceID: "d1", From: base.Add(4 * time.Hour), To: base.Add(13 * time.Hour)})
	var msgs []string
	for _, e := range win {
		msgs = append(msgs, e.Message)
	}
	if d := cmp.Diff([]string{"event 4 ✓", "event 7 ✓", "event 10 ✓"}, msgs); d != "" {
		t.Fatalf("ListEvents window (-want +got):\n%s", d)
	}
	page, _ := s.ListEvents(ctx(), storage.ListEventsParams{TaskID: "t", AfterID: all[27].ID, Limit: 3})
	if len(page) != 3 || page[0].ID != all[28].ID {
		t.Fatalf("ListEvents after id = %+v", page)
	}
	purged, err := s.PurgeEvents(ctx(), storage.PurgeEventsParams{TaskID: "t", Before: base.Add(10 * time.Hour)})
	if err != nil || purged != 12 {
		t.Fatalf("PurgeEvents = %d, %v; want 12 (10 keyed + 2 keyless at base)", purged, err)
	}
	rest, _ := s.ListEvents(ctx(), storage.ListEventsParams{TaskID: "t", Limit: 1000})
	if len(rest) != 20 || rest[0].Message != "event 10 ✓" {
		t.Fatalf("after purge: %d events, first %+v", len(rest), rest[0])
	}
	// A late duplicate of a purged event does not come back.
	if n, _ := s.AppendEvents(ctx(), storage.AppendEventsParams{Events: evs[:1]}); n != 0 {
		t.Fatal("a purged event's key was accepted again")
	}
	testEventsOneBatch(t, s)
}

// testCallerBuffersReused: a store copies what it keeps. The Manager
// reuses the slices it passes to UpsertResults and AppendEvents for its
// next batch, so a store that kept them would see its stored results and
// history change under it.
func testCallerBuffersReused(t *testing.T, s storage.Store, _ Features) {
	create(t, s, NewTaskRecord("t", "T"))
	rs := []storage.ResultRecord{{TaskID: "t", DeviceID: "d1", RunID: 1, Seq: 1, State: "running", UpdatedAt: base, Message: "first"}}
	if _, err := s.UpsertResults(ctx(), storage.UpsertResultsParams{Results: rs}); err != nil {
		t.Fatal(err)
	}
	evs := []storage.EventRecord{{TaskID: "t", DeviceID: "d1", RunID: 1, At: base, Level: "progress", Severity: "info", Message: "first", Key: "k1"}}
	if _, err := s.AppendEvents(ctx(), storage.AppendEventsParams{Events: evs}); err != nil {
		t.Fatal(err)
	}
	// The caller's next batch overwrites its buffers.
	rs[0] = storage.ResultRecord{TaskID: "t", DeviceID: "d2", RunID: 9, Seq: 9, State: "failed", UpdatedAt: base.Add(time.Hour), Message: "reused"}
	evs[0] = storage.EventRecord{TaskID: "t", DeviceID: "d2", RunID: 9, At: base.Add(time.Hour), Level: "error", Severity: "critical", Message: "reused", Key: "k2"}
	got, err := s.ListResults(ctx(), storage.ListResultsParams{TaskID: "t", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].DeviceID != "d1" || got[0].State != "running" || got[0].Message != "first" || got[0].RunID != 1 {
		t.Fatalf("results after the caller reused its buffer: %+v, want d1's running result of run 1", got)
	}
	ev, err := s.ListEvents(ctx(), storage.ListEventsParams{TaskID: "t", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 1 || ev[0].DeviceID != "d1" || ev[0].Message != "first" || ev[0].Key != "k1" || ev[0].Level != "progress" {
		t.Fatalf("events after the caller reused its buffer: %+v, want d1's first event", ev)
	}
}

// testEventsOneBatch: within one call, only the first event of a key is
// recorded (also when a later one differs), the same key of another task
// is another key, events of an unknown task are skipped, and the recorded
// events keep the call's order.
func testEventsOneBatch(t *testing.T, s storage.Store) {
	create(t, s, NewTaskRecord("u", "U"))
	ev := func(task, key, msg string) storage.EventRecord {
		return storage.EventRecord{TaskID: task, DeviceID: "d", RunID: 2, At: base, Level: "result", Severity: "info", Message: msg, Key: key}
	}
	batch := []storage.EventRecord{
		ev("u", "a", "u/a first"), ev("t", "a", "t/a"), ev("u", "", "u keyless 1"), ev("nope", "a", "unknown task"),
		ev("u", "a", "u/a again"), ev("u", "b", "u/b"), ev("u", "", "u keyless 2"), ev("t", "a", "t/a again"),
		ev("t", "k29", "t/k29 stored before"),
	}
	n, err := s.AppendEvents(ctx(), storage.AppendEventsParams{Events: batch})
	if err != nil || n != 5 {
		t.Fatalf("AppendEvents of one batch with repeated keys = %d, %v; want 5", n, err)
	}
	var got []string
	var lastID int64
	for _, task := range []string{"u", "t"} {
		evs, err := s.ListEvents(ctx(), storage.ListEventsParams{TaskID: task, From: base, To: base.Add(time.Microsecond), Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.RunID != 2 {
				continue
			}
			got = append(got, e.Message)
			if task == "u" && e.ID <= lastID {
				t.Fatalf("event ids of one batch not in call order: %d after %d", e.ID, lastID)
			}
			lastID = e.ID
		}
	}
	want := []string{"u/a first", "u keyless 1", "u/b", "u keyless 2", "t/a"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("events of one batch (-want +got):\n%s", d)
	}
}

func testConcurrentUpdates(t *testing.T, s storage.Store, f Features) {
	rec := NewTaskRecord("t", "T")
	create(t, s, rec)
	const perWriter = 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	conflicts := 0
	for w := range f.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < perWriter; {
				cur, err := s.GetTask(ctx(), "t")
				if err != nil {
					t.Error(err)
					return
				}
				cur.Body = []byte(fmt.Sprintf(`{"writer":%d,"n":%d}`, w, done))
				err = update(s, cur, cur.Revision, fmt.Sprintf("w%d", w))
				switch {
				case err == nil:
					done++
				case errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrRetryable):
					mu.Lock()
					conflicts++
					mu.Unlock()
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	final, _ := s.GetTask(ctx(), "t")
	want := int64(1 + f.Writers*perWriter)
	if final.Revision != want {
		t.Fatalf("final revision %d, want %d: a write was lost", final.Revision, want)
	}
	revs, _ := s.ListRevisions(ctx(), storage.ListRevisionsParams{TaskID: "t", Limit: 10000})
	if int64(len(revs)) != want {
		t.Fatalf("%d revisions stored, want %d", len(revs), want)
	}
	for i, r := range revs {
		if r.Number != int64(i+1) {
			t.Fatalf("revision %d has number %d", i, r.Number)
		}
	}
	if string(revs[len(revs)-1].Body) != string(final.Body) {
		t.Fatal("last revision body differs from the task body")
	}
	t.Logf("%d optimistic-concurrency conflicts retried", conflicts)
}

func testConcurrentResults(t *testing.T, s storage.Store, f Features) {
	create(t, s, NewTaskRecord("t", "T"))
	const perWriter = 200
	var wg sync.WaitGroup
	for w := range f.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch []storage.ResultRecord
			for i := range perWriter {
				dev := fmt.Sprintf("w%d-d%d", w, i)
				batch = append(batch, storage.ResultRecord{TaskID: "t", DeviceID: dev, RunID: 1, Seq: 1, State: "running", UpdatedAt: base})
				batch = append(batch, storage.ResultRecord{TaskID: "t", DeviceID: dev, RunID: 1, Seq: 2, State: "completed", UpdatedAt: base})
				if len(batch) >= 50 {
					if _, err := s.UpsertResults(ctx(), storage.UpsertResultsParams{Results: batch}); err != nil {
						t.Error(err)
						return
					}
					batch = batch[:0]
				}
			}
			if _, err := s.UpsertResults(ctx(), storage.UpsertResultsParams{Results: batch}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	st, err := s.TaskStatistics(ctx(), "t")
	if err != nil {
		t.Fatal(err)
	}
	if want := f.Writers * perWriter; st.Total != want || st.ByState["completed"] != want {
		t.Fatalf("statistics after concurrent writers = %+v, want %d completed", st, want)
	}
}

func testUTC(t *testing.T, s storage.Store, _ Features) {
	berlin := time.FixedZone("CET", 3600)
	local := time.Date(2026, 3, 29, 2, 30, 0, 987654321, berlin)
	rec := NewTaskRecord("t", "T")
	rec.CreatedAt, rec.UpdatedAt = storage.UTC(local), storage.UTC(local.Add(time.Second))
	create(t, s, rec)
	got, _ := s.GetTask(ctx(), "t")
	for name, pair := range map[string][2]time.Time{"CreatedAt": {rec.CreatedAt, got.CreatedAt}, "UpdatedAt": {rec.UpdatedAt, got.UpdatedAt}} {
		if !pair[0].Equal(pair[1]) || pair[1].Location() != time.UTC {
			t.Fatalf("%s: stored %v, got %v (location %v)", name, pair[0], pair[1], pair[1].Location())
		}
	}
	res := storage.ResultRecord{TaskID: "t", DeviceID: "d", RunID: 1, State: "completed", DueAt: storage.UTC(local), StartedAt: storage.UTC(local), FinishedAt: storage.UTC(local.Add(time.Minute)), UpdatedAt: storage.UTC(local)}
	if _, err := s.UpsertResults(ctx(), storage.UpsertResultsParams{Results: []storage.ResultRecord{res}}); err != nil {
		t.Fatal(err)
	}
	gr, _ := s.GetResult(ctx(), "t", "d")
	if d := cmp.Diff(res, gr); d != "" || gr.FinishedAt.Location() != time.UTC {
		t.Fatalf("result times (-want +got):\n%s", d)
	}
	if storage.UTC(local).Nanosecond()%1000 != 0 {
		t.Fatal("storage.UTC does not truncate to microseconds")
	}
}

// testUniqueNameLookup checks the optional storage.UniqueNameLookup when
// the store offers it.
func testUniqueNameLookup(t *testing.T, s storage.Store, _ Features) {
	l, ok := s.(storage.UniqueNameLookup)
	if !ok {
		t.Log("the store does not implement storage.UniqueNameLookup (optional)")
		return
	}
	rec := NewTaskRecord("t", "Scan")
	create(t, s, rec)
	id, err := l.TaskIDByUniqueName(ctx(), rec.UniqueName)
	if err != nil || id != "t" {
		t.Fatalf("TaskIDByUniqueName = %q, %v", id, err)
	}
	_, err = l.TaskIDByUniqueName(ctx(), "global/other")
	wantErr(t, err, storage.ErrNotFound, "TaskIDByUniqueName of a free name")
	renamed := rec
	renamed.Name, renamed.SearchName, renamed.UniqueName = "Scan 2", "scan 2", "global/scan 2"
	if err := update(s, renamed, 1, "x"); err != nil {
		t.Fatal(err)
	}
	_, err = l.TaskIDByUniqueName(ctx(), rec.UniqueName)
	wantErr(t, err, storage.ErrNotFound, "TaskIDByUniqueName of a name given up by a rename")
	if id, _ := l.TaskIDByUniqueName(ctx(), "global/scan 2"); id != "t" {
		t.Fatalf("TaskIDByUniqueName after rename = %q", id)
	}
}

func testClosed(t *testing.T, s storage.Store, _ Features) {
	create(t, s, NewTaskRecord("t", "T"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := s.GetTask(ctx(), "t")
	wantErr(t, err, storage.ErrClosed, "GetTask after Close")
	_, err = s.UpsertResults(ctx(), storage.UpsertResultsParams{Results: []storage.ResultRecord{{TaskID: "t", DeviceID: "d"}}})
	wantErr(t, err, storage.ErrClosed, "UpsertResults after Close")
}
