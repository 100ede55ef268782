package task_test

import (
	"errors"
	"testing"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
)

// FuzzStoredBody stores arbitrary bytes as a task's body (a damaged row,
// a task saved by another version) and checks that the task is isolated:
// Get returns the task or an ErrUndecodable error, never panics; List
// never fails because of it; Delete removes it.
func FuzzStoredBody(f *testing.F) {
	f.Add([]byte(`{"id":"task-0001","name":"Scan","application":"Endpoint Security","type":"virus_scan","settings":{"max_file_size_mb":"big"}}`))
	f.Add([]byte(`{"id":"task-0001","name":"Scan","application":"Endpoint Security","type":"virus_scan","settings":{"unknown":1,"action":"report","max_file_size_mb":5}}`))
	f.Add([]byte(`{"settings":[1,2,3]}`))
	f.Add([]byte(`not json`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 1<<16 {
			return
		}
		b := setup(t)
		created, err := b.m.Create(b.ctx, b.admin, groupScan("Scan"))
		must(t, err)
		other, err := b.m.Create(b.ctx, b.admin, groupScan("Other"))
		must(t, err)
		rec, err := b.store.GetTask(b.ctx, created.ID)
		must(t, err)
		rec.Body = body
		rec.Revision++
		must(t, b.store.UpdateTask(b.ctx, storage.UpdateTaskParams{Task: rec, ExpectRevision: rec.Revision - 1,
			Revision: storage.RevisionRecord{TaskID: rec.ID, Number: rec.Revision, Author: "fuzz", At: start, Action: "update", Body: body, Diff: []byte(`{"changes":[]}`)}}))
		if _, err := b.m.Get(b.ctx, b.admin, created.ID); err != nil && !errors.Is(err, task.ErrUndecodable) {
			t.Fatalf("Get = %v, want a task or ErrUndecodable", err)
		}
		page, err := b.m.List(b.ctx, b.admin, task.ListParams{})
		must(t, err)
		found := false
		for _, a := range page.Applications {
			for _, x := range a.Tasks {
				found = found || x.ID == other.ID
			}
		}
		if !found {
			t.Fatal("the other task is not listed")
		}
		must(t, b.m.Delete(b.ctx, b.admin, created.ID, 0))
	})
}
