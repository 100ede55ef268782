package storagetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/storage"
)

// testHierarchyFlag fails when Features.Hierarchy and the store disagree.
func testHierarchyFlag(t *testing.T, s storage.Store, f Features) {
	if _, ok := s.(storage.HierarchyStore); ok != f.Hierarchy {
		t.Fatalf("%T implements storage.HierarchyStore: %v, but Features.Hierarchy is %v", s, ok, f.Hierarchy)
	}
}

func hier(t *testing.T, s storage.Store) storage.HierarchyStore {
	t.Helper()
	h, ok := s.(storage.HierarchyStore)
	if !ok {
		t.Fatalf("%T does not implement storage.HierarchyStore", s)
	}
	return h
}

func putNode(t *testing.T, h storage.HierarchyStore, node, parent string, children ...string) {
	t.Helper()
	p := storage.PutHierarchyNodeParams{Node: node, Role: "secondary", Parent: parent, Epoch: 10}
	for _, c := range children {
		p.Children = append(p.Children, storage.HierarchyServer{ID: c, Role: "virtual", Group: "g-" + c})
	}
	if parent == "" {
		p.Role = "primary"
	}
	if err := h.PutHierarchyNode(ctx(), p); err != nil {
		t.Fatalf("PutHierarchyNode(%s): %v", node, err)
	}
}

func figure(task, server string, seq int64, total int, path ...string) storage.HierarchyFigure {
	return storage.HierarchyFigure{
		TaskID: task, Server: server, Role: "secondary", Path: path,
		Version: storage.HierarchyVersion{Epoch: 5, Seq: seq}, At: base.Add(time.Duration(seq) * time.Second),
		Statistics: json.RawMessage(fmt.Sprintf(`{"total":%d}`, total)),
	}
}

func state(t *testing.T, h storage.HierarchyStore, node string) storage.HierarchyState {
	t.Helper()
	st, err := h.GetHierarchyState(ctx(), node)
	if err != nil {
		t.Fatalf("GetHierarchyState(%s): %v", node, err)
	}
	return st
}

// testHierarchyRoundTrip stores a node's tree, copies, reports and
// figures and reads them back; stale task sets and reports are
// ErrConflict and change nothing.
func testHierarchyRoundTrip(t *testing.T, s storage.Store, _ Features) {
	h := hier(t, s)
	if _, err := h.GetHierarchyState(ctx(), "p"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("state of an unknown node: %v, want ErrNotFound", err)
	}
	if err := h.ApplyHierarchyReport(ctx(), storage.ApplyHierarchyReportParams{Node: "p", Child: "s", Version: storage.HierarchyVersion{Epoch: 1, Seq: 1}}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("report to an unknown node: %v, want ErrNotFound", err)
	}
	putNode(t, h, "p", "", "s2", "s1")
	copies := []storage.HierarchyCopy{
		{TaskID: "c2", Lineage: []storage.HierarchyHop{{Server: "top", TaskID: "t2"}, {Server: "origin", TaskID: "o"}}, ParentRevision: 3},
		{TaskID: "c1", Lineage: []storage.HierarchyHop{{Server: "top", TaskID: "t1"}}, ParentRevision: 1},
	}
	set := storage.ApplyHierarchyTaskSetParams{Node: "p", From: "top", Version: storage.HierarchyVersion{Epoch: 7, Seq: 2}, Copies: copies}
	if err := h.ApplyHierarchyTaskSet(ctx(), set); err != nil {
		t.Fatalf("ApplyHierarchyTaskSet: %v", err)
	}
	stale := set
	stale.Copies = nil
	if err := h.ApplyHierarchyTaskSet(ctx(), stale); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("repeated task set: %v, want ErrConflict", err)
	}
	stale.Version.Seq = 1
	if err := h.ApplyHierarchyTaskSet(ctx(), stale); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("older task set: %v, want ErrConflict", err)
	}
	r1 := storage.ApplyHierarchyReportParams{Node: "p", Child: "s1", Version: storage.HierarchyVersion{Epoch: 5, Seq: 1}, Complete: false,
		Put: []storage.HierarchyFigure{figure("t", "s1", 1, 10, "s1"), figure("t", "v1", 1, 4, "s1", "v1"), figure("u", "s1", 1, 2, "s1")}}
	if err := h.ApplyHierarchyReport(ctx(), r1); err != nil {
		t.Fatalf("ApplyHierarchyReport: %v", err)
	}
	again := r1
	again.Put = []storage.HierarchyFigure{figure("t", "s1", 1, 999, "s1")}
	if err := h.ApplyHierarchyReport(ctx(), again); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("repeated report: %v, want ErrConflict", err)
	}
	r2 := storage.ApplyHierarchyReportParams{Node: "p", Child: "s1", Version: storage.HierarchyVersion{Epoch: 5, Seq: 2}, Complete: true, At: base.Add(time.Minute),
		Put:    []storage.HierarchyFigure{figure("t", "s1", 2, 11, "s1")},
		Delete: []storage.HierarchyFigureKey{{TaskID: "u", Server: "s1"}, {TaskID: "nope", Server: "x"}}}
	if err := h.ApplyHierarchyReport(ctx(), r2); err != nil {
		t.Fatalf("ApplyHierarchyReport (newer): %v", err)
	}
	want := storage.HierarchyState{
		Node: "p", Role: "primary", Epoch: 10,
		Children:   []storage.HierarchyServer{{ID: "s1", Role: "virtual", Group: "g-s1"}, {ID: "s2", Role: "virtual", Group: "g-s2"}},
		SetFrom:    "top",
		SetVersion: storage.HierarchyVersion{Epoch: 7, Seq: 2},
		Copies:     []storage.HierarchyCopy{copies[1], copies[0]},
		Reports:    []storage.HierarchyChildReport{{Child: "s1", Version: storage.HierarchyVersion{Epoch: 5, Seq: 2}, Complete: true, At: base.Add(time.Minute)}},
		Figures:    []storage.HierarchyFigure{figure("t", "s1", 2, 11, "s1"), figure("t", "v1", 1, 4, "s1", "v1")},
	}
	if d := cmp.Diff(want, state(t, h, "p")); d != "" {
		t.Fatalf("state (-want +got):\n%s", d)
	}
	n, err := h.DeleteHierarchyFigures(ctx(), storage.DeleteHierarchyFiguresParams{Node: "p", Keys: []storage.HierarchyFigureKey{{TaskID: "t", Server: "v1"}, {TaskID: "t", Server: "zz"}}})
	if err != nil || n != 1 {
		t.Fatalf("DeleteHierarchyFigures = %d, %v; want 1, nil", n, err)
	}
	// A restart writes the node again with a later epoch: reports and
	// figures stay.
	p2 := storage.PutHierarchyNodeParams{Node: "p", Role: "primary", Epoch: 20, Children: []storage.HierarchyServer{{ID: "s1", Role: "secondary", Group: "g"}}}
	if err := h.PutHierarchyNode(ctx(), p2); err != nil {
		t.Fatalf("PutHierarchyNode again: %v", err)
	}
	got := state(t, h, "p")
	if got.Epoch != 20 || len(got.Children) != 1 || len(got.Reports) != 1 || len(got.Figures) != 1 || len(got.Copies) != 2 {
		t.Fatalf("state after a restart: %+v", got)
	}
}

// testHierarchyIsolation: nodes sharing a store (a server and its virtual
// servers) never see or change each other's records.
func testHierarchyIsolation(t *testing.T, s storage.Store, _ Features) {
	h := hier(t, s)
	putNode(t, h, "v1", "s")
	putNode(t, h, "v2", "s")
	v := storage.HierarchyVersion{Epoch: 1, Seq: 1}
	for _, node := range []string{"v1", "v2"} {
		if err := h.ApplyHierarchyTaskSet(ctx(), storage.ApplyHierarchyTaskSetParams{Node: node, From: "s", Version: v,
			Copies: []storage.HierarchyCopy{{TaskID: "c-" + node, Lineage: []storage.HierarchyHop{{Server: "s", TaskID: "t"}}}}}); err != nil {
			t.Fatalf("ApplyHierarchyTaskSet(%s): %v", node, err)
		}
		if err := h.ApplyHierarchyReport(ctx(), storage.ApplyHierarchyReportParams{Node: node, Child: "x", Version: v,
			Put: []storage.HierarchyFigure{figure("t", "x", 1, len(node), "x")}}); err != nil {
			t.Fatalf("ApplyHierarchyReport(%s): %v", node, err)
		}
	}
	if n, err := h.DeleteHierarchyFigures(ctx(), storage.DeleteHierarchyFiguresParams{Node: "v1", Keys: []storage.HierarchyFigureKey{{TaskID: "t", Server: "x"}}}); err != nil || n != 1 {
		t.Fatalf("DeleteHierarchyFigures(v1) = %d, %v", n, err)
	}
	v2 := state(t, h, "v2")
	if len(v2.Figures) != 1 || len(v2.Copies) != 1 || v2.Copies[0].TaskID != "c-v2" || len(v2.Reports) != 1 {
		t.Fatalf("v2 changed by calls on v1: %+v", v2)
	}
	if v1 := state(t, h, "v1"); len(v1.Figures) != 0 || len(v1.Copies) != 1 || v1.Copies[0].TaskID != "c-v1" {
		t.Fatalf("v1 state: %+v", v1)
	}
}

// testHierarchyInvalid: bad records are ErrInvalid and write nothing.
func testHierarchyInvalid(t *testing.T, s storage.Store, _ Features) {
	h := hier(t, s)
	putNode(t, h, "p", "")
	long := strings.Repeat("x", storage.MaxHierarchyID+1)
	deep := make([]string, storage.MaxHierarchyPath+1)
	for i := range deep {
		deep[i] = fmt.Sprint("s", i)
	}
	good := figure("t", "s", 1, 1, "s")
	v := storage.HierarchyVersion{Epoch: 1, Seq: 1}
	cases := []struct {
		name string
		call func() error
	}{
		{"node without id", func() error { return h.PutHierarchyNode(ctx(), storage.PutHierarchyNodeParams{Role: "primary"}) }},
		{"child with a long id", func() error {
			return h.PutHierarchyNode(ctx(), storage.PutHierarchyNodeParams{Node: "p", Role: "primary", Children: []storage.HierarchyServer{{ID: long, Role: "secondary", Group: "g"}}})
		}},
		{"copy without lineage", func() error {
			return h.ApplyHierarchyTaskSet(ctx(), storage.ApplyHierarchyTaskSetParams{Node: "p", From: "x", Version: v, Copies: []storage.HierarchyCopy{{TaskID: "c"}}})
		}},
		{"too many copies", func() error {
			return h.ApplyHierarchyTaskSet(ctx(), storage.ApplyHierarchyTaskSetParams{Node: "p", From: "x", Version: v, Copies: make([]storage.HierarchyCopy, storage.MaxHierarchyBatch+1)})
		}},
		{"figure path too deep", func() error {
			f := good
			f.Path = deep
			return h.ApplyHierarchyReport(ctx(), storage.ApplyHierarchyReportParams{Node: "p", Child: "s", Version: v, Put: []storage.HierarchyFigure{good, f}})
		}},
		{"figure statistics not JSON", func() error {
			f := good
			f.Statistics = json.RawMessage("{")
			return h.ApplyHierarchyReport(ctx(), storage.ApplyHierarchyReportParams{Node: "p", Child: "s", Version: v, Put: []storage.HierarchyFigure{f}})
		}},
		{"figure statistics too large", func() error {
			f := good
			f.Statistics = json.RawMessage(`"` + strings.Repeat("a", storage.MaxHierarchyStatistics) + `"`)
			return h.ApplyHierarchyReport(ctx(), storage.ApplyHierarchyReportParams{Node: "p", Child: "s", Version: v, Put: []storage.HierarchyFigure{f}})
		}},
		{"report without child", func() error {
			return h.ApplyHierarchyReport(ctx(), storage.ApplyHierarchyReportParams{Node: "p", Version: v, Put: []storage.HierarchyFigure{good}})
		}},
		{"delete key without task", func() error {
			_, err := h.DeleteHierarchyFigures(ctx(), storage.DeleteHierarchyFiguresParams{Node: "p", Keys: []storage.HierarchyFigureKey{{Server: "s"}}})
			return err
		}},
	}
	for _, tc := range cases {
		if err := tc.call(); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
		}
	}
	st := state(t, h, "p")
	if len(st.Figures) != 0 || len(st.Reports) != 0 || len(st.Copies) != 0 || st.SetFrom != "" || len(st.Children) != 0 {
		t.Fatalf("invalid calls wrote: %+v", st)
	}
}

// testHierarchyConcurrentReports: writers racing to apply the same report
// version: exactly one wins, the others get ErrConflict.
func testHierarchyConcurrentReports(t *testing.T, s storage.Store, f Features) {
	h := hier(t, s)
	putNode(t, h, "p", "", "s")
	for round := int64(1); round <= 3; round++ {
		var wg sync.WaitGroup
		errs := make([]error, f.Writers)
		for i := range f.Writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = h.ApplyHierarchyReport(ctx(), storage.ApplyHierarchyReportParams{Node: "p", Child: "s", Version: storage.HierarchyVersion{Epoch: 9, Seq: round},
					Put: []storage.HierarchyFigure{figure("t", "s", round, i, "s")}})
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case errors.Is(err, storage.ErrConflict), errors.Is(err, storage.ErrRetryable):
			default:
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d writers applied the same report version, want exactly 1 (%v)", round, won, errs)
		}
	}
	if st := state(t, h, "p"); len(st.Reports) != 1 || st.Reports[0].Version.Seq != 3 {
		t.Fatalf("reports: %+v", st.Reports)
	}
}
