package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/storage/storagetest"
)

// FuzzListTasksCursor feeds arbitrary page cursors (they come back from
// API clients) to ListTasks under every order: the store answers with a
// page or an ErrInvalid error, never another error or a panic, and a page
// never exceeds its limit.
func FuzzListTasksCursor(f *testing.F) {
	for _, o := range []storage.TaskOrder{storage.OrderByName, storage.OrderByCreatedAt, storage.OrderByID} {
		r := storagetest.NewTaskRecord("id-1", "Alpha")
		f.Add(storage.EncodeCursor(storage.OrderKey(&r, o), r.ID), string(o), false)
	}
	f.Add(storage.EncodeCursor("2026-13-45T99:00:00.000000Z", "x"), "created_at", true)
	f.Add("%%%", "name", false)
	f.Add("", "id", true)
	s, err := sqlstore.OpenSQLite(context.Background(), ":memory:")
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	base := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	for i, name := range []string{"Alpha", "beta", "Ωmega", "alpha 2", "Zeta"} {
		r := storagetest.NewTaskRecord(fmt.Sprintf("id-%d", i), name)
		r.CreatedAt = base.Add(time.Duration(i) * time.Hour)
		if err := s.CreateTask(context.Background(), storage.CreateTaskParams{Task: r, Revision: storage.RevisionRecord{Number: 1, Body: r.Body}}); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, cursor, order string, desc bool) {
		o := storage.TaskOrder(order)
		if !storage.ValidOrder(o) {
			o = storage.OrderByName
		}
		page, err := s.ListTasks(context.Background(), storage.ListTasksParams{After: cursor, Order: o, Descending: desc, Limit: 2})
		if err != nil {
			if !errors.Is(err, storage.ErrInvalid) {
				t.Fatalf("ListTasks(%q) = %v, want a page or ErrInvalid", cursor, err)
			}
			return
		}
		if len(page.Tasks) > 2 {
			t.Fatalf("page of %d tasks exceeds the limit", len(page.Tasks))
		}
	})
}
