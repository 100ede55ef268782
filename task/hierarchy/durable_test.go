package hierarchy_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/hierarchy"
)

func openSQLite(t *testing.T, path string) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.OpenSQLite(context.Background(), path)
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// durableTree is primary ── s-de ── v-de, the primary and s-de keeping
// their hierarchy state in their own SQLite files, v-de in a memstore.
type durableTree struct {
	link            *hierarchy.InProc
	tap             *tap
	primary, sDE    server
	vDE             server
	pFile, sdeFile  string
	all, sdeAllCopy string
}

func newDurableTree(t *testing.T) *durableTree {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	link := hierarchy.NewInProc()
	tp := &tap{InProc: link}
	dt := &durableTree{link: link, tap: tp, pFile: filepath.Join(dir, "primary.db"), sdeFile: filepath.Join(dir, "s-de.db")}
	dt.primary = newServer(t, link, hierarchy.Config{ID: "primary", Role: scope.Primary, Link: tp, Store: openSQLite(t, dt.pFile),
		Children: []hierarchy.Child{{ID: "s-de", Role: scope.Secondary, Group: "g-de"}}},
		scope.AdminGroup{ID: "g-root", Name: "root"}, scope.AdminGroup{ID: "g-de", Parent: "g-root", Name: "de"})
	dt.sDE = newServer(t, link, hierarchy.Config{ID: "s-de", Role: scope.Secondary, Parent: "primary", Root: "managed", Link: tp, Store: openSQLite(t, dt.sdeFile),
		Children: []hierarchy.Child{{ID: "v-de", Role: scope.Virtual, Group: "managed"}}},
		scope.AdminGroup{ID: "managed", Name: "Managed devices"})
	dt.vDE = newServer(t, link, hierarchy.Config{ID: "v-de", Role: scope.Virtual, Parent: "s-de", Root: "managed", Link: tp, Store: memstore.New()},
		scope.AdminGroup{ID: "managed", Name: "Managed devices"})
	all, err := dt.primary.m.Create(ctx, task.System, groupTask("scan all", "g-root", true))
	must(t, err)
	dt.all = all.ID
	must(t, dt.primary.node.Distribute(ctx))
	dt.sdeAllCopy = copyID(t, dt.sDE, all.ID)
	recordAs(t, dt.sDE.m, dt.sdeAllCopy, "de", 2, map[task.State]int{task.Completed: 3, task.Failed: 1})
	recordAs(t, dt.vDE.m, copyID(t, dt.vDE, dt.sdeAllCopy), "vde", 2, map[task.State]int{task.Failed: 2})
	must(t, dt.vDE.node.Report(ctx))
	must(t, dt.sDE.node.Report(ctx))
	return dt
}

var durableRows = []row{
	{"s-de", scope.Secondary, []string{"s-de"}, counts{Total: 4, Completed: 3, Failed: 1, Finished: 4}},
	{"v-de", scope.Virtual, []string{"s-de", "v-de"}, counts{Total: 2, Failed: 2, Finished: 2}},
}

// reopen restarts s's Node on a fresh handle of its SQLite file.
func (dt *durableTree) reopen(t *testing.T, s server, file string) server {
	t.Helper()
	return restart(t, dt.link, s, func(c *hierarchy.Config) { c.Store = openSQLite(t, file) })
}

// TestDurableRestartServesFiguresAtOnce: a restarted primary (a new Node
// on a new handle of its SQLite file) serves the same "Statistics from
// secondary Servers" before any server below reports again, and the
// reports it applied before the restart, delivered again, count nothing
// twice. With the in-memory Node the figures were gone until the next
// reports.
func TestDurableRestartServesFiguresAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dt := newDurableTree(t)
	if d := cmp.Diff(durableRows, rows(dt.primary.node.StatisticsFromSecondaries(dt.all))); d != "" {
		t.Fatalf("before the restart (-want +got):\n%s", d)
	}
	before := rolledUp(t, dt.primary, dt.all)

	dt.primary = dt.reopen(t, dt.primary, dt.pFile)
	if d := cmp.Diff(durableRows, rows(dt.primary.node.StatisticsFromSecondaries(dt.all))); d != "" {
		t.Fatalf("right after the restart (-want +got):\n%s", d)
	}
	if got := rolledUp(t, dt.primary, dt.all); got != before {
		t.Fatalf("rolled up after the restart: %+v, want %+v", got, before)
	}
	// Every report s-de ever sent, delivered again in any order: nothing
	// changes, nothing is counted twice.
	sent := dt.tap.sentTo("primary")
	for i := len(sent) - 1; i >= 0; i-- {
		must(t, dt.primary.node.ReceiveReport(ctx, sent[i]))
	}
	if got := rolledUp(t, dt.primary, dt.all); got != before {
		t.Fatalf("after replayed reports: %+v, want %+v", got, before)
	}

	// s-de restarts too: its own durable state tells it v-de's figures,
	// so its first report is complete and the primary keeps v-de.
	dt.sDE = dt.reopen(t, dt.sDE, dt.sdeFile)
	recordAs(t, dt.sDE.m, dt.sdeAllCopy, "de-new", 3, map[task.State]int{task.Completed: 1})
	must(t, dt.sDE.node.Report(ctx))
	rep := dt.tap.sentTo("primary")
	if last := rep[len(rep)-1]; !last.Complete || last.Version.Compare(sent[len(sent)-1].Version) <= 0 {
		t.Fatalf("first report after s-de's restart: complete %v, version %+v after %+v", last.Complete, last.Version, sent[len(sent)-1].Version)
	}
	want := before
	want.Total, want.Completed, want.Finished = want.Total+1, want.Completed+1, want.Finished+1
	if got := rolledUp(t, dt.primary, dt.all); got != want {
		t.Fatalf("after s-de's restart: %+v, want %+v", got, want)
	}
	if d := cmp.Diff([]string{"s-de", "v-de"}, dt.primary.node.SecondaryServers(dt.all)); d != "" {
		t.Fatalf("servers (-want +got):\n%s", d)
	}
}

// TestDurableWithdrawals: figures of a withdrawn task leave the store too,
// so a restart does not bring them back.
func TestDurableWithdrawals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dt := newDurableTree(t)
	must(t, dt.primary.m.Delete(ctx, task.System, dt.all, 0))
	must(t, dt.primary.node.Distribute(ctx))
	dt.primary = dt.reopen(t, dt.primary, dt.pFile)
	if got := dt.primary.node.StatisticsFromSecondaries(dt.all); len(got) != 0 {
		t.Fatalf("figures of a deleted task after a restart: %+v", got)
	}
	dt.sDE = dt.reopen(t, dt.sDE, dt.sdeFile)
	if got := dt.sDE.node.StatisticsFromSecondaries(dt.sdeAllCopy); len(got) != 0 {
		t.Fatalf("s-de keeps figures of a withdrawn copy after a restart: %+v", got)
	}
	st, err := dt.sDE.cfg.Store.GetHierarchyState(ctx, "s-de")
	must(t, err)
	if len(st.Copies) != 0 || len(st.Figures) != 0 || st.SetFrom != "primary" {
		t.Fatalf("s-de's stored state after the withdrawal: %+v", st)
	}
}

// TestDurableStoresTreeAndLineage: the stored state holds the server tree
// and every copy with its lineage up to the origin.
func TestDurableStoresTreeAndLineage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dt := newDurableTree(t)
	st, err := dt.vDE.cfg.Store.GetHierarchyState(ctx, "v-de")
	must(t, err)
	vCopy := copyID(t, dt.vDE, dt.sdeAllCopy)
	want := []storage.HierarchyCopy{{TaskID: vCopy, ParentRevision: 1, Lineage: []storage.HierarchyHop{{Server: "s-de", TaskID: dt.sdeAllCopy}, {Server: "primary", TaskID: dt.all}}}}
	if d := cmp.Diff(want, st.Copies); d != "" {
		t.Fatalf("v-de's copies (-want +got):\n%s", d)
	}
	if st.Parent != "s-de" || st.Role != "virtual" || st.SetFrom != "s-de" {
		t.Fatalf("v-de's node record: %+v", st)
	}
	ps, err := dt.primary.cfg.Store.GetHierarchyState(ctx, "primary")
	must(t, err)
	if d := cmp.Diff([]storage.HierarchyServer{{ID: "s-de", Role: "secondary", Group: "g-de"}}, ps.Children); d != "" {
		t.Fatalf("primary's children (-want +got):\n%s", d)
	}
}

// TestOpenValidates: Open needs a store, New refuses one.
func TestOpenValidates(t *testing.T) {
	t.Parallel()
	cfg := hierarchy.Config{ID: "p", Role: scope.Primary, Link: hierarchy.NewInProc(), Manager: &task.Manager{}, Inventory: memstore.New().Devices()}
	if _, err := hierarchy.Open(context.Background(), cfg); !errors.Is(err, hierarchy.ErrInvalid) {
		t.Fatalf("Open without a store: %v", err)
	}
	cfg.Store = memstore.New()
	if _, err := hierarchy.New(cfg); !errors.Is(err, hierarchy.ErrInvalid) {
		t.Fatalf("New with a store: %v", err)
	}
}

// TestDurableServerRemoved: a server removed from under the primary
// while it was down: its figures are not served after the restart and
// leave the store.
func TestDurableServerRemoved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dt := newDurableTree(t)
	dt.primary = restart(t, dt.link, dt.primary, func(c *hierarchy.Config) {
		c.Children = []hierarchy.Child{{ID: "s-other", Role: scope.Secondary, Group: "g-de"}}
		c.Store = openSQLite(t, dt.pFile)
	})
	if got := dt.primary.node.StatisticsFromSecondaries(dt.all); len(got) != 0 {
		t.Fatalf("figures of a removed server after the restart: %+v", got)
	}
	st, err := dt.primary.cfg.Store.GetHierarchyState(ctx, "primary")
	must(t, err)
	if len(st.Figures) != 0 {
		t.Fatalf("the store keeps figures of a removed server: %+v", st.Figures)
	}
}

// TestChildrenStatus: a server lists its children with the last report
// applied from each and when (its clock), also after a restart; a child
// that never reported is marked so.
func TestChildrenStatus(t *testing.T) {
	t.Parallel()
	dt := newDurableTree(t)
	dt.primary.cfg.Children = append(dt.primary.cfg.Children, hierarchy.Child{ID: "s-new", Role: scope.Secondary, Group: "g-de"})
	dt.primary = dt.reopen(t, dt.primary, dt.pFile) // the clock moves a minute
	got := dt.primary.node.Children()
	sent := dt.tap.sentTo("primary")
	want := []hierarchy.ChildStatus{
		{Child: hierarchy.Child{ID: "s-de", Role: scope.Secondary, Group: "g-de"}, Reported: true, LastReport: sent[len(sent)-1].Version, LastReportAt: t0, Complete: true},
		{Child: hierarchy.Child{ID: "s-new", Role: scope.Secondary, Group: "g-de"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("children after a restart (-want +got):\n%s", d)
	}
}

// TestRollUpCountsUnknownMembership: a figure's devices of unknown
// membership roll up like the others (Total holds them, Unknown says how
// many), also through a restart.
func TestRollUpCountsUnknownMembership(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dt := newDurableTree(t)
	r := hierarchy.Report{From: "s-de", To: "primary", Version: hierarchy.Version{Epoch: t0.Add(time.Hour).UnixNano(), Seq: 1}, Complete: false,
		Statistics: []hierarchy.TaskStatistics{{TaskID: dt.all, Server: "s-de", Path: []string{"s-de"}, Version: hierarchy.Version{Epoch: t0.Add(time.Hour).UnixNano(), Seq: 1},
			Statistics: task.Statistics{ByState: map[task.State]int{task.Completed: 2, task.UnknownMembership: 3}, Total: 5, Unknown: 3, Finished: 2}}}}
	must(t, dt.primary.node.ReceiveReport(ctx, r))
	for _, s := range []server{dt.primary, dt.reopen(t, dt.primary, dt.pFile)} {
		st, err := s.node.RolledUp(ctx, dt.all)
		must(t, err)
		if st.Unknown != 3 || st.Total != 7 || st.ByState[task.UnknownMembership] != 3 {
			t.Fatalf("rolled up %+v, want Unknown 3 of Total 7 (s-de 5, v-de 2)", st)
		}
	}
}
