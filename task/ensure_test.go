package task_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
)

// Re-running a host's setup against the same database succeeds: the
// second Ensure returns the task the first created, unmodified.
func TestEnsureCreatesThenReturnsTheExistingTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first, created, err := b.m.Ensure(b.ctx, b.admin, groupScan("Nightly scan"))
	must(t, err)
	if !created || first.Revision != 1 {
		t.Fatalf("first Ensure: created %v, revision %d; want a new task", created, first.Revision)
	}
	again := groupScan("NIGHTLY SCAN") // names compare case-insensitively
	again.Description = "changed by the second setup run"
	again.Scope.Group = "lab"
	got, created, err := b.m.Ensure(b.ctx, b.admin, again)
	must(t, err)
	if created || got.ID != first.ID || got.Revision != 1 || got.Description != "" || got.Scope.Group != "office" {
		t.Fatalf("second Ensure: created %v, got %+v; want task %s unmodified", created, got, first.ID)
	}
	revs, err := b.m.Revisions(b.ctx, b.admin, first.ID, 0, 0)
	must(t, err)
	if len(revs) != 1 {
		t.Fatalf("Ensure wrote %d revisions, want 1", len(revs))
	}
}

// An existing task is returned only to a caller who may read it; a name
// held by a task of another type is a conflict, not that task.
func TestEnsureChecksReadAccessAndType(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, _, err := b.m.Ensure(b.ctx, b.admin, groupScan("Scan"))
	must(t, err)
	m := managerAuthz(t, b, only(task.OpCreate), zerolog.Nop())
	if _, _, err := m.Ensure(b.ctx, task.Actor{ID: "creator"}, groupScan("Scan")); !errors.Is(err, task.ErrPermission) {
		t.Errorf("Ensure by a caller without read access = %v, want ErrPermission", err)
	}
	upd := task.Task{Name: "scan", Application: appES, Type: "update", Scope: scope.Scope{Kind: scope.Group, Group: "office"}}
	if _, _, err := b.m.Ensure(b.ctx, b.admin, upd); !errors.Is(err, task.ErrConflict) {
		t.Errorf("Ensure of another type under a taken name = %v, want ErrConflict", err)
	}
	// A name no task can have is refused as Create refuses it, without
	// being looked up.
	for _, name := range []string{"", strings.Repeat("x", 1<<20), "bad\xffutf8"} {
		if _, _, err := b.m.Ensure(b.ctx, b.admin, groupScan(name)); !errors.Is(err, task.ErrInvalid) {
			t.Errorf("Ensure of name %.20q = %v, want ErrInvalid", name, err)
		}
	}
	// Invalid input that would create a task is refused as Create refuses it.
	bad := groupScan("Other")
	bad.Scope.Group = "no-such-group"
	if _, _, err := b.m.Ensure(b.ctx, b.admin, bad); !errors.Is(err, task.ErrInvalid) {
		t.Errorf("Ensure of an invalid new task = %v, want ErrInvalid", err)
	}
}

// racingStore holds every name look-up until callers look-ups (over
// all the racingStores of a race) have been made, so that the callers all
// see the name free and all try to create it.
type racingStore struct {
	storage.Store
	race *race
}

type race struct {
	mu      sync.Mutex
	waiting int
	callers int
	release chan struct{}
}

func (s *racingStore) TaskIDByUniqueName(ctx context.Context, name string) (string, error) {
	r := s.race
	r.mu.Lock()
	r.waiting++
	if r.waiting == r.callers {
		close(r.release)
	}
	r.mu.Unlock()
	<-r.release
	return s.Store.(storage.UniqueNameLookup).TaskIDByUniqueName(ctx, name)
}

// Concurrent setups racing on one name all get the same task, and
// exactly one of them created it: callers of one Manager on memstore, and
// Managers of two processes on one SQLite database (each with its own
// store handle).
func TestEnsureRaceGivesEveryCallerTheSameTask(t *testing.T) {
	t.Parallel()
	const callers = 8
	sqlite := func(t *testing.T) []storage.Store {
		path := filepath.Join(t.TempDir(), "ensure.db")
		var out []storage.Store
		for range 2 {
			st, err := sqlstore.OpenSQLite(context.Background(), path)
			must(t, err)
			t.Cleanup(func() { st.Close() })
			out = append(out, st)
		}
		return out
	}
	for name, stores := range map[string]func(*testing.T) []storage.Store{
		"memstore": func(*testing.T) []storage.Store { return []storage.Store{memstore.New()} },
		"sqlite":   sqlite,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			sts := stores(t)
			var idMu sync.Mutex
			ids := 0
			r := &race{callers: callers, release: make(chan struct{})}
			var managers []*task.Manager
			for _, st := range sts {
				m, err := task.New(task.Config{Store: &racingStore{Store: st, race: r}, Registry: registry(t), Inventory: b.inv, Clock: b.clk,
					NewID: func() string { idMu.Lock(); defer idMu.Unlock(); ids++; return fmt.Sprintf("task-%04d", ids) }})
				must(t, err)
				managers = append(managers, m)
			}
			type answer struct {
				id      string
				created bool
				err     error
			}
			answers := make([]answer, callers)
			var wg sync.WaitGroup
			for i := range callers {
				wg.Go(func() {
					got, created, err := managers[i%len(managers)].Ensure(b.ctx, b.admin, groupScan("Setup scan"))
					answers[i] = answer{created: created, err: err}
					if got != nil {
						answers[i].id = got.ID
					}
				})
			}
			wg.Wait()
			createdN := 0
			for i, a := range answers {
				if a.err != nil {
					t.Fatalf("caller %d: %v", i, a.err)
				}
				if a.id != answers[0].id {
					t.Errorf("caller %d got task %q, caller 0 got %q", i, a.id, answers[0].id)
				}
				if a.created {
					createdN++
				}
			}
			if createdN != 1 {
				t.Errorf("%d callers created the task, want exactly 1", createdN)
			}
			res, err := managers[0].List(b.ctx, b.admin, task.ListParams{})
			must(t, err)
			if n := len(res.Applications); n != 1 || len(res.Applications[0].Tasks) != 1 {
				t.Errorf("the store holds %+v, want one task", res.Applications)
			}
		})
	}
}
