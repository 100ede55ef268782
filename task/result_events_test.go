package task_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
)

// Each result update is one history event keyed by run, device and
// sequence ("result/<run>/<device>/<seq>": the run first, so a batch's
// keys are neighbours in the store's key index); a redelivery adds none.
func TestResultEventsAreKeyedByDeviceRunAndSeq(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created, err := b.m.Create(b.ctx, b.admin, groupScan("Scan"))
	must(t, err)
	upd := []task.Result{
		{TaskID: created.ID, DeviceID: "dev-01", RunID: 1767225600000000001, Seq: 1, State: task.Running},
		{TaskID: created.ID, DeviceID: "dev-01", RunID: 1767225600000000001, Seq: 2, State: task.Completed},
		{TaskID: created.ID, DeviceID: "dev-02", RunID: 7, Seq: 1, State: task.Failed, Message: "access denied"},
	}
	for range 2 {
		_, err = b.m.Runtime().RecordResults(b.ctx, upd)
		must(t, err)
	}
	evs, err := b.store.ListEvents(b.ctx, storage.ListEventsParams{TaskID: created.ID})
	must(t, err)
	type ev struct{ Key, Message string }
	var got []ev
	for _, e := range evs {
		got = append(got, ev{e.Key, e.Message})
	}
	want := []ev{
		{"result/1767225600000000001/dev-01/1", "running on dev-01"},
		{"result/1767225600000000001/dev-01/2", "completed on dev-01"},
		{"result/7/dev-02/1", "failed on dev-02: access denied"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("events (-want +got):\n%s", d)
	}
}
