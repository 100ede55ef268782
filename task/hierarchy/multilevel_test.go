package hierarchy_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/hierarchy"
)

// tap is a Link that records every report it delivers, so a test can
// deliver them again, repeated and out of order.
type tap struct {
	*hierarchy.InProc
	mu      sync.Mutex
	reports []hierarchy.Report
	sets    []hierarchy.TaskSet
}

func (l *tap) SendTasks(ctx context.Context, m hierarchy.TaskSet) error {
	l.mu.Lock()
	l.sets = append(l.sets, m)
	l.mu.Unlock()
	return l.InProc.SendTasks(ctx, m)
}

// setsTo returns the task sets recorded for server to.
func (l *tap) setsTo(to string) []hierarchy.TaskSet {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []hierarchy.TaskSet
	for _, m := range l.sets {
		if m.To == to {
			out = append(out, m)
		}
	}
	return out
}

func (l *tap) SendReport(ctx context.Context, r hierarchy.Report) error {
	l.mu.Lock()
	l.reports = append(l.reports, r)
	l.mu.Unlock()
	return l.InProc.SendReport(ctx, r)
}

// sentTo returns the reports recorded for server to.
func (l *tap) sentTo(to string) []hierarchy.Report {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []hierarchy.Report
	for _, r := range l.reports {
		if r.To == to {
			out = append(out, r)
		}
	}
	return out
}

// recordAs stores results for devices <prefix>-<i>, n devices in each
// state, as update seq of run 1.
func recordAs(t *testing.T, m *task.Manager, id, prefix string, seq int64, states map[task.State]int) {
	t.Helper()
	var rs []task.Result
	i := 0
	for _, st := range []task.State{task.Completed, task.Failed, task.Running, task.Scheduled} {
		for range states[st] {
			rs = append(rs, task.Result{TaskID: id, DeviceID: scope.DeviceID(fmt.Sprintf("%s-%03d", prefix, i)), RunID: 1, Seq: seq, State: st, UpdatedAt: t0, FinishedAt: t0})
			i++
		}
	}
	_, err := m.Runtime().RecordResults(context.Background(), rs)
	must(t, err)
}

// copyID returns the id of the copy of parent task id on s; it fails the
// test when there is none.
func copyID(t testing.TB, s server, id string) string {
	t.Helper()
	v := inherited(t, s, id)
	if v == nil {
		t.Fatalf("%s has no copy of %q", s.node.ID(), id)
	}
	return v.Task.ID
}

// counts is what the tests compare of a task.Statistics.
type counts struct {
	Total, Completed, Failed, Running, Finished int
}

func countsOf(s task.Statistics) counts {
	return counts{s.Total, s.ByState[task.Completed], s.ByState[task.Failed], s.ByState[task.Running], s.Finished}
}

// row is one line of "Statistics from secondary Servers".
type row struct {
	Server string
	Role   scope.ServerRole
	Path   []string
	Counts counts
}

func rows(st []hierarchy.TaskStatistics) []row {
	out := make([]row, len(st))
	for i, s := range st {
		out[i] = row{s.Server, s.Role, s.Path, countsOf(s.Statistics)}
	}
	return out
}

// tree is a primary with a secondary (s-de) and a virtual server (v-eu);
// s-de has its own secondary (s-ber) and virtual server (v-de):
//
//	primary ── s-de ── s-ber
//	   │         └──── v-de
//	   └────── v-eu
type tree struct {
	link                         *hierarchy.InProc
	tap                          *tap
	primary, sDE, sBer, vDE, vEU server
}

func newTree(t *testing.T) *tree {
	t.Helper()
	link := hierarchy.NewInProc()
	tp := &tap{InProc: link}
	managed := []scope.AdminGroup{{ID: "managed", Name: "Managed devices"}}
	tr := &tree{link: link, tap: tp}
	tr.primary = newServer(t, link, hierarchy.Config{ID: "primary", Role: scope.Primary, Link: tp,
		Children: []hierarchy.Child{{ID: "s-de", Role: scope.Secondary, Group: "g-de"}, {ID: "v-eu", Role: scope.Virtual, Group: "g-eu"}}},
		scope.AdminGroup{ID: "g-root", Name: "root"}, scope.AdminGroup{ID: "g-eu", Parent: "g-root", Name: "eu"},
		scope.AdminGroup{ID: "g-de", Parent: "g-eu", Name: "de"}, scope.AdminGroup{ID: "g-us", Parent: "g-root", Name: "us"})
	tr.sDE = newServer(t, link, hierarchy.Config{ID: "s-de", Role: scope.Secondary, Parent: "primary", Root: "managed", Link: tp,
		Children: []hierarchy.Child{{ID: "s-ber", Role: scope.Secondary, Group: "m-berlin"}, {ID: "v-de", Role: scope.Virtual, Group: "managed"}}},
		scope.AdminGroup{ID: "managed", Name: "Managed devices"}, scope.AdminGroup{ID: "m-berlin", Parent: "managed", Name: "berlin"})
	tr.sBer = newServer(t, link, hierarchy.Config{ID: "s-ber", Role: scope.Secondary, Parent: "s-de", Root: "managed", Link: tp}, managed...)
	tr.vDE = newServer(t, link, hierarchy.Config{ID: "v-de", Role: scope.Virtual, Parent: "s-de", Root: "managed", Link: tp}, managed...)
	tr.vEU = newServer(t, link, hierarchy.Config{ID: "v-eu", Role: scope.Virtual, Parent: "primary", Root: "managed", Link: tp}, managed...)
	return tr
}

// report reports every server, leaves first.
func (tr *tree) report(t *testing.T) {
	t.Helper()
	for _, s := range []server{tr.sBer, tr.vDE, tr.sDE, tr.vEU} {
		must(t, s.node.Report(context.Background()))
	}
}

// TestMultiLevelInheritance: distributed tasks of the primary reach every
// level in one Distribute, a secondary's own distributed task reaches the
// servers under it, copies are read-only at every level beside same-type
// local tasks, and changes and withdrawals follow through the tree.
func TestMultiLevelInheritance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tr := newTree(t)
	all, err := tr.primary.m.Create(ctx, task.System, groupTask("scan all", "g-root", true))
	must(t, err)
	de, err := tr.primary.m.Create(ctx, task.System, groupTask("scan de", "g-de", true))
	must(t, err)
	_, err = tr.primary.m.Create(ctx, task.System, groupTask("primary only", "g-root", false))
	must(t, err)
	deLocal, err := tr.sDE.m.Create(ctx, task.System, groupTask("de local", "managed", true))
	must(t, err)
	_, err = tr.sDE.m.Create(ctx, task.System, groupTask("de only", "managed", false))
	must(t, err)
	berLocal, err := tr.sBer.m.Create(ctx, task.System, groupTask("berlin scan", "managed", false))
	must(t, err)

	must(t, tr.primary.node.Distribute(ctx))

	// What each server shows: name -> (from, origin) of every inherited task.
	type shown struct{ Name, From, Origin string }
	want := map[string][]shown{
		"s-de": {{"scan all (primary)", "primary", "primary/" + all.ID}, {"scan de (primary)", "primary", "primary/" + de.ID}},
		"v-eu": {{"scan all (primary)", "primary", "primary/" + all.ID}},
		"s-ber": {{"de local (s-de)", "s-de", "s-de/" + deLocal.ID}, {"scan all (primary)", "s-de", "primary/" + all.ID},
			{"scan de (primary)", "s-de", "primary/" + de.ID}},
		"v-de": {{"de local (s-de)", "s-de", "s-de/" + deLocal.ID}, {"scan all (primary)", "s-de", "primary/" + all.ID},
			{"scan de (primary)", "s-de", "primary/" + de.ID}},
	}
	for _, s := range []server{tr.sDE, tr.vEU, tr.sBer, tr.vDE} {
		vs, err := s.node.Tasks(ctx)
		must(t, err)
		var got []shown
		for _, v := range vs {
			if !v.Inherited {
				continue
			}
			o := v.Origin()
			got = append(got, shown{v.Task.Name, v.From, o.Server + "/" + o.TaskID})
			if v.Task.Scope.Group != "managed" || !v.Task.Scope.DistributeToServers || v.Task.Type != "virus_scan" {
				t.Errorf("%s: copy %q has scope %+v", s.node.ID(), v.Task.Name, v.Task.Scope)
			}
		}
		slices.SortFunc(got, func(a, b shown) int { return cmpString(a.Name, b.Name) })
		if d := cmp.Diff(want[s.node.ID()], got); d != "" {
			t.Errorf("%s inherits (-want +got):\n%s", s.node.ID(), d)
		}
	}
	// The lineage of a copy two levels down names every server on the way.
	v := inherited(t, tr.sBer, copyID(t, tr.sDE, all.ID))
	if d := cmp.Diff([]hierarchy.Hop{{Server: "s-de", TaskID: copyID(t, tr.sDE, all.ID)}, {Server: "primary", TaskID: all.ID}}, v.Lineage); d != "" {
		t.Errorf("lineage (-want +got):\n%s", d)
	}
	// Same-type local tasks exist beside the inherited copies: both run.
	if _, err := tr.sBer.m.Get(ctx, task.System, berLocal.ID); err != nil {
		t.Fatal(err)
	}

	// Read-only at every level; local tasks stay editable.
	for _, s := range []server{tr.sDE, tr.sBer, tr.vDE} {
		vs, err := s.node.Tasks(ctx)
		must(t, err)
		for _, v := range vs {
			if !v.Inherited {
				continue
			}
			edit := *v.Task
			edit.Name = "renamed"
			if _, err := s.m.Update(ctx, task.Actor{ID: "admin"}, edit); !errors.Is(err, task.ErrPermission) {
				t.Errorf("%s: update of inherited %q: %v, want ErrPermission", s.node.ID(), v.Task.Name, err)
			}
			if err := s.m.Delete(ctx, task.Actor{ID: "admin"}, v.Task.ID, 0); !errors.Is(err, task.ErrPermission) {
				t.Errorf("%s: delete of inherited %q: %v, want ErrPermission", s.node.ID(), v.Task.Name, err)
			}
		}
	}
	le := *berLocal
	le.Name = "berlin scan 2"
	if _, err := tr.sBer.m.Update(ctx, task.Actor{ID: "admin"}, le); err != nil {
		t.Fatalf("update of a local task two levels down: %v", err)
	}

	// A change on the primary reaches the bottom in one Distribute; a
	// deleted task is withdrawn everywhere; a repeated Distribute changes
	// nothing.
	ch := *all
	ch.Settings = Scan{Action: "report"}
	_, err = tr.primary.m.Update(ctx, task.System, ch)
	must(t, err)
	must(t, tr.primary.m.Delete(ctx, task.System, de.ID, 0))
	must(t, tr.primary.node.Distribute(ctx))
	revs := map[string]int64{}
	for _, s := range []server{tr.sDE, tr.sBer, tr.vDE, tr.vEU} {
		vs, err := s.node.Tasks(ctx)
		must(t, err)
		for _, v := range vs {
			if v.Inherited && v.Origin().TaskID == de.ID {
				t.Errorf("%s still has the deleted task", s.node.ID())
			}
			if v.Inherited && v.Origin().TaskID == all.ID {
				if got, _ := v.Task.Settings.(Scan); got.Action != "report" {
					t.Errorf("%s: copied settings %#v, want action report", s.node.ID(), v.Task.Settings)
				}
				revs[s.node.ID()] = v.Task.Revision
			}
		}
	}
	if d := cmp.Diff(map[string]int64{"s-de": 2, "s-ber": 2, "v-de": 2, "v-eu": 2}, revs); d != "" {
		t.Errorf("revisions of the copies of the changed task (-want +got):\n%s", d)
	}
	must(t, tr.primary.node.Distribute(ctx))
	if v := inherited(t, tr.sBer, copyID(t, tr.sDE, all.ID)); v.Task.Revision != 2 {
		t.Errorf("a repeated Distribute changed the copy: revision %d", v.Task.Revision)
	}
	// Every task set ever sent, delivered again oldest first (the first
	// ones still hold the deleted task and the old settings): ignored.
	for _, s := range []server{tr.sDE, tr.sBer, tr.vDE, tr.vEU} {
		for _, m := range tr.tap.setsTo(s.node.ID()) {
			must(t, s.node.ReceiveTasks(ctx, m))
		}
	}
	for _, s := range []server{tr.sDE, tr.sBer, tr.vDE, tr.vEU} {
		vs, err := s.node.Tasks(ctx)
		must(t, err)
		for _, v := range vs {
			if v.Inherited && v.Origin().TaskID == de.ID {
				t.Errorf("%s: a late task set brought the deleted task back", s.node.ID())
			}
			if v.Inherited && v.Origin().TaskID == all.ID && v.Task.Revision != 2 {
				t.Errorf("%s: a late task set changed the copy: revision %d", s.node.ID(), v.Task.Revision)
			}
		}
	}
	// s-de withdraws its own task from the servers below by not
	// distributing it any more.
	dl := *deLocal
	dl.Scope.DistributeToServers = false
	_, err = tr.sDE.m.Update(ctx, task.System, dl)
	must(t, err)
	must(t, tr.sDE.node.Distribute(ctx))
	if inherited(t, tr.sBer, deLocal.ID) != nil || inherited(t, tr.vDE, deLocal.ID) != nil {
		t.Error("a task s-de no longer distributes is still inherited below it")
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// rollUpFixture builds the tree with the task "scan all" distributed from
// the primary and s-de's own "de local", results recorded on every level
// and every server reported once.
func rollUpFixture(t *testing.T) (tr *tree, all, deLocal *task.Task) {
	t.Helper()
	ctx := context.Background()
	tr = newTree(t)
	all, err := tr.primary.m.Create(ctx, task.System, groupTask("scan all", "g-root", true))
	must(t, err)
	deLocal, err = tr.sDE.m.Create(ctx, task.System, groupTask("de local", "managed", true))
	must(t, err)
	local, err := tr.sDE.m.Create(ctx, task.System, groupTask("de only", "managed", false))
	must(t, err)
	must(t, tr.primary.node.Distribute(ctx))

	sdeAll := copyID(t, tr.sDE, all.ID)
	recordAs(t, tr.primary.m, all.ID, "p", 2, map[task.State]int{task.Completed: 5})
	recordAs(t, tr.sDE.m, sdeAll, "de", 2, map[task.State]int{task.Completed: 3, task.Failed: 1})
	recordAs(t, tr.sBer.m, copyID(t, tr.sBer, sdeAll), "ber", 2, map[task.State]int{task.Completed: 2, task.Running: 2})
	recordAs(t, tr.vDE.m, copyID(t, tr.vDE, sdeAll), "vde", 2, map[task.State]int{task.Failed: 1})
	recordAs(t, tr.vEU.m, copyID(t, tr.vEU, all.ID), "veu", 2, map[task.State]int{task.Completed: 4})
	recordAs(t, tr.sDE.m, local.ID, "de", 2, map[task.State]int{task.Completed: 7})                         // not inherited: stays on s-de
	recordAs(t, tr.sBer.m, copyID(t, tr.sBer, deLocal.ID), "ber", 2, map[task.State]int{task.Completed: 6}) // rolls up to s-de only
	tr.report(t)
	return tr, all, deLocal
}

// primaryRows is the primary's "Statistics from secondary Servers" of
// "scan all" right after rollUpFixture.
var primaryRows = []row{
	{"s-de", scope.Secondary, []string{"s-de"}, counts{Total: 4, Completed: 3, Failed: 1, Finished: 4}},
	{"s-ber", scope.Secondary, []string{"s-de", "s-ber"}, counts{Total: 4, Completed: 2, Running: 2, Finished: 2}},
	{"v-de", scope.Virtual, []string{"s-de", "v-de"}, counts{Total: 1, Failed: 1, Finished: 1}},
	{"v-eu", scope.Virtual, []string{"v-eu"}, counts{Total: 4, Completed: 4, Finished: 4}},
}

func rolledUp(t *testing.T, s server, id string) counts {
	t.Helper()
	st, err := s.node.RolledUp(context.Background(), id)
	must(t, err)
	return countsOf(st)
}

// TestMultiLevelRollUp: results roll up through every level; each server
// sees "Statistics from secondary Servers" of everything below it, per
// server and per subtree, and a secondary's own distributed task rolls up
// to it but not to the primary.
func TestMultiLevelRollUp(t *testing.T) {
	t.Parallel()
	tr, all, deLocal := rollUpFixture(t)

	if d := cmp.Diff(primaryRows, rows(tr.primary.node.StatisticsFromSecondaries(all.ID))); d != "" {
		t.Errorf("primary: statistics from secondary servers (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"s-ber", "s-de", "v-de", "v-eu"}, tr.primary.node.SecondaryServers(all.ID)); d != "" {
		t.Errorf("primary: servers (-want +got):\n%s", d)
	}
	st, err := tr.primary.node.SecondaryStatistics(all.ID, "s-ber")
	must(t, err)
	if st.Server != "s-ber" || st.Role != scope.Secondary || st.TaskID != all.ID || st.Version.Seq != 1 || !st.At.Equal(t0) {
		t.Errorf("primary: s-ber's figures %+v", st)
	}
	sub, err := tr.primary.node.SubtreeStatistics(all.ID, "s-de")
	must(t, err)
	if d := cmp.Diff(counts{Total: 9, Completed: 5, Failed: 2, Running: 2, Finished: 7}, countsOf(sub)); d != "" {
		t.Errorf("primary: s-de's subtree (-want +got):\n%s", d)
	}
	if d := cmp.Diff(counts{Total: 18, Completed: 14, Failed: 2, Running: 2, Finished: 16}, rolledUp(t, tr.primary, all.ID)); d != "" {
		t.Errorf("primary: rolled up (-want +got):\n%s", d)
	}
	if _, err := tr.primary.node.SubtreeStatistics(all.ID, "nobody"); !errors.Is(err, hierarchy.ErrNotFound) {
		t.Errorf("subtree of an unknown server: %v", err)
	}
	if got := tr.primary.node.SecondaryServers(deLocal.ID); len(got) != 0 {
		t.Errorf("s-de's own task reached the primary: %v", got)
	}

	// The middle level: s-de sees its own subtree, for the primary's task
	// and for its own.
	sdeAll := copyID(t, tr.sDE, all.ID)
	wantDE := []row{
		{"s-ber", scope.Secondary, []string{"s-ber"}, counts{Total: 4, Completed: 2, Running: 2, Finished: 2}},
		{"v-de", scope.Virtual, []string{"v-de"}, counts{Total: 1, Failed: 1, Finished: 1}},
	}
	if d := cmp.Diff(wantDE, rows(tr.sDE.node.StatisticsFromSecondaries(sdeAll))); d != "" {
		t.Errorf("s-de: statistics from secondary servers (-want +got):\n%s", d)
	}
	if d := cmp.Diff(counts{Total: 9, Completed: 5, Failed: 2, Running: 2, Finished: 7}, rolledUp(t, tr.sDE, sdeAll)); d != "" {
		t.Errorf("s-de: rolled up (-want +got):\n%s", d)
	}
	if d := cmp.Diff(counts{Total: 6, Completed: 6, Finished: 6}, rolledUp(t, tr.sDE, deLocal.ID)); d != "" {
		t.Errorf("s-de: its own task rolled up (-want +got):\n%s", d)
	}
	// A leaf has nothing below it.
	if got := tr.sBer.node.StatisticsFromSecondaries(copyID(t, tr.sBer, sdeAll)); len(got) != 0 {
		t.Errorf("s-ber has statistics from below: %+v", got)
	}
}

// TestRollUpRelayedTwiceAndReordered: reports and relays repeated and
// delivered out of order never count a server twice nor bring back older
// figures; any order of the same deliveries ends in the same state.
func TestRollUpRelayedTwiceAndReordered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tr, all, _ := rollUpFixture(t)
	want := rolledUp(t, tr.primary, all.ID)

	// s-de relays the same figures twice more.
	must(t, tr.sDE.node.Report(ctx))
	must(t, tr.sDE.node.Report(ctx))
	if got := rolledUp(t, tr.primary, all.ID); got != want {
		t.Fatalf("after relaying twice: %+v, want %+v", got, want)
	}

	// s-ber finishes its two running devices; the news travels up.
	berCopy := copyID(t, tr.sBer, copyID(t, tr.sDE, all.ID))
	_, err := tr.sBer.m.Runtime().RecordResults(ctx, []task.Result{ // ber-002, ber-003 were running
		{TaskID: berCopy, DeviceID: "ber-002", RunID: 1, Seq: 3, State: task.Completed, UpdatedAt: t0, FinishedAt: t0},
		{TaskID: berCopy, DeviceID: "ber-003", RunID: 1, Seq: 3, State: task.Completed, UpdatedAt: t0, FinishedAt: t0},
	})
	must(t, err)
	must(t, tr.sBer.node.Report(ctx))
	must(t, tr.sDE.node.Report(ctx))
	want = counts{Total: 18, Completed: 16, Failed: 2, Finished: 18}
	if got := rolledUp(t, tr.primary, all.ID); got != want {
		t.Fatalf("after s-ber finished: %+v, want %+v", got, want)
	}

	// Every report s-ber and s-de ever sent, delivered again newest first:
	// nothing changes (each is stale).
	for _, to := range []server{tr.sDE, tr.primary} {
		sent := tr.tap.sentTo(to.node.ID())
		for i := len(sent) - 1; i >= 0; i-- {
			must(t, to.node.ReceiveReport(ctx, sent[i]))
		}
	}
	if got := rolledUp(t, tr.primary, all.ID); got != want {
		t.Fatalf("after replaying old reports: %+v, want %+v", got, want)
	}
	final := rows(tr.primary.node.StatisticsFromSecondaries(all.ID))

	// A fresh primary receiving the same reports shuffled and repeated
	// ends in the state of the real one.
	sent := tr.tap.sentTo("primary")
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 7))
		sink := newServer(t, hierarchy.NewInProc(), hierarchy.Config{ID: "primary", Role: scope.Primary, Children: tr.primary.cfg.Children}, scope.AdminGroup{ID: "g-root"})
		deliveries := append(slices.Clone(sent), sent[:r.IntN(len(sent))]...)
		r.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
		for _, rep := range deliveries {
			must(t, sink.node.ReceiveReport(ctx, rep))
		}
		if d := cmp.Diff(final, rows(sink.node.StatisticsFromSecondaries(all.ID))); d != "" {
			t.Fatalf("seed %d: shuffled deliveries (-in order +shuffled):\n%s", seed, d)
		}
	}
}

// TestLinkDownThenUp: while the link between the primary and s-de is
// down, the rest of the tree gets new tasks and the primary keeps s-de's
// subtree's last figures; once it is up, the tasks reach s-de's subtree
// and its results arrive, each counted once.
func TestLinkDownThenUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tr, all, _ := rollUpFixture(t)
	before := rolledUp(t, tr.primary, all.ID)

	tr.link.Disconnect("primary", "s-de")
	fresh, err := tr.primary.m.Create(ctx, task.System, groupTask("scan new", "g-root", true))
	must(t, err)
	err = tr.primary.node.Distribute(ctx)
	if !errors.Is(err, hierarchy.ErrUnreachable) || !errors.Is(err, hierarchy.ErrRetryable) {
		t.Fatalf("Distribute with s-de unreachable: %v, want ErrUnreachable", err)
	}
	if inherited(t, tr.vEU, fresh.ID) == nil {
		t.Fatal("v-eu did not get the new task while s-de was unreachable")
	}
	if inherited(t, tr.sDE, fresh.ID) != nil {
		t.Fatal("s-de got the new task over a link that is down")
	}

	// Below s-de life goes on: s-ber finishes more devices and reports to
	// s-de, which cannot pass them on.
	sdeAll := copyID(t, tr.sDE, all.ID)
	recordAs(t, tr.sBer.m, copyID(t, tr.sBer, sdeAll), "ber-late", 2, map[task.State]int{task.Completed: 3})
	must(t, tr.sBer.node.Report(ctx))
	if err := tr.sDE.node.Report(ctx); !errors.Is(err, hierarchy.ErrUnreachable) {
		t.Fatalf("s-de's report over a link that is down: %v", err)
	}
	if got := rolledUp(t, tr.primary, all.ID); got != before {
		t.Fatalf("primary while s-de is unreachable: %+v, want the last figures %+v", got, before)
	}
	// s-de itself sees its subtree's news.
	if st, err := tr.sDE.node.SecondaryStatistics(sdeAll, "s-ber"); err != nil || st.Statistics.Total != 7 {
		t.Fatalf("s-de: s-ber's figures %+v, %v; want 7 devices", st, err)
	}

	tr.link.Reconnect("primary", "s-de")
	must(t, tr.primary.node.Distribute(ctx))
	if inherited(t, tr.sDE, fresh.ID) == nil || inherited(t, tr.sBer, copyID(t, tr.sDE, fresh.ID)) == nil {
		t.Fatal("the new task did not reach s-de's subtree after the link came back")
	}
	after := before
	after.Total, after.Completed, after.Finished = after.Total+3, after.Completed+3, after.Finished+3
	for range 3 { // the late figures arrive once, however often they are relayed
		must(t, tr.sDE.node.Report(ctx))
		if got := rolledUp(t, tr.primary, all.ID); got != after {
			t.Fatalf("primary after the link came back: %+v, want %+v", got, after)
		}
	}
	if st, err := tr.primary.node.SecondaryStatistics(all.ID, "s-ber"); err != nil || st.Statistics.Total != 7 {
		t.Fatalf("primary: s-ber's figures %+v, %v; want 7 devices", st, err)
	}

	// The same one level down: s-ber cannot reach s-de.
	tr.link.Disconnect("s-de", "s-ber")
	recordAs(t, tr.sBer.m, copyID(t, tr.sBer, sdeAll), "ber-later", 2, map[task.State]int{task.Failed: 1})
	if err := tr.sBer.node.Report(ctx); !errors.Is(err, hierarchy.ErrUnreachable) {
		t.Fatalf("s-ber's report over a link that is down: %v", err)
	}
	must(t, tr.sDE.node.Report(ctx))
	if got := rolledUp(t, tr.primary, all.ID); got != after {
		t.Fatalf("primary while s-ber is unreachable: %+v, want %+v", got, after)
	}
	tr.link.Reconnect("s-de", "s-ber")
	tr.report(t)
	tr.report(t)
	after.Total, after.Failed, after.Finished = after.Total+1, after.Failed+1, after.Finished+1
	if got := rolledUp(t, tr.primary, all.ID); got != after {
		t.Fatalf("primary after s-ber came back: %+v, want %+v", got, after)
	}
}

// TestRestarts: a restarted middle server reports before it has heard
// from its subtree: the primary keeps the subtree's figures. A server
// removed from under it disappears from the primary once the middle
// server's report is complete again. A restarted leaf starts a new epoch
// whose reports are accepted although their counter starts again.
func TestRestarts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tr, all, _ := rollUpFixture(t)
	want := rolledUp(t, tr.primary, all.ID)

	tr.sDE = restart(t, tr.link, tr.sDE, nil)
	must(t, tr.sDE.node.Report(ctx))
	if d := cmp.Diff(primaryRows, rows(tr.primary.node.StatisticsFromSecondaries(all.ID))); d != "" {
		t.Fatalf("after s-de restarted (-want +got):\n%s", d)
	}
	tr.report(t)
	if got := rolledUp(t, tr.primary, all.ID); got != want {
		t.Fatalf("after s-de heard from its subtree again: %+v, want %+v", got, want)
	}

	// v-de is removed from under s-de.
	tr.sDE = restart(t, tr.link, tr.sDE, func(c *hierarchy.Config) { c.Children = c.Children[:1] })
	must(t, tr.sDE.node.Report(ctx))
	if got := tr.primary.node.SecondaryServers(all.ID); !slices.Contains(got, "v-de") {
		t.Fatalf("v-de dropped on an incomplete report: %v", got)
	}
	must(t, tr.sBer.node.Report(ctx))
	must(t, tr.sDE.node.Report(ctx))
	if d := cmp.Diff([]string{"s-ber", "s-de", "v-eu"}, tr.primary.node.SecondaryServers(all.ID)); d != "" {
		t.Fatalf("servers after v-de was removed (-want +got):\n%s", d)
	}
	if err := tr.vDE.node.Report(ctx); !errors.As(err, new(*hierarchy.UnknownServerError)) {
		t.Fatalf("report of a removed server: %v", err)
	}
	// s-de's older reports, still holding v-de, arrive late (the oldest
	// last): v-de stays gone.
	sent := tr.tap.sentTo("primary")
	for i := len(sent) - 1; i >= 0; i-- {
		must(t, tr.primary.node.ReceiveReport(ctx, sent[i]))
	}
	if d := cmp.Diff([]string{"s-ber", "s-de", "v-eu"}, tr.primary.node.SecondaryServers(all.ID)); d != "" {
		t.Fatalf("servers after late reports (-want +got):\n%s", d)
	}

	// v-eu restarts and reports new figures with a counter at 1 again.
	tr.vEU = restart(t, tr.link, tr.vEU, nil)
	recordAs(t, tr.vEU.m, copyID(t, tr.vEU, all.ID), "veu-new", 2, map[task.State]int{task.Completed: 1})
	must(t, tr.vEU.node.Report(ctx))
	st, err := tr.primary.node.SecondaryStatistics(all.ID, "v-eu")
	must(t, err)
	if st.Statistics.Total != 5 || st.Version.Seq != 1 {
		t.Fatalf("v-eu after its restart: %+v", st)
	}
}

// TestServerMoves: v-de moves from under s-de to under the primary. Its
// copies inherited through s-de are replaced by the primary's, and s-de's
// relay of v-de's older figures does not override the newer ones v-de
// reports directly.
func TestServerMoves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tr, all, deLocal := rollUpFixture(t)
	tr.vDE = restart(t, tr.link, tr.vDE, func(c *hierarchy.Config) { c.Parent = "primary" })
	tr.primary = restart(t, tr.link, tr.primary, func(c *hierarchy.Config) {
		c.Children = append(slices.Clone(c.Children), hierarchy.Child{ID: "v-de", Role: scope.Virtual, Group: "g-de"})
	})
	if err := tr.primary.node.Distribute(ctx); err == nil {
		t.Fatal("s-de distributed to v-de, which has another parent now, without an error")
	}
	vs, err := tr.vDE.node.Tasks(ctx)
	must(t, err)
	if len(vs) != 1 || vs[0].From != "primary" || vs[0].ParentTaskID != all.ID {
		t.Fatalf("v-de's tasks after the move: %+v", vs)
	}
	if inherited(t, tr.vDE, deLocal.ID) != nil {
		t.Fatal("v-de kept s-de's task after the move")
	}
	recordAs(t, tr.vDE.m, copyID(t, tr.vDE, all.ID), "vde-new", 2, map[task.State]int{task.Completed: 2})
	must(t, tr.vDE.node.Report(ctx))
	must(t, tr.sDE.node.Report(ctx)) // still relays v-de's figures from before the move
	st, err := tr.primary.node.SecondaryStatistics(all.ID, "v-de")
	must(t, err)
	if d := cmp.Diff(row{"v-de", scope.Virtual, []string{"v-de"}, counts{Total: 2, Completed: 2, Finished: 2}}, rows([]hierarchy.TaskStatistics{st})[0]); d != "" {
		t.Fatalf("v-de's figures on the primary (-want +got):\n%s", d)
	}
}

// TestCycles: servers configured in a ring refuse a task set that comes
// back to them, a task whose lineage holds them, and a report whose path
// holds them, with a *CycleError; nothing is inherited in a loop.
func TestCycles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	link := hierarchy.NewInProc()
	managed := scope.AdminGroup{ID: "managed"}
	ring := func(id, parent, child string) server {
		return newServer(t, link, hierarchy.Config{ID: id, Role: scope.Secondary, Parent: parent, Root: "managed",
			Children: []hierarchy.Child{{ID: child, Role: scope.Secondary, Group: "managed"}}}, managed)
	}
	a, b, c := ring("a", "c", "b"), ring("b", "a", "c"), ring("c", "b", "a")
	// Even an empty task set stops after one round.
	err := a.node.Distribute(ctx)
	var ce *hierarchy.CycleError
	if !errors.As(err, &ce) || cmp.Diff([]string{"a", "b", "c", "a"}, ce.Path) != "" {
		t.Fatalf("Distribute of nothing around a ring: %v, want a *CycleError", err)
	}
	orig, err := a.m.Create(ctx, task.System, groupTask("ring scan", "managed", true))
	must(t, err)

	err = a.node.Distribute(ctx)
	if !errors.As(err, &ce) || !errors.Is(err, hierarchy.ErrInvalid) {
		t.Fatalf("Distribute around a ring: %v, want a *CycleError", err)
	}
	if d := cmp.Diff([]string{"a", "b", "c", "a"}, ce.Path); d != "" {
		t.Errorf("cycle path (-want +got):\n%s", d)
	}
	vs, err := a.node.Tasks(ctx)
	must(t, err)
	if len(vs) != 1 || vs[0].Inherited {
		t.Fatalf("a inherited in a loop: %+v", vs)
	}
	if v := inherited(t, c, copyID(t, b, orig.ID)); v == nil || v.Origin() != (hierarchy.Hop{Server: "a", TaskID: orig.ID}) {
		t.Fatalf("c's copy: %+v", v)
	}

	// Sent directly (a fresh path), c's copy is still refused by a: its
	// lineage starts at a.
	cc := *inherited(t, c, copyID(t, b, orig.ID)).Task
	err = a.node.ReceiveTasks(ctx, hierarchy.TaskSet{From: "c", To: "a", Tasks: []task.Task{cc}})
	if !errors.As(err, &ce) || cmp.Diff([]string{"a", "b", "c", "a"}, ce.Path) != "" {
		t.Fatalf("a task whose lineage holds the receiver: %v", err)
	}

	// Reports: the ring's figures cannot come back to a.
	must(t, c.node.Report(ctx)) // c -> b
	must(t, b.node.Report(ctx)) // b -> a: b's copy with c's figures under it
	err = a.node.Report(ctx)    // a -> c: a has no inherited copy to report
	must(t, err)
	err = c.node.ReceiveReport(ctx, hierarchy.Report{From: "a", To: "c", Version: hierarchy.Version{Epoch: 1, Seq: 9},
		Statistics: []hierarchy.TaskStatistics{{TaskID: "x", Server: "b", Path: []string{"a", "c", "b"}}}})
	if !errors.As(err, &ce) {
		t.Fatalf("a report whose path holds the receiver: %v", err)
	}

	// Configurations that are cycles by themselves.
	for _, cfg := range []hierarchy.Config{
		{ID: "x", Role: scope.Secondary, Parent: "x", Root: "managed"},
		{ID: "x", Role: scope.Secondary, Parent: "y", Root: "managed", Children: []hierarchy.Child{{ID: "y", Role: scope.Secondary, Group: "managed"}}},
	} {
		cfg.Manager, cfg.Inventory, cfg.Link = a.m, a.inv, link
		if _, err := hierarchy.New(cfg); !errors.As(err, &ce) {
			t.Errorf("New(%+v): %v, want a *CycleError", cfg, err)
		}
	}
}

// TestUnknownServers: messages from or to servers outside the
// configuration fail with an *UnknownServerError (ErrNotFound); malformed
// reports with ValidationErrors, applying nothing.
func TestUnknownServers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tr, all, _ := rollUpFixture(t)
	before := rows(tr.primary.node.StatisticsFromSecondaries(all.ID))

	for _, tc := range []struct {
		name   string
		err    error
		server string
		as     string
	}{
		{"tasks from a server that is not the parent", tr.sBer.node.ReceiveTasks(ctx, hierarchy.TaskSet{From: "primary", To: "s-ber"}), "primary", "parent"},
		{"tasks to the primary", tr.primary.node.ReceiveTasks(ctx, hierarchy.TaskSet{From: "s-de", To: "primary"}), "s-de", "parent"},
		{"report from a grandchild", tr.primary.node.ReceiveReport(ctx, hierarchy.Report{From: "s-ber", To: "primary"}), "s-ber", "child"},
		{"link to an unregistered server", tr.link.SendTasks(ctx, hierarchy.TaskSet{From: "primary", To: "ghost"}), "ghost", "registered"},
	} {
		var ue *hierarchy.UnknownServerError
		if !errors.As(tc.err, &ue) || !errors.Is(tc.err, hierarchy.ErrNotFound) || ue.Server != tc.server || ue.As != tc.as {
			t.Errorf("%s: %v", tc.name, tc.err)
		}
	}

	// A child deployed in the configuration but never registered, and one
	// deployed in a group that does not exist: the others still get their
	// tasks.
	p2 := newServer(t, tr.link, hierarchy.Config{ID: "p2", Role: scope.Primary, Children: []hierarchy.Child{
		{ID: "ghost", Role: scope.Secondary, Group: "g-root"}, {ID: "lost", Role: scope.Secondary, Group: "g-gone"},
		{ID: "fine", Role: scope.Secondary, Group: "g-root"}}}, scope.AdminGroup{ID: "g-root"})
	fine := newServer(t, tr.link, hierarchy.Config{ID: "fine", Role: scope.Secondary, Parent: "p2", Root: "managed"}, scope.AdminGroup{ID: "managed"})
	newServer(t, tr.link, hierarchy.Config{ID: "lost", Role: scope.Secondary, Parent: "p2", Root: "managed"}, scope.AdminGroup{ID: "managed"})
	p2Task, err := p2.m.Create(ctx, task.System, groupTask("scan", "g-root", true))
	must(t, err)
	err = p2.node.Distribute(ctx)
	if !errors.As(err, new(*hierarchy.UnknownServerError)) || !errors.Is(err, hierarchy.ErrNotFound) || !strings.Contains(err.Error(), "g-gone") {
		t.Errorf("Distribute to an unregistered child and one in a missing group: %v", err)
	}
	if inherited(t, fine, p2Task.ID) == nil {
		t.Error("the reachable child did not get its task")
	}

	err = tr.primary.node.ReceiveReport(ctx, hierarchy.Report{From: "s-de", To: "primary", Version: hierarchy.Version{Epoch: 1 << 62, Seq: 1}, Complete: true,
		Statistics: []hierarchy.TaskStatistics{
			{TaskID: all.ID, Server: "s-de", Path: []string{"s-de"}},
			{TaskID: all.ID, Server: "s-ber", Path: []string{"v-eu", "s-ber"}},
			{TaskID: "", Server: "s-de", Path: []string{"s-de"}},
			{TaskID: all.ID, Server: "x", Path: []string{"s-de", "y"}},
		}})
	var ve hierarchy.ValidationErrors
	if !errors.As(err, &ve) || len(ve) != 3 {
		t.Fatalf("malformed report: %v", err)
	}
	if d := cmp.Diff(before, rows(tr.primary.node.StatisticsFromSecondaries(all.ID))); d != "" {
		t.Fatalf("a rejected report changed the figures (-want +got):\n%s", d)
	}
}

// TestConcurrentSync: Distribute and Report on every level at once (as
// independent servers do) leave the tree as one sequential round would;
// run it with -race.
func TestConcurrentSync(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tr, all, _ := rollUpFixture(t)
	want := rows(tr.primary.node.StatisticsFromSecondaries(all.ID))
	ch := *all
	ch.Settings = Scan{Action: "report"}
	_, err := tr.primary.m.Update(ctx, task.System, ch)
	must(t, err)

	var wg sync.WaitGroup
	errc := make(chan error, 100)
	for range 4 {
		wg.Go(func() { errc <- tr.primary.node.Distribute(ctx) })
		wg.Go(func() { errc <- tr.sDE.node.Distribute(ctx) })
		for _, s := range []server{tr.sBer, tr.vDE, tr.sDE, tr.vEU} {
			wg.Go(func() { errc <- s.node.Report(ctx) })
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		must(t, err)
	}
	tr.report(t)
	if d := cmp.Diff(want, rows(tr.primary.node.StatisticsFromSecondaries(all.ID))); d != "" {
		t.Errorf("statistics after concurrent rounds (-want +got):\n%s", d)
	}
	for _, s := range []server{tr.sBer, tr.vDE} {
		v := inherited(t, s, copyID(t, tr.sDE, all.ID))
		if got, _ := v.Task.Settings.(Scan); got.Action != "report" || v.Task.Revision != 2 {
			t.Errorf("%s: copy after concurrent rounds: revision %d, settings %#v", s.node.ID(), v.Task.Revision, v.Task.Settings)
		}
	}
}

// BenchmarkReceiveReport: the primary applies a report relaying the
// figures of 1,000 servers below one secondary for 10 tasks.
func BenchmarkReceiveReport(b *testing.B) {
	ctx := context.Background()
	n, err := hierarchy.New(hierarchy.Config{ID: "primary", Role: scope.Primary, Manager: &task.Manager{}, Inventory: inmem.New(),
		Link: hierarchy.NewInProc(), Children: []hierarchy.Child{{ID: "s", Role: scope.Secondary, Group: "g"}}})
	if err != nil {
		b.Fatal(err)
	}
	r := hierarchy.Report{From: "s", To: "primary", Complete: true}
	for tk := range 10 {
		for srv := range 1000 {
			name := fmt.Sprintf("s-%04d", srv)
			path := []string{"s", name}
			if srv == 0 {
				name, path = "s", []string{"s"}
			}
			r.Statistics = append(r.Statistics, hierarchy.TaskStatistics{TaskID: fmt.Sprintf("t%d", tk), Server: name, Path: path,
				Statistics: task.Statistics{ByState: map[task.State]int{task.Completed: 10, task.Failed: 1}, Total: 11, Finished: 11}})
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Version = hierarchy.Version{Epoch: 1, Seq: int64(i + 1)}
		for j := range r.Statistics {
			r.Statistics[j].Version = r.Version
		}
		if err := n.ReceiveReport(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(r.Statistics))*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
