package inventorytest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
)

// noUsers is an InUse check that finds no task.
var noUsers = scope.SelectionUsersFunc(func(context.Context, scope.SelectionID) ([]string, error) { return nil, nil })

// runSavedSelections checks the scope.SelectionStore contract of inv.
func runSavedSelections(t *testing.T, inv scope.Inventory) {
	ctx := context.Background()
	byID := scope.Scope{Kind: scope.Selection, SelectionID: "sel-win"}
	st, ok := inv.(scope.SelectionStore)
	if !ok {
		t.Log("scope.SelectionStore not implemented: a scope naming a saved selection must be refused")
		if _, err := scope.Resolve(ctx, byID, inv); !errors.Is(err, scope.ErrInvalid) {
			t.Errorf("Resolve(selection_id) on an inventory without saved selections = %v, want ErrInvalid", err)
		}
		return
	}
	ref := inmem.New()
	g, d := Fixture()
	if err := ref.PutGroups(ctx, g...); err != nil {
		t.Fatal(err)
	}
	if err := ref.PutDevices(ctx, d...); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.FixedZone("CET", 3600))
	const (
		winExpr   = `device.os.platform == "windows"`
		groupExpr = `device.group == "g-b" || device.group == "g-a1"`
	)
	resolvesLike := func(when, expr string, rev int64) {
		t.Helper()
		want, err := scope.Resolve(ctx, scope.Scope{Kind: scope.Selection, Selection: expr}, ref)
		if err != nil {
			t.Fatal(err)
		}
		want.SelectionID, want.SelectionRevision = "sel-win", rev
		got, err := scope.Resolve(ctx, byID, inv)
		if err != nil {
			t.Fatalf("%s: Resolve(selection_id) = %v", when, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: a scope naming the selection must resolve like its current expression %s (-want +got):\n%s", when, expr, diff)
		}
	}

	// Nothing saved yet.
	if _, err := st.Selection(ctx, "sel-win"); !errors.Is(err, scope.ErrNotFound) {
		t.Errorf("Selection(missing) = %v, want ErrNotFound", err)
	}
	var nf *scope.SelectionNotFoundError
	if _, err := scope.Resolve(ctx, byID, inv); !errors.As(err, &nf) || !errors.Is(err, scope.ErrNotFound) {
		t.Errorf("Resolve(selection_id of no selection) = %v, want a *scope.SelectionNotFoundError", err)
	}
	if err := byID.ValidateWith(ctx, inv); !errors.Is(err, scope.ErrNotFound) {
		t.Errorf("ValidateWith(selection_id of no selection) = %v, want ErrNotFound", err)
	}
	if _, err := st.SelectionHistory(ctx, scope.SelectionHistoryParams{ID: "sel-win"}); !errors.Is(err, scope.ErrNotFound) {
		t.Errorf("SelectionHistory(missing) = %v, want ErrNotFound", err)
	}

	// Bad input is refused with ErrInvalid and stores nothing.
	good := scope.PutSelectionParams{ID: "sel-win", Name: "Windows devices", Expr: winExpr, Actor: "admin", At: at}
	for name, mod := range map[string]func(*scope.PutSelectionParams){
		"syntax error": func(p *scope.PutSelectionParams) { p.Expr = `device.os.name ==` },
		"not bool":     func(p *scope.PutSelectionParams) { p.Expr = `device.os.name` },
		"over cost limit": func(p *scope.PutSelectionParams) {
			p.Expr = `device.tags.exists(a, device.tags.exists(b, a + b == device.os.name))`
		},
		"empty expression": func(p *scope.PutSelectionParams) { p.Expr = " " },
		"too long": func(p *scope.PutSelectionParams) {
			p.Expr = strings.Repeat("true && ", scope.MaxSelectionLength) + "true"
		},
		"NUL in expression": func(p *scope.PutSelectionParams) { p.Expr = "device.id == \"a\x00b\"" },
		"no id":             func(p *scope.PutSelectionParams) { p.ID = "" },
		"long id":           func(p *scope.PutSelectionParams) { p.ID = scope.SelectionID(strings.Repeat("x", scope.MaxIDLength+1)) },
		"NUL in id":         func(p *scope.PutSelectionParams) { p.ID = "sel\x00" },
		"no name":           func(p *scope.PutSelectionParams) { p.Name = "" },
		"long name":         func(p *scope.PutSelectionParams) { p.Name = strings.Repeat("n", scope.MaxSelectionNameLength+1) },
		"bad UTF-8 name":    func(p *scope.PutSelectionParams) { p.Name = "\xff" },
		"no actor":          func(p *scope.PutSelectionParams) { p.Actor = "" },
		"long actor":        func(p *scope.PutSelectionParams) { p.Actor = strings.Repeat("a", scope.MaxActorLength+1) },
		"no time":           func(p *scope.PutSelectionParams) { p.At = time.Time{} },
		"negative rev":      func(p *scope.PutSelectionParams) { p.ExpectRevision = -1 },
	} {
		p := good
		mod(&p)
		if _, err := st.PutSelection(ctx, p); !errors.Is(err, scope.ErrInvalid) {
			t.Errorf("PutSelection(%s) = %v, want ErrInvalid", name, err)
		}
	}
	if all, err := st.Selections(ctx); err != nil || len(all) != 0 {
		t.Fatalf("after refused writes Selections = %v, %v; want none", all, err)
	}

	// Create, then an edit applies to the scope that names it.
	sel, err := st.PutSelection(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	want := scope.SavedSelection{ID: "sel-win", Name: "Windows devices", Expr: winExpr, Revision: 1, UpdatedAt: at.UTC(), UpdatedBy: "admin"}
	if diff := cmp.Diff(want, sel); diff != "" {
		t.Errorf("PutSelection (-want +got):\n%s", diff)
	}
	if got, err := st.Selection(ctx, "sel-win"); err != nil || !cmp.Equal(want, *got) || got.UpdatedAt.Location() != time.UTC {
		t.Errorf("Selection = %+v, %v; want %+v in UTC", got, err, want)
	}
	if err := byID.ValidateWith(ctx, inv); err != nil {
		t.Errorf("ValidateWith(saved selection) = %v", err)
	}
	resolvesLike("after create", winExpr, 1)
	if _, err := st.PutSelection(ctx, good); !errors.Is(err, scope.ErrConflict) {
		t.Errorf("creating an existing selection = %v, want ErrConflict", err)
	}
	edit := good
	edit.Expr, edit.ExpectRevision, edit.Actor, edit.At = groupExpr, 1, "auditor", at.Add(time.Hour)
	if _, err := st.PutSelection(ctx, edit); err != nil {
		t.Fatal(err)
	}
	resolvesLike("after edit", groupExpr, 2)
	if _, err := st.PutSelection(ctx, edit); !errors.Is(err, scope.ErrConflict) {
		t.Errorf("an edit of a stale revision = %v, want ErrConflict", err)
	}
	missing := edit
	missing.ID = "sel-none"
	if _, err := st.PutSelection(ctx, missing); !errors.Is(err, scope.ErrNotFound) {
		t.Errorf("an edit of a missing selection = %v, want ErrNotFound", err)
	}
	bad := edit
	bad.ExpectRevision, bad.Expr = 2, `device.os.name ==`
	if _, err := st.PutSelection(ctx, bad); !errors.Is(err, scope.ErrInvalid) {
		t.Errorf("an edit to a bad expression = %v, want ErrInvalid", err)
	}
	resolvesLike("after a refused edit", groupExpr, 2)
	other := scope.PutSelectionParams{ID: "sel-a", Name: "A", Expr: "true", Actor: "admin", At: at}
	if _, err := st.PutSelection(ctx, other); err != nil {
		t.Fatal(err)
	}
	if all, err := st.Selections(ctx); err != nil || len(all) != 2 || all[0].ID != "sel-a" || all[1].ID != "sel-win" || all[1].Revision != 2 {
		t.Errorf("Selections = %+v, %v; want sel-a, then sel-win at revision 2", all, err)
	}

	// Explain names the selection.
	for _, dev := range d {
		e, err := scope.Explain(ctx, byID, inv, dev.ID)
		if err != nil {
			t.Fatal(err)
		}
		we, _ := scope.Explain(ctx, scope.Scope{Kind: scope.Selection, Selection: groupExpr}, ref, dev.ID)
		if e.Membership != we.Membership || e.Rule != we.Rule || e.Field != "selection_id" || e.SelectionID != "sel-win" || e.SelectionRevision != 2 ||
			!strings.Contains(e.Reason, `"Windows devices"`) || !strings.Contains(e.Reason, "sel-win") {
			t.Errorf("Explain(%s) = %+v; want %s/%s naming the selection \"Windows devices\" (sel-win, revision 2)", dev.ID, e, we.Membership, we.Rule)
		}
	}

	// Deleting a selection in use is refused.
	users := scope.SelectionUsersFunc(func(_ context.Context, id scope.SelectionID) ([]string, error) {
		if id == "sel-win" {
			return []string{"task-7"}, nil
		}
		return nil, nil
	})
	del := scope.DeleteSelectionParams{ID: "sel-win", InUse: users, Actor: "admin", At: at.Add(2 * time.Hour)}
	var inUse *scope.SelectionInUseError
	if err := st.DeleteSelection(ctx, del); !errors.As(err, &inUse) || !errors.Is(err, scope.ErrConflict) || !slices.Equal(inUse.Tasks, []string{"task-7"}) {
		t.Errorf("DeleteSelection(in use) = %v, want a *scope.SelectionInUseError naming task-7", err)
	}
	resolvesLike("after a refused delete", groupExpr, 2)
	boom := errors.New("task store down")
	del.InUse = scope.SelectionUsersFunc(func(context.Context, scope.SelectionID) ([]string, error) { return nil, boom })
	if err := st.DeleteSelection(ctx, del); !errors.Is(err, boom) {
		t.Errorf("DeleteSelection with a failing InUse = %v, want its error", err)
	}
	del.InUse = nil
	if err := st.DeleteSelection(ctx, del); !errors.Is(err, scope.ErrInvalid) {
		t.Errorf("DeleteSelection without InUse = %v, want ErrInvalid", err)
	}
	del.InUse, del.ExpectRevision = noUsers, 1
	if err := st.DeleteSelection(ctx, del); !errors.Is(err, scope.ErrConflict) {
		t.Errorf("DeleteSelection of a stale revision = %v, want ErrConflict", err)
	}
	del.ExpectRevision = 2
	if err := st.DeleteSelection(ctx, del); err != nil {
		t.Fatalf("DeleteSelection(unused) = %v", err)
	}
	if err := st.DeleteSelection(ctx, del); !errors.Is(err, scope.ErrNotFound) {
		t.Errorf("DeleteSelection(deleted) = %v, want ErrNotFound", err)
	}
	if _, err := scope.Resolve(ctx, byID, inv); !errors.As(err, &nf) {
		t.Errorf("Resolve(deleted selection) = %v, want a *scope.SelectionNotFoundError", err)
	}

	// History: who changed what, when; kept after the deletion.
	h, err := st.SelectionHistory(ctx, scope.SelectionHistoryParams{ID: "sel-win"})
	if err != nil {
		t.Fatal(err)
	}
	wantH := []scope.SelectionRevision{
		{Selection: "sel-win", Number: 1, Action: scope.SelectionCreated, Actor: "admin", At: at.UTC(), Name: "Windows devices", Expr: winExpr},
		{Selection: "sel-win", Number: 2, Action: scope.SelectionUpdated, Actor: "auditor", At: at.Add(time.Hour).UTC(), Name: "Windows devices", Expr: groupExpr, Changed: []string{"expr"}},
		{Selection: "sel-win", Number: 3, Action: scope.SelectionDeleted, Actor: "admin", At: at.Add(2 * time.Hour).UTC(), Name: "Windows devices", Expr: groupExpr},
	}
	if diff := cmp.Diff(wantH, h); diff != "" {
		t.Errorf("SelectionHistory (-want +got):\n%s", diff)
	}
	for _, r := range h {
		if r.At.Location() != time.UTC {
			t.Errorf("revision %d at %v, want UTC", r.Number, r.At)
		}
	}
	if page, err := st.SelectionHistory(ctx, scope.SelectionHistoryParams{ID: "sel-win", After: 1, Limit: 1}); err != nil || len(page) != 1 || page[0].Number != 2 {
		t.Errorf("SelectionHistory(after 1, limit 1) = %+v, %v; want revision 2", page, err)
	}
	if _, err := st.SelectionHistory(ctx, scope.SelectionHistoryParams{ID: "sel-win", Limit: scope.MaxSelectionHistoryLimit + 1}); !errors.Is(err, scope.ErrInvalid) {
		t.Errorf("SelectionHistory(limit too large) = %v, want ErrInvalid", err)
	}

	// The id can be used again; its history continues.
	again, err := st.PutSelection(ctx, good)
	if err != nil || again.Revision != 4 {
		t.Fatalf("re-creating a deleted selection = %+v, %v; want revision 4", again, err)
	}
	resolvesLike("after re-creating", winExpr, 4)
}
