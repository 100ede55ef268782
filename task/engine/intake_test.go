package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/engine/enginetest"
	"github.com/taskfleet/taskfleet/task/transport"
)

// fleet3 is a small running server for the intake tests: devices d1..d3
// in group g (all connected), tasks t1 (a daily device task on g), t2 (a
// local task of d2), t3 (on virus outbreak, on g) and t4 (a manual task
// on g, started: every device has a pending start).
type fleet3 struct {
	ctx context.Context
	clk *clock.Mock
	srv *engine.Server
	m   *task.Manager
	rec *recorder
	run int64 // t4's run
}

func newFleet3(t testing.TB) *fleet3 {
	t.Helper()
	ctx := context.Background()
	inv := inmem.New()
	must(t, inv.PutGroups(context.Background(), scope.AdminGroup{ID: "g", Name: "g"}))
	for _, d := range []scope.DeviceID{"d1", "d2", "d3"} {
		must(t, inv.PutDevices(context.Background(), scope.Device{ID: d, GroupID: "g", Connected: true, Applications: map[string]scope.AppState{appES: {Installed: true, Running: true}}}))
	}
	clk := clock.NewMock()
	clk.Set(t0)
	store := memstore.New()
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, Location: time.UTC})
	must(t, err)
	ids := 0
	m, err := task.New(task.Config{Store: store, Registry: registry(t), Inventory: inv, Clock: clk, Location: time.UTC, Dispatcher: srv,
		NewID: func() string { ids++; return fmt.Sprintf("t%d", ids) }})
	must(t, err)
	rec := &recorder{}
	must(t, srv.Open(ctx, m, rec))
	g := scope.Scope{Kind: scope.Group, Group: "g"}
	for i, tk := range []task.Task{
		{Scope: g, Schedule: schedule.Default(schedule.EveryDays, t0, time.UTC)},
		{Scope: scope.Scope{Kind: scope.Local, Device: "d2"}, Description: "v1"},
		{Scope: g, Schedule: schedule.Default(schedule.OnVirusOutbreak, t0, time.UTC)},
		{Scope: g},
	} {
		tk.Name, tk.Application, tk.Type = fmt.Sprintf("n%d", i), appES, "virus_scan"
		_, err := m.Create(ctx, task.System, tk)
		must(t, err)
	}
	run, err := m.Start(ctx, task.System, "t4")
	must(t, err)
	must(t, srv.Tick(ctx))
	rec.take()
	return &fleet3{ctx: ctx, clk: clk, srv: srv, m: m, rec: rec, run: run.ID}
}

// results returns every stored result of the fleet's tasks, by task and
// device.
func (f *fleet3) results(t testing.TB) map[string]task.Result {
	t.Helper()
	out := map[string]task.Result{}
	for _, id := range []string{"t1", "t2", "t3", "t4"} {
		rs, err := f.m.Results(f.ctx, task.System, id, task.ResultsParams{Limit: 1000})
		must(t, err)
		for _, r := range rs {
			out[id+"/"+string(r.DeviceID)] = r
		}
	}
	return out
}

func (f *fleet3) revisions(t testing.TB) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, id := range []string{"t1", "t2", "t3", "t4"} {
		tk, err := f.m.Get(f.ctx, task.System, id)
		must(t, err)
		out[id] = tk.Revision
	}
	return out
}

// An unknown message kind gets a clear error answer; nothing else
// happens.
func TestUnknownKindGetsAnErrorAnswer(t *testing.T) {
	t.Parallel()
	f := newFleet3(t)
	f.srv.Handle(f.ctx, transport.Message{Version: transport.ProtocolVersion + 1, Key: "k1", Kind: "teleport", Device: "d1"})
	got := f.rec.take()
	want := []transport.Message{{Kind: transport.Error, Device: "d1", SentAt: t0,
		Error: &transport.ErrorInfo{Code: transport.ErrUnknownKind, Kind: "teleport", Key: "k1", Message: `the server does not take "teleport" messages from devices`}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
	if st := f.srv.Stats(); st.RejectedBy[engine.RejectMessage] != 1 {
		t.Errorf("rejected %v, want the message counted", st.RejectedBy)
	}
}

// A Results message of an agent one protocol version older (no version,
// untagged field names, results naming their device) is accepted and
// acknowledged.
func TestProtocol1ResultsAreAccepted(t *testing.T) {
	t.Parallel()
	f := newFleet3(t)
	js := fmt.Sprintf(`{"Key":"r/d1/t4/%d/2","Kind":"results","Device":"d1","SentAt":"2026-03-23T00:00:00Z","Definition":null,"Merged":null,
		"Results":[{"task_id":"t4","device_id":"d1","run_id":%d,"seq":2,"state":"completed","progress":100,"message":"v1 agent"}],"AFutureField":1}`, f.run, f.run)
	m, err := transport.DecodeBytes([]byte(js))
	must(t, err)
	f.srv.Handle(f.ctx, m)
	must(t, f.srv.Tick(f.ctx))
	r, err := f.m.Result(f.ctx, task.System, "t4", "d1")
	must(t, err)
	if r.State != task.Completed || r.Message != "v1 agent" {
		t.Errorf("result %+v, want the protocol 1 result stored", r)
	}
	acked := false
	for _, m := range f.rec.take() {
		if m.Kind == transport.Ack && len(m.Acks) == 1 && m.Acks[0] == fmt.Sprintf("r/d1/t4/%d/2", f.run) {
			acked = true
		}
	}
	if !acked {
		t.Error("the protocol 1 message was not acknowledged")
	}
}

// FuzzIntake feeds random messages from random senders (the fleet's three
// devices and one the inventory does not know) into a running server:
// nothing panics, no result of another device changes (but for the
// outbreak task, whose runs any device's genuine report starts), no task
// but the sender's own local task changes, and the server still takes an
// honest result afterwards.
func FuzzIntake(f *testing.F) {
	for _, s := range []struct {
		from byte
		js   string
	}{
		{0, `{"kind":"results","key":"k","results":[{"task_id":"t4","device_id":"d2","run_id":7096896000001,"seq":9,"state":"failed"}]}`},
		{0, `{"kind":"results","key":"k","results":[{"task_id":"t4","run_id":7096896000001,"seq":2,"state":"scheduled"},{"task_id":"t1","run_id":9223372036854775807,"seq":9223372036854775807,"state":"completed"}]}`},
		{1, `{"kind":"local_edit","key":"e","edit":{"user":"admin","baseRevision":1,"task":{"id":"t2","description":"x"}}}`},
		{0, `{"kind":"local_edit","key":"e","edit":{"user":"admin","baseRevision":1,"task":{"id":"t2","description":"x"}}}`},
		{2, `{"kind":"events","key":"e","events":[{"taskId":"t1","runId":7096896000000,"level":"info","severity":"info","key":"fire/7096896000000"}]}`},
		{0, `{"kind":"virus_outbreak","key":"v","outbreak":{"appType":1,"at":"9999-12-31T00:00:00Z"}}`},
		{3, `{"kind":"virus_outbreak","key":"v","outbreak":{"appType":1}}`},
		{0, `{"kind":"heartbeat","heartbeat":{"held":[{"taskId":"x1"},{"taskId":"t2","revision":1},{"taskId":"t1"}]}}`},
		{1, `{"kind":"ack","acks":["x/t4/1"]}`},
		{0, `{"kind":"teleport","key":"k"}`},
		{2, `{"kind":"updates_downloaded","key":"u"}`},
	} {
		f.Add(s.from, []byte(s.js))
	}
	senders := []scope.DeviceID{"d1", "d2", "d3", "intruder"}
	f.Fuzz(func(t *testing.T, from byte, data []byte) {
		m, err := transport.DecodeBytes(data)
		if err != nil {
			return
		}
		fl := newFleet3(t)
		d := senders[int(from)%len(senders)]
		before, revs := fl.results(t), fl.revisions(t)
		m.Device = d
		fl.srv.Handle(fl.ctx, m)
		must(t, fl.srv.Tick(fl.ctx))
		after := fl.results(t)
		for k, r := range before {
			if r.DeviceID != d && r.TaskID != "t3" {
				if diff := cmp.Diff(r, after[k]); diff != "" {
					t.Errorf("%s changed by a message from %s (-before +after):\n%s", k, d, diff)
				}
			}
		}
		for k, r := range after {
			if _, ok := before[k]; !ok && r.DeviceID != d && r.TaskID != "t3" {
				t.Errorf("%s appeared after a message from %s: %+v", k, d, r)
			}
			if r.DeviceID != "d1" && r.DeviceID != "d2" && r.DeviceID != "d3" {
				t.Errorf("a result of %s, a device the fleet does not have", r.DeviceID)
			}
		}
		for id, rev := range fl.revisions(t) {
			if rev != revs[id] && (id != "t2" || d != "d2") {
				t.Errorf("task %s changed (revision %d -> %d) by a message from %s", id, revs[id], rev, d)
			}
		}
		// The server still takes an honest result.
		other := senders[(int(from)+1)%3]
		fl.clk.Add(time.Minute)
		fl.srv.Handle(fl.ctx, transport.Message{Key: "honest", Kind: transport.Results, Device: other,
			Results: []transport.Result{{TaskID: "t4", RunID: fl.run, Seq: transport.SeqDevice + 1000, State: string(task.Completed), Progress: 100, Message: "honest"}}})
		must(t, fl.srv.Tick(fl.ctx))
		r, err := fl.m.Result(fl.ctx, task.System, "t4", other)
		must(t, err)
		if r.Message != "honest" {
			b, _ := json.Marshal(r)
			t.Errorf("after a message from %s, %s's honest result was not stored: %s", d, other, b)
		}
	})
}

// The whole conversation of a fleet survives the wire codec: with every
// message encoded and decoded, scheduled, manual and outbreak runs run
// once, their results arrive, a local edit is merged, and nothing of the
// honest agents is rejected (setup's check).
func TestFleetOverTheWire(t *testing.T) {
	t.Parallel()
	b := setup(t, 4, func(c *enginetest.Config) { c.Wire = true })
	daily := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: sched(schedule.EveryDays, func(s *schedule.Schedule) { s.Time = 6 * 3600 })})
	manual := b.create(t, task.Task{Scope: groupScope("g-all")})
	ob := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: sched(schedule.OnVirusOutbreak, nil)})
	local := b.create(t, task.Task{Scope: scope.Scope{Kind: scope.Local, Device: "d00001"}, Description: "v1"})
	_, err := b.sim.Manager.Start(b.ctx, task.System, manual.ID)
	must(t, err)
	must(t, b.sim.Agent("d00002").ReportVirusOutbreak(b.ctx, "o1", schedule.WorkstationsFileServers))
	def := b.sim.Agent("d00001").Tasks()
	var edit transport.TaskSpec
	for _, d := range def {
		if d.Task.ID == local.ID {
			edit = d.Task
		}
	}
	edit.Description = "edited on the device"
	must(t, b.sim.Agent("d00001").EditLocalTask(b.ctx, "carol", edit))
	b.step(t, 24*time.Hour)
	for i := range 4 {
		d := scope.DeviceID(fmtID(i))
		for _, c := range []struct {
			tk   *task.Task
			want int
		}{{daily, 1}, {manual, 1}, {ob, 1}} {
			if got := len(b.sim.Exec.Runs(c.tk.ID, d)); got != c.want {
				t.Errorf("%s on %s: %d runs, want %d", c.tk.Name, d, got, c.want)
			}
			if r := b.result(t, c.tk.ID, d); r.State != task.Completed {
				t.Errorf("%s on %s: %s", c.tk.Name, d, r.State)
			}
		}
	}
	got, err := b.sim.Manager.Get(b.ctx, task.System, local.ID)
	must(t, err)
	if got.Description != "edited on the device" {
		t.Errorf("local task %q, want the device user's edit", got.Description)
	}
}
