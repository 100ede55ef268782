package task_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
)

// unknownFleet returns a manager over known Windows devices win-00..
// and devices unk-00.. that have reported no OS facts, all connected,
// and a created selection task over device.os.name.
func unknownFleet(t testing.TB, known, unknown int) (*bundle, *task.Task) {
	t.Helper()
	b := setup(t)
	inv := inmem.New()
	var devs []scope.Device
	for i := range known {
		devs = append(devs, scope.Device{ID: scope.DeviceID(fmt.Sprintf("win-%02d", i)), Connected: true,
			Server: scope.ServerRef{ID: "primary", Role: scope.Primary}, OS: &scope.OS{Name: "Windows", Version: "11"}})
	}
	for i := range unknown {
		devs = append(devs, scope.Device{ID: scope.DeviceID(fmt.Sprintf("unk-%03d", i)), Connected: true,
			Server: scope.ServerRef{ID: "primary", Role: scope.Primary}})
	}
	must(t, inv.PutDevices(b.ctx, devs...))
	b.inv, b.store = inv, memstore.New()
	m, err := task.New(task.Config{Store: b.store, Registry: registry(t), Inventory: inv, Clock: b.clk})
	must(t, err)
	b.m = m
	x := task.Task{Name: "Windows scan", Application: appES, Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Selection, Selection: `device.os.name == "Windows"`, SelectionName: "Windows"}}
	created, err := m.Create(b.ctx, b.admin, x)
	must(t, err)
	return b, created
}

// Devices whose membership is unknown (a selection over a fact they have
// not reported) are counted in the statistics as their own state and
// listed in the results with the reason, until they have a result.
// Both ways of finding which of them have a result are covered: one read
// per device (few unknown devices) and a walk over the results (many).
func TestUnknownMembershipInStatisticsAndResults(t *testing.T) {
	t.Parallel()
	for _, unknown := range []int{3, 100} {
		t.Run(fmt.Sprint(unknown), func(t *testing.T) {
			t.Parallel()
			b, x := unknownFleet(t, 4, unknown)
			st, err := b.m.Statistics(b.ctx, b.admin, x.ID)
			must(t, err)
			want := task.Statistics{ByState: map[task.State]int{task.UnknownMembership: unknown}, Total: unknown, Unknown: unknown}
			if diff := cmp.Diff(want, st); diff != "" {
				t.Fatalf("before the start (-want +got):\n%s", diff)
			}
			run, err := b.m.Start(b.ctx, b.admin, x.ID)
			must(t, err)
			if len(run.Devices) != 4 || len(run.Unknown) != unknown {
				t.Fatalf("run: %d devices, %d unknown", len(run.Devices), len(run.Unknown))
			}
			// unk-001 had a result (from before its facts were lost, say):
			// it counts in its result's state, not as unknown.
			_, err = b.m.Runtime().RecordResults(b.ctx, []task.Result{{TaskID: x.ID, DeviceID: "unk-001", RunID: run.ID, Seq: 1, State: task.Completed}})
			must(t, err)
			st, err = b.m.Statistics(b.ctx, b.admin, x.ID)
			must(t, err)
			want = task.Statistics{
				ByState: map[task.State]int{task.Pending: 4, task.Completed: 1, task.UnknownMembership: unknown - 1},
				Total:   4 + 1 + unknown - 1, Unknown: unknown - 1, Finished: 1,
				PercentComplete: 100.0 / float64(4+unknown),
			}
			if diff := cmp.Diff(want, st); diff != "" {
				t.Fatalf("after the start (-want +got):\n%s", diff)
			}

			// Paging through all results lists every device once, in
			// order, the unknown ones with Explain's reason.
			var got []string
			after := scope.DeviceID("")
			for {
				page, err := b.m.Results(b.ctx, b.admin, x.ID, task.ResultsParams{After: after, Limit: 7})
				must(t, err)
				if len(page) == 0 {
					break
				}
				for _, r := range page {
					got = append(got, string(r.DeviceID)+"="+string(r.State))
					if r.State == task.UnknownMembership && !strings.Contains(r.Message, "unknown fact device.os") {
						t.Errorf("%s: reason %q does not name the missing fact", r.DeviceID, r.Message)
					}
				}
				after = page[len(page)-1].DeviceID
			}
			var wantIDs []string
			for i := range unknown {
				s := task.UnknownMembership
				if i == 1 {
					s = task.Completed
				}
				wantIDs = append(wantIDs, fmt.Sprintf("unk-%03d=%s", i, s))
			}
			for i := range 4 {
				wantIDs = append(wantIDs, fmt.Sprintf("win-%02d=pending", i))
			}
			if diff := cmp.Diff(wantIDs, got); diff != "" {
				t.Fatalf("results (-want +got):\n%s", diff)
			}

			only, err := b.m.Results(b.ctx, b.admin, x.ID, task.ResultsParams{States: []task.State{task.UnknownMembership}, Limit: 2})
			must(t, err)
			if len(only) != 2 || only[0].DeviceID != "unk-000" || only[1].DeviceID != "unk-002" {
				t.Fatalf("unknown only: %+v", only)
			}
			pending, err := b.m.Results(b.ctx, b.admin, x.ID, task.ResultsParams{States: []task.State{task.Pending}})
			must(t, err)
			if len(pending) != 4 {
				t.Fatalf("pending only: %d results, want 4", len(pending))
			}

			one, err := b.m.Result(b.ctx, b.admin, x.ID, "unk-002")
			must(t, err)
			if one.State != task.UnknownMembership || !strings.Contains(one.Message, "device.os") {
				t.Fatalf("Result of an unknown device: %+v", one)
			}
		})
	}
}

// UnknownMembership is computed, never reported: a device cannot record
// it.
func TestUnknownMembershipIsNotAReportableState(t *testing.T) {
	t.Parallel()
	b, x := unknownFleet(t, 1, 1)
	_, err := b.m.Runtime().RecordResults(b.ctx, []task.Result{{TaskID: x.ID, DeviceID: "win-00", RunID: 1, Seq: 1, State: task.UnknownMembership}})
	if err == nil {
		t.Fatal("a device recorded the computed state unknown_membership")
	}
}

// BenchmarkStatisticsUnknownMembership measures what counting devices of
// unknown membership adds to Statistics: a selection task over 10,000
// devices, 1,000 of which have not reported the fact it reads, and a
// result for each of the 9,000 others.
func BenchmarkStatisticsUnknownMembership(b *testing.B) {
	bd, x := unknownFleet(b, 0, 0)
	inv := inmem.New()
	var devs []scope.Device
	for i := range 10_000 {
		d := scope.Device{ID: scope.DeviceID(fmt.Sprintf("d-%05d", i)), Connected: true, Server: scope.ServerRef{ID: "primary", Role: scope.Primary}}
		if i%10 != 0 {
			d.OS = &scope.OS{Name: "Windows", Version: "11"}
		}
		devs = append(devs, d)
	}
	must(b, inv.PutDevices(bd.ctx, devs...))
	m, err := task.New(task.Config{Store: bd.store, Registry: registry(b), Inventory: inv, Clock: bd.clk})
	must(b, err)
	run, err := m.Start(bd.ctx, bd.admin, x.ID)
	must(b, err)
	if len(run.Devices) != 9000 || len(run.Unknown) != 1000 {
		b.Fatalf("run: %d devices, %d unknown", len(run.Devices), len(run.Unknown))
	}
	b.ResetTimer()
	for b.Loop() {
		st, err := m.Statistics(bd.ctx, bd.admin, x.ID)
		if err != nil || st.Unknown != 1000 || st.Total != 10_000 {
			b.Fatal(st, err)
		}
	}
}

// A group task's device whose managing server's role is not recognized is
// counted and listed as unknown too, with the reason.
func TestUnknownMembershipOfAGroupTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	must(t, b.inv.PutDevices(b.ctx, scope.Device{ID: "dev-99", GroupID: "sales", Connected: true, Server: scope.ServerRef{ID: "s2", Role: "cluster-node"}}))
	x, err := b.m.Create(b.ctx, b.admin, groupScan("Scan"))
	must(t, err)
	st, err := b.m.Statistics(b.ctx, b.admin, x.ID)
	must(t, err)
	if st.Unknown != 1 || st.ByState[task.UnknownMembership] != 1 || st.Total != 1 {
		t.Fatalf("statistics %+v, want dev-99 unknown", st)
	}
	res, err := b.m.Results(b.ctx, b.admin, x.ID, task.ResultsParams{})
	must(t, err)
	if len(res) != 1 || res[0].DeviceID != "dev-99" || res[0].State != task.UnknownMembership || !strings.Contains(res[0].Message, "server.role") {
		t.Fatalf("results %+v, want dev-99 unknown with the role as reason", res)
	}
	// Once the inventory knows the fact, the device is decided: no longer
	// unknown.
	must(t, b.inv.PutDevices(b.ctx, scope.Device{ID: "dev-99", GroupID: "sales", Connected: true, Server: scope.ServerRef{ID: "primary", Role: scope.Primary}}))
	st, err = b.m.Statistics(b.ctx, b.admin, x.ID)
	must(t, err)
	if st.Unknown != 0 || st.Total != 0 {
		t.Fatalf("statistics %+v after the role is known, want no unknown device", st)
	}
}
