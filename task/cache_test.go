package task_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
)

// Reads are served from decoded tasks, but every caller gets its own deep
// copy: changing what Get or List returned changes nothing stored or
// cached.
func TestReadsReturnCopies(t *testing.T) {
	t.Parallel()
	b := setup(t)
	in := groupScan("Scan")
	in.Settings = &ScanSettings{MaxFileSizeMB: 10, Action: "report", Paths: []string{"C:\\"}}
	in.Notifications.Email = []string{"a@example.com"}
	created, err := b.m.Create(b.ctx, b.admin, in)
	must(t, err)
	want := clone(t, b, created.ID)
	for range 2 {
		got, err := b.m.Get(b.ctx, b.admin, created.ID)
		must(t, err)
		s := got.Settings.(*ScanSettings)
		s.Paths[0] = "D:\\"
		s.MaxFileSizeMB = 99
		got.Notifications.Email[0] = "evil@example.com"
		got.Scope.ExcludedGroups = append(got.Scope.ExcludedGroups, "sales")
		page, err := b.m.List(b.ctx, b.admin, task.ListParams{})
		must(t, err)
		l := page.Applications[0].Tasks[0]
		l.Settings.(*ScanSettings).Paths[0] = "E:\\"
		l.Name = "renamed"
	}
	got, err := b.m.Get(b.ctx, b.admin, created.ID)
	must(t, err)
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("a caller's changes leaked into later reads (-want +got):\n%s", d)
	}
}

func clone(t *testing.T, b *bundle, id string) *task.Task {
	t.Helper()
	x, err := b.m.Get(b.ctx, b.admin, id)
	must(t, err)
	return x
}

// Two Managers on one store (two replicas on one database): a change
// made through one is read at once through the other, whose cache holds
// the older revision.
func TestCacheIsCoherentAcrossReplicas(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other, err := task.New(task.Config{Store: b.store, Registry: registry(t), Inventory: b.inv, Clock: b.clk})
	must(t, err)
	created, err := b.m.Create(b.ctx, b.admin, groupScan("Scan"))
	must(t, err)
	before, err := other.Get(b.ctx, b.admin, created.ID) // cached by the other replica
	must(t, err)
	upd := *created
	upd.Settings = &ScanSettings{MaxFileSizeMB: 7, Action: "delete"}
	upd.Scope = scope.Scope{Kind: scope.Group, Group: "lab"}
	_, err = b.m.Update(b.ctx, b.admin, upd)
	must(t, err)
	after, err := other.Get(b.ctx, b.admin, created.ID)
	must(t, err)
	if after.Revision != before.Revision+1 || after.Settings.(*ScanSettings).MaxFileSizeMB != 7 || after.Scope.Group != "lab" {
		t.Fatalf("the other replica read revision %d with %+v, want the update", after.Revision, after.Settings)
	}
}

// The same across two stores on one SQLite file: two replicas with their
// own connections; each read validates the cached task against the row.
func TestCacheIsCoherentAcrossSQLiteReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tasks.db")
	var ms []*task.Manager
	for range 2 {
		st, err := sqlstore.OpenSQLite(ctx, path)
		must(t, err)
		t.Cleanup(func() { st.Close() })
		m, err := task.New(task.Config{Store: st, Registry: registry(t)})
		must(t, err)
		ms = append(ms, m)
	}
	admin := task.Actor{ID: "admin"}
	created, err := ms[0].Create(ctx, admin, task.Task{Name: "Scan", Application: appES, Type: "virus_scan", Scope: devicesScope("dev-01")})
	must(t, err)
	for i := range 3 {
		cur, err := ms[1].Get(ctx, admin, created.ID) // cached by replica 1
		must(t, err)
		cur.Settings = &ScanSettings{MaxFileSizeMB: 10 + i, Action: "report"}
		_, err = ms[0].Update(ctx, admin, *cur)
		must(t, err)
		got, err := ms[1].Get(ctx, admin, created.ID)
		must(t, err)
		if s := got.Settings.(*ScanSettings); s.MaxFileSizeMB != 10+i || got.Revision != cur.Revision+1 {
			t.Fatalf("replica 1 read revision %d with %+v after replica 0 wrote revision %d", got.Revision, s, cur.Revision+1)
		}
	}
	must(t, ms[0].Delete(ctx, admin, created.ID, 0))
	if _, err := ms[1].Get(ctx, admin, created.ID); !errors.Is(err, task.ErrNotFound) {
		t.Fatalf("replica 1 still reads the deleted task: %v", err)
	}
}

type envSettings struct {
	Env   map[string][]string `json:"env"`
	Inner *struct {
		Args []string `json:"args"`
	} `json:"inner"`
}

// Maps, nested pointers and slices in settings are copied too.
func TestReadsCopyNestedSettings(t *testing.T) {
	t.Parallel()
	b := setup(t)
	must(t, b.m.Registry().Register(task.TaskType{Application: appES, Name: "env", Settings: envSettings{}}))
	in := envSettings{Env: map[string][]string{"PATH": {"/bin"}}}
	in.Inner = &struct {
		Args []string `json:"args"`
	}{Args: []string{"-v"}}
	created, err := b.m.Create(b.ctx, b.admin, task.Task{Name: "Env", Application: appES, Type: "env", Scope: devicesScope("dev-01"), Settings: in})
	must(t, err)
	got := clone(t, b, created.ID)
	s := got.Settings.(envSettings)
	s.Env["PATH"][0] = "/evil"
	s.Env["NEW"] = nil
	s.Inner.Args[0] = "-x"
	again := clone(t, b, created.ID).Settings.(envSettings)
	if again.Env["PATH"][0] != "/bin" || len(again.Env) != 1 || again.Inner.Args[0] != "-v" {
		t.Fatalf("a caller's change leaked: %+v %+v", again.Env, again.Inner)
	}
}

type mutatingNotifier struct{}

func (mutatingNotifier) Notify(_ context.Context, n task.Notification) error {
	for i := range n.Email {
		n.Email[i] = "evil@example.com"
	}
	return nil
}

// A Notifier that changes what it is given does not change the task the
// Manager keeps decoded.
func TestNotifierCannotChangeCachedTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m, err := task.New(task.Config{Store: b.store, Registry: registry(t), Inventory: b.inv, Clock: b.clk, Notifier: mutatingNotifier{}})
	must(t, err)
	in := groupScan("Scan")
	in.Notifications.Email = []string{"ops@example.com"}
	created, err := m.Create(b.ctx, b.admin, in)
	must(t, err)
	_, err = m.Runtime().RecordResults(b.ctx, []task.Result{{TaskID: created.ID, DeviceID: "dev-01", RunID: 1, Seq: 2, State: task.Completed}})
	must(t, err)
	got, err := m.Get(b.ctx, b.admin, created.ID)
	must(t, err)
	if got.Notifications.Email[0] != "ops@example.com" {
		t.Fatalf("the Notifier changed the cached task: %v", got.Notifications.Email)
	}
}
