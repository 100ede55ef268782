package task

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
)

var _ scope.SelectionUsers = (*Manager)(nil)

// maxSelectionUsers is the most task ids TasksUsingSelection returns; one
// is enough to refuse a deletion, a few help the administrator.
const maxSelectionUsers = 100

// TasksUsingSelection implements scope.SelectionUsers over the task store:
// the ids of the tasks whose scope refers to the saved selection id (at
// most 100, in id order). Pass the Manager as
// scope.DeleteSelectionParams.InUse so a selection that tasks use cannot be
// deleted. It reads every stored task's scope, so the answer is the task
// store's own and cannot drift from it; it is not filtered by permission
// (it answers "is it in use", not "show me the tasks").
func (m *Manager) TasksUsingSelection(ctx context.Context, id scope.SelectionID) ([]string, error) {
	var out []string
	after := ""
	for {
		page, err := m.store.ListTasks(ctx, storage.ListTasksParams{Order: storage.OrderByID, After: after, Limit: storage.MaxListLimit})
		if err != nil {
			return nil, m.storeErr(err, "list tasks")
		}
		for _, rec := range page.Tasks {
			var body struct {
				Scope struct {
					SelectionID scope.SelectionID `json:"selection_id"`
				} `json:"scope"`
			}
			if err := json.Unmarshal(rec.Body, &body); err != nil {
				return nil, fmt.Errorf("task %s: stored task cannot be decoded: %w", rec.ID, err)
			}
			if body.Scope.SelectionID == id {
				out = append(out, rec.ID)
				if len(out) == maxSelectionUsers {
					return out, nil
				}
			}
		}
		if page.Next == "" {
			return out, nil
		}
		after = page.Next
	}
}
