package hierarchy_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/hierarchy"
)

// FuzzReceiveReport hands a durable primary arbitrary reports from its
// child: it never panics, a refused report is ErrInvalid or ErrNotFound
// and changes nothing, and what it holds afterwards is what its store
// holds (a restart shows the same figures).
func FuzzReceiveReport(f *testing.F) {
	for _, s := range []string{
		`{"From":"s","To":"p","Version":{"epoch":1,"seq":1},"Complete":true,"Statistics":[{"TaskID":"t","Server":"s","Path":["s"],"Statistics":{"by_state":{"failed":2},"total":2}}]}`,
		`{"From":"s","Version":{"epoch":2,"seq":1},"Statistics":[{"TaskID":"t","Server":"v","Path":["s","v"]},{"TaskID":"t","Server":"s","Path":["s"]}]}`,
		`{"From":"s","Version":{"epoch":1,"seq":1},"Statistics":[{"TaskID":"t","Server":"p","Path":["s","p"]}]}`,
		`{"From":"s","Version":{"epoch":1,"seq":1},"Statistics":[{"TaskID":"","Server":"s","Path":[]}]}`,
		`{"From":"x","Version":{"epoch":1,"seq":1}}`,
		`{"From":"s","Version":{"epoch":1,"seq":1},"Statistics":[{"TaskID":"t","Server":"v","Path":["s","v","s","v"]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r hierarchy.Report
		if json.Unmarshal(b, &r) != nil {
			return
		}
		ctx := context.Background()
		store := memstore.New()
		cfg := hierarchy.Config{ID: "p", Role: scope.Primary, Manager: &task.Manager{}, Inventory: memstore.New().Devices(), Link: hierarchy.NewInProc(),
			Children: []hierarchy.Child{{ID: "s", Role: scope.Secondary, Group: "g"}}, Store: store}
		n, err := hierarchy.Open(ctx, cfg)
		must(t, err)
		err = n.ReceiveReport(ctx, r)
		if err != nil && !errors.Is(err, hierarchy.ErrInvalid) && !errors.Is(err, hierarchy.ErrNotFound) {
			t.Fatalf("untyped error %v", err)
		}
		again, err := hierarchy.Open(ctx, cfg)
		must(t, err)
		ids := map[string]bool{}
		for _, e := range r.Statistics {
			ids[e.TaskID] = true
		}
		for id := range ids {
			a, b := n.StatisticsFromSecondaries(id), again.StatisticsFromSecondaries(id)
			if len(a) != len(b) {
				t.Fatalf("task %q: %d figures held, %d after a restart", id, len(a), len(b))
			}
		}
	})
}
