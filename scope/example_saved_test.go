package scope_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/taskfleet/taskfleet/scope"
)

// A task's scope names a saved selection; editing the selection changes
// what the same scope resolves to, and the selection cannot be deleted
// while a task uses it.
func ExampleSelectionStore() {
	ctx := context.Background()
	inv := exampleInventory()
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC) // from the host's clock
	_, err := inv.PutSelection(ctx, scope.PutSelectionParams{
		ID: "sel-acct", Name: "Accounting", Expr: `"accounting" in device.tags`, Actor: "admin", At: at,
	})
	if err != nil {
		panic(err)
	}
	taskScope := scope.Scope{Kind: scope.Selection, SelectionID: "sel-acct"}
	r, _ := scope.Resolve(ctx, taskScope, inv)
	fmt.Println("revision", r.SelectionRevision, r.Devices, "offline", r.Offline)

	// Narrow the selection to Windows: every task naming it follows.
	_, _ = inv.PutSelection(ctx, scope.PutSelectionParams{
		ID: "sel-acct", Name: "Accounting (Windows)", Expr: `"accounting" in device.tags && device.os.platform == "windows"`,
		ExpectRevision: 1, Actor: "auditor", At: at.Add(time.Hour),
	})
	r, _ = scope.Resolve(ctx, taskScope, inv)
	fmt.Println("revision", r.SelectionRevision, r.Devices, "offline", r.Offline)
	e, _ := scope.Explain(ctx, taskScope, inv, "d-3")
	fmt.Println(e.Reason)

	// The host's task store says which tasks use it.
	users := scope.SelectionUsersFunc(func(context.Context, scope.SelectionID) ([]string, error) {
		return []string{"task-0001"}, nil
	})
	err = inv.DeleteSelection(ctx, scope.DeleteSelectionParams{ID: "sel-acct", InUse: users, Actor: "admin", At: at.Add(2 * time.Hour)})
	fmt.Println(errors.Is(err, scope.ErrConflict), err)

	h, _ := inv.SelectionHistory(ctx, scope.SelectionHistoryParams{ID: "sel-acct"})
	for _, rev := range h {
		fmt.Println(rev.Number, rev.Action, rev.Actor, rev.At.Format(time.Kitchen), rev.Changed)
	}
	// Output:
	// revision 1 [d-2 d-3] offline [d-4]
	// revision 2 [d-2] offline [d-4]
	// the device does not match the selection "Accounting (Windows)" (sel-acct, revision 2)
	// true selection "sel-acct" is the scope of 1 task(s) (task-0001): change their scope first
	// 1 created admin 9:00AM []
	// 2 updated auditor 10:00AM [name expr]
}
