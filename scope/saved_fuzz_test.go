package scope_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
)

// FuzzPutSelection saves whatever a console or API client sends as a
// saved selection: a bad value is refused with ErrInvalid and stores
// nothing; a saved one compiles and resolves through a scope naming it.
func FuzzPutSelection(f *testing.F) {
	f.Add("sel-1", "Windows", `device.os.platform == "windows"`, "admin")
	f.Add("", "x", "true", "admin")
	f.Add("sel\x00", "x", "true", "admin")
	f.Add("s", "\xff", "true", "a")
	f.Add("s", "n", `device.tags.exists(a, device.tags.exists(b, a + b == device.os.name))`, "a")
	f.Add("s", "n", `device.os.name ==`, "a")
	ctx := context.Background()
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, id, name, expr, actor string) {
		inv := inmem.New()
		if err := inv.PutDevices(context.Background(), scope.Device{ID: "d-1", Connected: true}); err != nil {
			t.Fatal(err)
		}
		sel, err := inv.PutSelection(ctx, scope.PutSelectionParams{ID: scope.SelectionID(id), Name: name, Expr: expr, Actor: actor, At: at})
		if err != nil {
			if !errors.Is(err, scope.ErrInvalid) {
				t.Fatalf("PutSelection = %v, want nil or ErrInvalid", err)
			}
			if all, _ := inv.Selections(ctx); len(all) != 0 {
				t.Fatalf("a refused selection was stored: %+v", all)
			}
			return
		}
		if sel.Revision != 1 || sel.Expr != expr {
			t.Fatalf("PutSelection = %+v", sel)
		}
		if _, err := scope.CompileSelection(expr); err != nil {
			t.Fatalf("saved an expression that does not compile: %v", err)
		}
		r, err := scope.Resolve(ctx, scope.Scope{Kind: scope.Selection, SelectionID: sel.ID}, inv)
		if err != nil || r.SelectionID != sel.ID {
			t.Fatalf("Resolve(saved selection) = %+v, %v", r, err)
		}
	})
}
