package task_test

import (
	"context"
	"fmt"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
)

// A host's setup runs at every start against the same database: Ensure
// creates the task the first time and returns it, unchanged, afterwards.
func ExampleManager_Ensure() {
	ctx := context.Background()
	inv := inmem.New()
	_ = inv.PutGroups(ctx, scope.AdminGroup{ID: "office", Name: "Office"})
	reg := task.NewRegistry()
	_ = reg.Register(task.TaskType{Application: "Endpoint Security", Name: "virus_scan"})
	m, _ := task.New(task.Config{Store: memstore.New(), Registry: reg, Inventory: inv})
	admin := task.Actor{ID: "admin"}

	setup := func() {
		t, created, err := m.Ensure(ctx, admin, task.Task{Name: "Nightly scan", Application: "Endpoint Security",
			Type: "virus_scan", Scope: scope.Scope{Kind: scope.Group, Group: "office"}})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(t.Name, "created:", created, "revision", t.Revision)
	}
	setup()
	setup() // the second run finds the task
	// Output:
	// Nightly scan created: true revision 1
	// Nightly scan created: false revision 1
}
