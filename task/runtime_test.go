package task_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
)

// failingEvents is a memstore whose history-event writes fail while fail
// is set.
type failingEvents struct {
	*memstore.Store
	fail atomic.Bool
}

var errDiskFull = errors.New("disk full")

func (s *failingEvents) AppendEvents(ctx context.Context, p storage.AppendEventsParams) (int, error) {
	if s.fail.Load() {
		return 0, errDiskFull
	}
	return s.Store.AppendEvents(ctx, p)
}

// A failed history-event write fails RecordResults (today it reported
// success and the events were lost for good), and a retry after the store
// recovers stores both the results and their events.
func TestRecordResultsFailsWhenEventWriteFails(t *testing.T) {
	t.Parallel()
	clk := clock.NewMock()
	clk.Set(start)
	st := &failingEvents{Store: memstore.New()}
	m, err := task.New(task.Config{Store: st, Registry: registry(t), Clock: clk})
	must(t, err)
	ctx := context.Background()
	created, err := m.Create(ctx, task.Actor{ID: "admin"}, task.Task{Name: "Scan", Application: appES, Type: "virus_scan", Scope: devicesScope("dev-01", "dev-02")})
	must(t, err)
	upd := []task.Result{
		{TaskID: created.ID, DeviceID: "dev-01", RunID: 5, Seq: 1, State: task.Completed},
		{TaskID: created.ID, DeviceID: "dev-02", RunID: 5, Seq: 1, State: task.Failed, Message: "boom"},
	}
	st.fail.Store(true)
	if _, err := m.Runtime().RecordResults(ctx, upd); !errors.Is(err, errDiskFull) {
		t.Fatalf("RecordResults with a failing event write = %v, want the store's error", err)
	}
	st.fail.Store(false)
	n, err := m.Runtime().RecordResults(ctx, upd)
	must(t, err)
	if n != 2 {
		t.Fatalf("retry applied %d results, want 2", n)
	}
	evs, err := st.ListEvents(ctx, storage.ListEventsParams{TaskID: created.ID})
	must(t, err)
	if len(evs) != 2 {
		t.Fatalf("after the retry %d history events are stored, want 2: %+v", len(evs), evs)
	}
	// RecordEvents fails the same way.
	st.fail.Store(true)
	_, err = m.Runtime().RecordEvents(ctx, []task.EventInput{{TaskID: created.ID, Level: task.EventProgress, Severity: task.SeverityInfo, Message: "50%"}})
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("RecordEvents with a failing event write = %v, want the store's error", err)
	}
}

func TestCreateWithFreeNameRefusesUnknownAction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.m.Runtime().CreateWithFreeName(b.ctx, b.admin, groupScan("X"), task.RevisionAction("pwned"))
	if !errors.Is(err, task.ErrInvalid) {
		t.Fatalf("unknown action: err = %v, want ErrInvalid", err)
	}
	for i, a := range []task.RevisionAction{task.ActionImport, task.ActionCopy, ""} {
		x, err := b.m.Runtime().CreateWithFreeName(b.ctx, b.admin, groupScan(fmt.Sprint("Y", i)), a)
		must(t, err)
		revs, err := b.m.Revisions(b.ctx, b.admin, x.ID, 0, 0)
		must(t, err)
		want := a
		if want == "" {
			want = task.ActionCreate
		}
		if revs[0].Action != want {
			t.Errorf("action %q recorded as %q", a, revs[0].Action)
		}
	}
}

func devicesScope(ids ...scope.DeviceID) scope.Scope {
	return scope.Scope{Kind: scope.Devices, Devices: ids}
}
