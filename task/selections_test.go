package task_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

// A task whose scope is a saved selection follows every edit of the
// selection (the product documentation's "one of the existing device
// selections"): the next start resolves the selection's current
// expression. The selection cannot be deleted while the task uses it, and
// a task cannot refer to a selection that does not exist.
func TestSavedSelectionEditReachesTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	at := b.clk.Now()
	_, err := b.inv.PutSelection(b.ctx, scope.PutSelectionParams{ID: "sel-acc", Name: "Accounting PCs", Expr: `device.group == "accounting"`, Actor: "admin", At: at})
	must(t, err)
	sc := scope.Scope{Kind: scope.Selection, SelectionID: "sel-acc"}
	if _, err := b.m.Create(b.ctx, b.admin, task.Task{Name: "Ghost", Application: appES, Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Selection, SelectionID: "sel-none"}}); !errors.Is(err, task.ErrInvalid) {
		t.Fatalf("Create with an unknown selection = %v, want ErrInvalid", err)
	}
	created, err := b.m.Create(b.ctx, b.admin, task.Task{Name: "Acc", Application: appES, Type: "virus_scan", Scope: sc})
	must(t, err)
	run, err := b.m.Start(b.ctx, b.admin, created.ID)
	must(t, err)
	// accounting holds dev-01..03; odd ones are connected.
	if got := append(slices.Clone(run.Devices), run.Skipped...); len(run.Devices) != 2 || len(got) != 3 {
		t.Fatalf("first run: devices %v, skipped %v; want the 3 accounting devices, 2 connected", run.Devices, run.Skipped)
	}
	// Editing the selection changes the task's next run; the task is not
	// edited.
	_, err = b.inv.PutSelection(b.ctx, scope.PutSelectionParams{ID: "sel-acc", Name: "Accounting and lab PCs", Expr: `device.group in ["accounting", "lab"]`, ExpectRevision: 1, Actor: "admin", At: at})
	must(t, err)
	b.clk.Add(1)
	run, err = b.m.Start(b.ctx, b.admin, created.ID)
	must(t, err)
	if n := len(run.Devices) + len(run.Skipped); n != 6 {
		t.Fatalf("run after the edit: %d devices (%v + skipped %v), want the 6 of accounting and lab", n, run.Devices, run.Skipped)
	}
	if got, _ := b.m.Get(b.ctx, b.admin, created.ID); got.Revision != created.Revision {
		t.Fatalf("the task went from revision %d to %d; editing a selection must not edit its tasks", created.Revision, got.Revision)
	}

	users, err := b.m.TasksUsingSelection(b.ctx, "sel-acc")
	if err != nil || !slices.Equal(users, []string{created.ID}) {
		t.Fatalf("TasksUsingSelection = %v, %v; want [%s]", users, err, created.ID)
	}
	var inUse *scope.SelectionInUseError
	del := scope.DeleteSelectionParams{ID: "sel-acc", InUse: b.m, Actor: "admin", At: at}
	if err := b.inv.DeleteSelection(b.ctx, del); !errors.As(err, &inUse) || !errors.Is(err, scope.ErrConflict) {
		t.Fatalf("DeleteSelection of a selection in use = %v, want *scope.SelectionInUseError", err)
	}
	must(t, b.m.Delete(b.ctx, b.admin, created.ID, 0))
	if err := b.inv.DeleteSelection(b.ctx, del); err != nil {
		t.Fatalf("DeleteSelection after its task was deleted = %v", err)
	}
}
