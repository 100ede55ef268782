package engine_test

import (
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
	"github.com/taskfleet/taskfleet/task/transport"
)

// The hostile-device suite of issue #14: one test per attack a device
// could make on the server. Each test sends what a hostile device (d0)
// would, through the server's Handle with the sender set as an
// authenticating transport sets it, and asserts that the other devices'
// state, the fleet's triggers and unrelated results are unchanged and
// that the rejected items are counted. The messages are JSON in the shape
// protocol 1 wrote (which the current protocol reads too).

// inject hands the server a message from device from, decoded from js.
func (b *bundle) inject(t testing.TB, from scope.DeviceID, js string) {
	t.Helper()
	var m transport.Message
	must(t, json.Unmarshal([]byte(js), &m))
	m.Device = from
	b.sim.Server.Handle(b.ctx, m)
}

func (b *bundle) stats(t testing.TB, id string) task.Statistics {
	t.Helper()
	st, err := b.sim.Manager.Statistics(b.ctx, task.System, id)
	must(t, err)
	return st
}

// d0 sends a result with d1's device id, and results for 50 devices that
// do not exist: d1's result and the task's device count are unchanged;
// d0's own result in the same message is stored.
func TestHostileResultNamingAnotherDevice(t *testing.T) {
	t.Parallel()
	b := setup(t, 3, nil)
	tk := b.create(t, task.Task{Scope: groupScope("g-all")})
	_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
	must(t, err)
	b.step(t, 20*time.Minute)
	r0, r1 := b.result(t, tk.ID, "d00000"), b.result(t, tk.ID, "d00001")
	before := b.stats(t, tk.ID)
	if before.Total != 3 || r1.State != task.Completed {
		t.Fatalf("setup: total %d, d1 %s", before.Total, r1.State)
	}
	items := []string{fmt.Sprintf(`{"task_id":%q,"device_id":"d00001","run_id":%d,"seq":9,"state":"failed","message":"spoofed"}`, tk.ID, r1.RunID)}
	for i := range 50 {
		items = append(items, fmt.Sprintf(`{"task_id":%q,"device_id":"ghost-%d","run_id":%d,"seq":9,"state":"failed"}`, tk.ID, i, r1.RunID))
	}
	items = append(items, fmt.Sprintf(`{"task_id":%q,"device_id":"d00000","run_id":%d,"seq":%d,"state":"completed","progress":100,"message":"checked again"}`, tk.ID, r0.RunID, r0.Seq+1))
	base := rejected(b.sim.Server)
	b.inject(t, "d00000", `{"Kind":"results","Key":"r-hostile","Merged":["r-hostile"],"Results":[`+strings.Join(items, ",")+`]}`)
	b.step(t, 10*time.Minute)
	if diff := cmp.Diff(r1, b.result(t, tk.ID, "d00001")); diff != "" {
		t.Errorf("d1's result changed (-before +after):\n%s", diff)
	}
	if got := b.stats(t, tk.ID); got.Total != before.Total {
		t.Errorf("task total %d, want %d: devices were added", got.Total, before.Total)
	}
	if got := b.result(t, tk.ID, "d00000"); got.Message != "checked again" {
		t.Errorf("d0's own result %+v: the valid item of the message was lost", got)
	}
	if n := rejected(b.sim.Server) - base; n < 51 {
		t.Errorf("%d items counted rejected, want 51", n)
	}
}

// d0 reports scheduled and pending results (for d1 and for itself) of a
// manual-only task nobody started: after a server restart no device runs
// it.
func TestHostileScheduledOrPendingResultStartsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, nil)
	tk := b.create(t, task.Task{Scope: groupScope("g-all")}) // manual only
	run := transport.RunID(b.sim.Clock.Now().Add(5*time.Minute), transport.Manual)
	base := rejected(b.sim.Server)
	b.inject(t, "d00000", fmt.Sprintf(`{"Kind":"results","Key":"r-x","Results":[
		{"task_id":%q,"device_id":"d00001","run_id":%d,"seq":0,"state":"scheduled","due_at":"2026-03-23T00:05:00Z"},
		{"task_id":%q,"device_id":"d00000","run_id":%d,"seq":0,"state":"pending","due_at":"2026-03-23T00:05:00Z"}]}`, tk.ID, run, tk.ID, run))
	must(t, b.sim.Settle(b.ctx))
	n := rejected(b.sim.Server) - base
	must(t, b.sim.RestartServer(b.ctx))
	b.step(t, 30*time.Minute)
	for _, d := range []scope.DeviceID{"d00000", "d00001"} {
		if runs := b.sim.Exec.Runs(tk.ID, d); len(runs) != 0 {
			t.Errorf("%s ran the manual task %d times; nobody started it", d, len(runs))
		}
	}
	if rs, err := b.sim.Manager.Results(b.ctx, task.System, tk.ID, task.ResultsParams{}); err != nil || len(rs) != 0 {
		t.Errorf("results %+v (%v), want none", rs, err)
	}
	if n < 2 {
		t.Errorf("%d items counted rejected, want 2", n)
	}
}

// d0 sends a local edit of d1's local task naming the user "admin": the
// task and its revisions are unchanged. d1's own user's edit is merged
// and authored by that user of d1, never by a server account.
func TestHostileLocalEditOfAnotherDevicesTask(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, nil)
	tk := b.create(t, task.Task{Scope: scope.Scope{Kind: scope.Local, Device: "d00001"}, Description: "v1"})
	evil := *tk
	evil.Description = "replaced"
	evil.Security.ACL = []task.AccessEntry{{Principal: "attacker", Allow: []task.Permission{task.PermModify}}}
	doc, err := json.Marshal(evil)
	must(t, err)
	base := rejected(b.sim.Server)
	b.inject(t, "d00000", fmt.Sprintf(`{"Kind":"local_edit","Key":"e-x","Edit":{"User":"admin","BaseRevision":%d,"Task":%s}}`, tk.Revision, doc))
	b.step(t, 10*time.Minute)
	got, err := b.sim.Manager.Get(b.ctx, task.System, tk.ID)
	must(t, err)
	if got.Description != "v1" || got.Revision != tk.Revision || len(got.Security.ACL) != 0 {
		t.Errorf("d1's task is now %q at revision %d; d0 must not edit it", got.Description, got.Revision)
	}
	if n := rejected(b.sim.Server) - base; n < 1 {
		t.Errorf("%d items counted rejected, want 1", n)
	}
	// The owner's user edits it: the revision names the device's user.
	defs := b.sim.Agent("d00001").Tasks()
	user := defs[0].Task
	user.Description = "by bob"
	must(t, b.sim.Agent("d00001").EditLocalTask(b.ctx, "admin", user))
	b.step(t, 10*time.Minute)
	revs, err := b.sim.Manager.Revisions(b.ctx, task.System, tk.ID, 0, 100)
	must(t, err)
	last := revs[len(revs)-1]
	for _, r := range revs {
		if r.Number > last.Number {
			last = r
		}
	}
	if last.Author != "device:d00001/admin" {
		t.Errorf("the merged revision is authored by %q, want the device's user %q", last.Author, "device:d00001/admin")
	}
}

// d0 sends history events keyed like the engine's fire markers of a
// server-run daily task's next activations: every activation still runs.
func TestHostileEventKeyedAsFireMarker(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, nil)
	sch := sched(schedule.EveryDays, func(s *schedule.Schedule) { s.Time = 10 * 3600 })
	tk := b.create(t, task.Task{Scope: winSelection(), Schedule: sch, Notifications: task.Notifications{History: task.HistoryAll}})
	now := b.sim.Clock.Now()
	berlin := loc(t, "Europe/Berlin")
	var evs []string
	i := 0
	for act := range tk.Schedule.Between(now, now.Add(72*time.Hour), berlin) {
		run := transport.RunID(act, transport.Scheduled)
		runField := run // events about a run the device was never given
		if i == 2 {
			runField = 0 // an event about no run: valid, kept in d0's own key space
		}
		evs = append(evs, fmt.Sprintf(`{"TaskID":%q,"DeviceID":"d00000","RunID":%d,"Level":"info","Severity":"info","Message":"x","Key":"fire/%d"}`, tk.ID, runField, run))
		i++
	}
	if len(evs) != 3 {
		t.Fatalf("%d activations in 3 days", len(evs))
	}
	base := rejected(b.sim.Server)
	b.inject(t, "d00000", `{"Kind":"events","Key":"ev-x","Events":[`+strings.Join(evs, ",")+`]}`)
	b.step(t, 72*time.Hour)
	for _, d := range []scope.DeviceID{"d00000", "d00001"} {
		if got := len(b.sim.Exec.Runs(tk.ID, d)); got != 3 {
			t.Errorf("%s: %d runs of the daily server task in 3 days, want 3", d, got)
		}
	}
	if n := rejected(b.sim.Server) - base; n < 2 {
		t.Errorf("%d items counted rejected, want 2", n)
	}
}

// d0 reports virus outbreaks dated 9999-12-31 and 1969: every "on virus
// outbreak" task still runs for each later genuine outbreak, the runs of
// the odd reports are stored, and an unrelated task's results merged with
// them are not lost. Reports with an invalid application type are
// rejected.
func TestHostileOutbreakDatesCannotDisableTriggers(t *testing.T) {
	t.Parallel()
	b := setup(t, 3, nil)
	var obs []*task.Task
	for range 3 {
		obs = append(obs, b.create(t, task.Task{Type: "update", Scope: groupScope("g-all"), Schedule: sched(schedule.OnVirusOutbreak, nil)}))
	}
	other := b.create(t, task.Task{Scope: groupScope("g-all")})
	base := rejected(b.sim.Server)
	b.inject(t, "d00000", `{"Kind":"virus_outbreak","Key":"v-1","Outbreak":{"AppType":1,"At":"9999-12-31T00:00:00Z"}}`)
	b.step(t, 10*time.Minute)
	_, err := b.sim.Manager.Start(b.ctx, task.System, other.ID)
	must(t, err)
	b.inject(t, "d00000", `{"Kind":"virus_outbreak","Key":"v-2","Outbreak":{"AppType":1,"At":"1969-07-20T20:17:00Z"}}`)
	b.step(t, 10*time.Minute)
	b.inject(t, "d00000", `{"Kind":"virus_outbreak","Key":"v-3","Outbreak":{"AppType":0,"At":"2026-03-23T00:00:00Z"}}`)
	b.inject(t, "d00000", `{"Kind":"virus_outbreak","Key":"v-4","Outbreak":{"AppType":200,"At":"2026-03-23T00:00:00Z"}}`)
	for i := range 3 {
		b.step(t, 10*time.Minute)
		must(t, b.sim.Agent(scope.DeviceID(fmtID(i))).ReportVirusOutbreak(b.ctx, fmt.Sprintf("genuine-%d", i), schedule.WorkstationsFileServers))
	}
	b.step(t, 20*time.Minute)
	for i := range 3 {
		d := scope.DeviceID(fmtID(i))
		for _, ob := range obs {
			if got := len(b.sim.Exec.Runs(ob.ID, d)); got != 5 {
				t.Errorf("%s on %s: %d runs, want 5 (2 odd reports, 3 genuine)", ob.Name, d, got)
			}
			if r := b.result(t, ob.ID, d); r.State != task.Completed || r.RunID <= 0 {
				t.Errorf("%s on %s: stored result %s run %d, want the last run completed", ob.Name, d, r.State, r.RunID)
			}
		}
		if r := b.result(t, other.ID, d); r.State != task.Completed {
			t.Errorf("unrelated task on %s: %s, want completed", d, r.State)
		}
	}
	if n := rejected(b.sim.Server) - base; n < 2 {
		t.Errorf("%d items counted rejected, want 2", n)
	}
}

// d0 reports its own result with run id and seq MaxInt64: the later runs
// of its daily task are still shown.
func TestHostileMaxRunIDCannotFreezeResults(t *testing.T) {
	t.Parallel()
	b := setup(t, 2, nil)
	tk := b.create(t, task.Task{Type: "update", Scope: groupScope("g-0"), Schedule: sched(schedule.EveryDays, func(s *schedule.Schedule) { s.Time = 6 * 3600 })})
	base := rejected(b.sim.Server)
	b.inject(t, "d00000", fmt.Sprintf(`{"Kind":"results","Key":"r-max","Results":[{"task_id":%q,"device_id":"d00000","run_id":%d,"seq":%d,"state":"completed"}]}`, tk.ID, int64(math.MaxInt64), int64(math.MaxInt64)))
	b.step(t, 72*time.Hour)
	runs := b.sim.Exec.Runs(tk.ID, "d00000")
	if len(runs) != 3 {
		t.Fatalf("%d runs in 3 days, want 3", len(runs))
	}
	last := runs[len(runs)-1]
	if r := b.result(t, tk.ID, "d00000"); r.RunID != last.RunID || r.State != task.Completed {
		t.Errorf("stored result run %d %s, want the last run %d completed", r.RunID, r.State, last.RunID)
	}
	if n := rejected(b.sim.Server) - base; n < 1 {
		t.Errorf("%d items counted rejected, want 1", n)
	}
}

// No attacker: an executor fails with a 5 KB message (a stack trace). The
// agent clips it; that result and the other tasks' results merged with it
// are all stored, and nothing is left in the outbox.
func TestHonestLongFailureMessageLosesNothing(t *testing.T) {
	t.Parallel()
	trace := strings.Repeat("goroutine 1 [running]:\n\tmain.go:42 +0x1d\n", 5000/38+1)
	var failID string
	b := setup(t, 1, func(c *enginetest.Config) {
		c.Behavior = func(r agent.Run, _ scope.DeviceID) enginetest.Behavior {
			if r.TaskID == failID {
				return enginetest.Behavior{State: task.Failed, Message: trace}
			}
			return enginetest.Behavior{}
		}
	})
	fail := b.create(t, task.Task{Scope: groupScope("g-all")})
	failID = fail.ID
	ok1 := b.create(t, task.Task{Scope: groupScope("g-all")})
	ok2 := b.create(t, task.Task{Scope: groupScope("g-all")})
	base := rejected(b.sim.Server)
	for _, tk := range []*task.Task{fail, ok1, ok2} {
		_, err := b.sim.Manager.Start(b.ctx, task.System, tk.ID)
		must(t, err)
	}
	b.step(t, 30*time.Minute)
	for _, tk := range []*task.Task{ok1, ok2} {
		if r := b.result(t, tk.ID, "d00000"); r.State != task.Completed {
			t.Errorf("%s: %s, want completed", tk.Name, r.State)
		}
	}
	r := b.result(t, fail.ID, "d00000")
	if r.State != task.Failed || len(r.Message) > task.MaxResultMessage || !strings.HasPrefix(r.Message, "goroutine 1") {
		t.Errorf("failed task: %s with a %d-byte message, want failed with the clipped trace", r.State, len(r.Message))
	}
	if n := b.sim.Agent("d00000").OutboxLen(b.ctx); n != 0 {
		t.Errorf("%d messages left in the outbox", n)
	}
	if n := rejected(b.sim.Server) - base; n != 0 {
		t.Errorf("%d items of an honest agent rejected", n)
	}
}

// d0 sends three heartbeats listing 100,000 made-up task ids: the
// server's answer is bounded by the tasks there are, not by the list, and
// so is its memory.
func TestHostileHeartbeatWithMadeUpTaskIDs(t *testing.T) {
	// Not parallel: it measures the process's allocations.
	b := setup(t, 2, nil)
	b.create(t, task.Task{Scope: groupScope("g-all")})
	b.create(t, task.Task{Scope: groupScope("g-all")})
	held := make([]transport.HeldTask, 100_000)
	for i := range held {
		held[i] = transport.HeldTask{TaskID: fmt.Sprintf("made-up-%06d", i), Revision: 1}
	}
	base := rejected(b.sim.Server)
	queued := b.sim.Net.Pending()
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for range 3 {
		b.sim.Server.Handle(b.ctx, transport.Message{Kind: transport.Heartbeat, Device: "d00000", Heartbeat: &transport.HeartbeatInfo{Held: held}})
	}
	runtime.ReadMemStats(&m1)
	sent := b.sim.Net.Pending() - queued
	if limit := 3 * (maxUnknownWithdraws + 2 + 1); sent > limit {
		t.Errorf("the server answered 3 heartbeats with %d messages, want at most %d", sent, limit)
	}
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 16<<20 {
		t.Errorf("the server allocated %d MiB for 3 heartbeats", alloc>>20)
	}
	if n := rejected(b.sim.Server) - base; n < 3*90_000 {
		t.Errorf("%d items counted rejected, want at least %d", n, 3*90_000)
	}
	must(t, b.sim.Settle(b.ctx))
	if got := len(b.sim.Agent("d00000").Tasks()); got != 2 {
		t.Errorf("d0 holds %d tasks after the heartbeats, want its 2", got)
	}
}
