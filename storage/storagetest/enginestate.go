package storagetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/taskfleet/taskfleet/storage"
)

// testEngineState checks storage.EngineStateStore: first writer wins per
// (task, kind, key), ordering, paging, the kind filter, purge by kind and
// time, and that engine state and history never touch each other.
func testEngineState(t *testing.T, s storage.Store, _ Features) {
	create(t, s, NewTaskRecord("t", "T"))
	create(t, s, NewTaskRecord("u", "U"))
	put := func(recs ...storage.EngineStateRecord) int {
		t.Helper()
		n, err := s.PutEngineState(ctx(), storage.PutEngineStateParams{Records: recs})
		if err != nil {
			t.Fatalf("PutEngineState: %v", err)
		}
		return n
	}
	rec := func(task, kind string, run int64, h int) storage.EngineStateRecord {
		return storage.EngineStateRecord{TaskID: task, Kind: kind, Key: fmt.Sprint(run), RunID: run, At: base.Add(time.Duration(h) * time.Hour)}
	}
	if n := put(rec("t", storage.EngineStateFire, 11, 0), rec("t", storage.EngineStateFire, 12, 1), rec("t", storage.EngineStateStop, 12, 2), rec("u", storage.EngineStateFire, 11, 0), rec("gone", storage.EngineStateFire, 1, 0)); n != 4 {
		t.Fatalf("PutEngineState stored %d, want 4 (a record of an unknown task is ignored)", n)
	}
	// First writer wins: the same (task, kind, key) again is not stored,
	// whatever its other fields; the same key under another kind is.
	dup := rec("t", storage.EngineStateFire, 11, 5)
	if n := put(dup, rec("t", "other", 11, 3)); n != 1 {
		t.Fatalf("PutEngineState of a taken key stored %d, want 1 (only the new kind)", n)
	}
	all, err := s.ListEngineState(ctx(), storage.ListEngineStateParams{TaskID: "t"})
	if err != nil {
		t.Fatalf("ListEngineState: %v", err)
	}
	want := []storage.EngineStateRecord{rec("t", "fire", 11, 0), rec("t", "fire", 12, 1), rec("t", "stop", 12, 2), rec("t", "other", 11, 3)}
	if d := cmp.Diff(want, all, cmpopts.IgnoreFields(storage.EngineStateRecord{}, "ID")); d != "" {
		t.Fatalf("ListEngineState (-want +got):\n%s", d)
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Fatalf("engine state ids not increasing: %d then %d", all[i-1].ID, all[i].ID)
		}
	}
	for _, r := range all {
		if r.At.Location() != time.UTC {
			t.Fatalf("At %v is not UTC", r.At)
		}
	}
	fires, _ := s.ListEngineState(ctx(), storage.ListEngineStateParams{TaskID: "t", Kind: storage.EngineStateFire})
	page, _ := s.ListEngineState(ctx(), storage.ListEngineStateParams{TaskID: "t", AfterID: all[0].ID, Limit: 2})
	if len(fires) != 2 || fires[1].RunID != 12 || len(page) != 2 || page[0].ID != all[1].ID || page[1].ID != all[2].ID {
		t.Fatalf("kind filter %+v, page %+v", fires, page)
	}
	if none, err := s.ListEngineState(ctx(), storage.ListEngineStateParams{TaskID: "nope"}); err != nil || len(none) != 0 {
		t.Fatalf("ListEngineState(unknown task) = %v, %v; want empty, nil", none, err)
	}

	// History and engine state are apart: a history event with the key a
	// marker uses, and history retention, change no engine state; purging
	// engine state removes no history.
	if n, err := s.AppendEvents(ctx(), storage.AppendEventsParams{Events: []storage.EventRecord{{TaskID: "t", At: base, Level: "info", Severity: "info", Message: "device says", Key: "fire/13"}}}); err != nil || n != 1 {
		t.Fatalf("AppendEvents = %d, %v", n, err)
	}
	if n := put(rec("t", storage.EngineStateFire, 13, 4)); n != 1 {
		t.Fatal("a history event keyed like a fire marker blocked the marker")
	}
	if _, err := s.PurgeEvents(ctx(), storage.PurgeEventsParams{TaskID: "t", Before: base.Add(1000 * time.Hour)}); err != nil {
		t.Fatalf("PurgeEvents: %v", err)
	}
	if got, _ := s.ListEngineState(ctx(), storage.ListEngineStateParams{TaskID: "t"}); len(got) != 5 {
		t.Fatalf("after PurgeEvents %d engine state records, want 5: history retention must not touch engine state", len(got))
	}
	if n, err := s.AppendEvents(ctx(), storage.AppendEventsParams{Events: []storage.EventRecord{{TaskID: "t", At: base, Level: "info", Severity: "info", Message: "kept"}}}); err != nil || n != 1 {
		t.Fatalf("AppendEvents = %d, %v", n, err)
	}

	// Purge by kind and time: only fire markers before hour 1.
	n, err := s.PurgeEngineState(ctx(), storage.PurgeEngineStateParams{TaskID: "t", Kind: storage.EngineStateFire, Before: base.Add(time.Hour)})
	if err != nil || n != 1 {
		t.Fatalf("PurgeEngineState(fire, before hour 1) = %d, %v; want 1", n, err)
	}
	if evs, _ := s.ListEvents(ctx(), storage.ListEventsParams{TaskID: "t"}); len(evs) != 1 {
		t.Fatalf("PurgeEngineState removed history: %d events left, want 1", len(evs))
	}
	left, _ := s.ListEngineState(ctx(), storage.ListEngineStateParams{TaskID: "t"})
	var keys []string
	for _, r := range left {
		keys = append(keys, r.Kind+"/"+r.Key)
	}
	if d := cmp.Diff([]string{"fire/12", "stop/12", "other/11", "fire/13"}, keys); d != "" {
		t.Fatalf("after purge (-want +got):\n%s", d)
	}
	// Other tasks are untouched; every kind is purged with an empty Kind.
	if n, err := s.PurgeEngineState(ctx(), storage.PurgeEngineStateParams{TaskID: "t", Before: base.Add(1000 * time.Hour)}); err != nil || n != 4 {
		t.Fatalf("PurgeEngineState(all kinds) = %d, %v; want 4", n, err)
	}
	if got, _ := s.ListEngineState(ctx(), storage.ListEngineStateParams{TaskID: "u"}); len(got) != 1 {
		t.Fatalf("task u has %d records after purging t's, want 1", len(got))
	}

	// Deleted with the task: a new task with the same id starts empty.
	if err := s.DeleteTask(ctx(), storage.DeleteTaskParams{ID: "u"}); err != nil {
		t.Fatalf("DeleteTask: %v", err)
	}
	create(t, s, NewTaskRecord("u", "U"))
	if got, _ := s.ListEngineState(ctx(), storage.ListEngineStateParams{TaskID: "u"}); len(got) != 0 {
		t.Fatalf("a deleted task's engine state survived: %+v", got)
	}
	if n := put(rec("u", storage.EngineStateFire, 11, 0)); n != 1 {
		t.Fatal("a deleted task's fire marker still blocks a new one")
	}

	// Bad records are ErrInvalid and nothing of the batch is written.
	for _, bad := range []storage.EngineStateRecord{
		{TaskID: "", Kind: "fire", Key: "1"},
		{TaskID: "t", Kind: "", Key: "1"},
		{TaskID: "t", Kind: "fire", Key: ""},
		{TaskID: "t", Kind: "fire", Key: strings.Repeat("k", storage.MaxEngineStateKey+1)},
		{TaskID: "t", Kind: strings.Repeat("k", storage.MaxEngineStateKey+1), Key: "1"},
	} {
		_, err := s.PutEngineState(ctx(), storage.PutEngineStateParams{Records: []storage.EngineStateRecord{rec("t", "fire", 99, 0), bad}})
		if !errors.Is(err, storage.ErrInvalid) {
			t.Fatalf("PutEngineState(%+v): got %v, want ErrInvalid", bad, err)
		}
	}
	if got, _ := s.ListEngineState(ctx(), storage.ListEngineStateParams{TaskID: "t"}); len(got) != 0 {
		t.Fatalf("a rejected batch wrote %+v", got)
	}
	if _, err := s.PurgeEngineState(ctx(), storage.PurgeEngineStateParams{}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("PurgeEngineState without a task: got %v, want ErrInvalid", err)
	}
}
