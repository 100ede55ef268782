package engine

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

var rawJSON = cmp.Comparer(func(a, b json.RawMessage) bool {
	var x, y bytes.Buffer
	if json.Compact(&x, a) != nil || json.Compact(&y, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(x.Bytes(), y.Bytes())
})

// fullTask has every field of task.Task set, each to a value no other
// field has.
func fullTask(t *testing.T) task.Task {
	t.Helper()
	pw, err := credentials.ParseSealed("tfsealed:v1:k1:" + base64.RawURLEncoding.EncodeToString(make([]byte, 28)))
	if err != nil {
		t.Fatal(err)
	}
	sch := schedule.Default(schedule.Weekly, t0Internal, time.UTC)
	sch.RunMissed = true
	rst := restart.Default()
	rst.Action = restart.DoNotRestart
	return task.Task{ID: "t1", Name: "Nightly", Description: "desc", Application: "ES", ApplicationVersion: "12", Type: "update",
		Scope:    scope.Scope{Kind: scope.Local, Device: "d1"},
		Schedule: sch, Account: credentials.Account{Name: "svc", Password: pw}, Restart: rst,
		Notifications: task.Notifications{History: task.HistoryAll, NoServerHistory: true, RetentionDays: 9, DeviceEventLog: true,
			ErrorsOnly: true, Email: []string{"a@example.com"}},
		Security:  task.Security{ACL: []task.AccessEntry{{Principal: "admins", Allow: []task.Permission{task.PermModify}}}},
		Settings:  json.RawMessage(`{"source":"server"}`),
		Suspended: true, Opaque: json.RawMessage(`{"vendor":1}`), Revision: 8, SettingsRevision: 7,
		CreatedAt: t0Internal, CreatedBy: "alice", UpdatedAt: t0Internal.Add(time.Hour), UpdatedBy: "bob"}
}

// Every field of task.Task is named in taskFieldsOnWire (carried, or not
// and why), and the list names no field that is gone: a field added to
// the task model fails here until someone decides whether devices need
// it.
func TestTaskFieldsOnWireNamesEveryTaskField(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeFor[task.Task]()
	seen := map[string]bool{}
	for i := range typ.NumField() {
		name := typ.Field(i).Name
		seen[name] = true
		if _, ok := taskFieldsOnWire[name]; !ok {
			t.Errorf("task.Task.%s is new: add it to taskFieldsOnWire (and to transport.TaskSpec and specOf if devices need it)", name)
		}
	}
	for name := range taskFieldsOnWire {
		if !seen[name] {
			t.Errorf("taskFieldsOnWire names %s, which task.Task no longer has", name)
		}
	}
}

// specOf carries every field the list says a device is sent, with its
// value, and sets every field of TaskSpec.
func TestSpecOfCarriesEveryDeviceField(t *testing.T) {
	t.Parallel()
	tk := fullTask(t)
	got, err := specOf(&tk)
	if err != nil {
		t.Fatal(err)
	}
	want := transport.TaskSpec{ID: "t1", Name: "Nightly", Description: "desc", Application: "ES", ApplicationVersion: "12", Type: "update",
		Scope: transport.ScopeSpec{Kind: transport.ScopeLocal}, Schedule: tk.Schedule, Account: tk.Account, Restart: tk.Restart,
		Notifications: transport.NotificationsSpec{History: transport.HistoryAll, DeviceEventLog: true},
		Settings:      json.RawMessage(`{"source":"server"}`), Suspended: true, Revision: 8, SettingsRevision: 7}
	if diff := cmp.Diff(want, got, rawJSON); diff != "" {
		t.Errorf("specOf (-want +got):\n%s", diff)
	}
	sv, tv := reflect.ValueOf(got), reflect.ValueOf(tk)
	for name, why := range taskFieldsOnWire {
		f := sv.FieldByName(name)
		switch {
		case why == "" && !f.IsValid():
			t.Errorf("task.Task.%s is listed as sent to devices, but TaskSpec has no such field", name)
		case why == "" && f.IsZero() && !tv.FieldByName(name).IsZero():
			t.Errorf("task.Task.%s is listed as sent to devices, but specOf does not carry it", name)
		}
	}
	for i := range sv.NumField() {
		if sv.Field(i).IsZero() {
			t.Errorf("TaskSpec.%s is not set by specOf", sv.Type().Field(i).Name)
		}
	}
	// Settings of a registered type travel as their JSON.
	tk.Settings = struct {
		Depth int `json:"depth"`
	}{3}
	if got, err := specOf(&tk); err != nil || string(got.Settings) != `{"depth":3}` {
		t.Errorf("typed settings: %s, %v", got.Settings, err)
	}
	tk.Settings = nil
	if got, err := specOf(&tk); err != nil || got.Settings != nil {
		t.Errorf("no settings: %s, %v", got.Settings, err)
	}
}

// A device's edit changes exactly the fields of deviceEditable: whatever
// else the device sends (another id, type, scope kind, revision) is not
// taken, and what it is not sent (the access list, e-mail, scope
// members, audit data) stays the server's.
func TestEditedTaskTakesOnlyDeviceEditableFields(t *testing.T) {
	t.Parallel()
	cur := fullTask(t)
	sch := schedule.Default(schedule.EveryDays, t0Internal, time.UTC)
	sp := transport.TaskSpec{ID: "other", Name: "Mine", Description: "edited", Application: "X", ApplicationVersion: "1", Type: "scan",
		Scope: transport.ScopeSpec{Kind: "group"}, Schedule: sch, Account: credentials.Account{}, Restart: restart.Default(),
		Notifications: transport.NotificationsSpec{History: transport.HistoryResults},
		Settings:      json.RawMessage(`{"source":"device"}`), Suspended: false, Revision: 99, SettingsRevision: 98}
	got := editedTask(cur, sp)
	want := cur
	want.Name, want.Description, want.Schedule, want.Account, want.Restart = "Mine", "edited", sch, credentials.Account{}, restart.Default()
	want.Notifications.History, want.Notifications.DeviceEventLog = task.HistoryResults, false
	want.Settings, want.Suspended = json.RawMessage(`{"source":"device"}`), false
	if diff := cmp.Diff(want, got, rawJSON); diff != "" {
		t.Errorf("editedTask (-want +got):\n%s", diff)
	}
	gv, cv := reflect.ValueOf(got), reflect.ValueOf(cur)
	for i := range gv.NumField() {
		name := gv.Type().Field(i).Name
		changed := !reflect.DeepEqual(gv.Field(i).Interface(), cv.Field(i).Interface())
		if changed != slices.Contains(deviceEditable, name) {
			t.Errorf("task.Task.%s: changed by the edit %v, device-editable %v", name, changed, slices.Contains(deviceEditable, name))
		}
	}
	for _, name := range deviceEditable {
		if why, ok := taskFieldsOnWire[name]; !ok || why != "" && name != "Notifications" {
			t.Errorf("device-editable %s is not a field devices are sent", name)
		}
	}
	// null settings are the type's defaults.
	sp.Settings = json.RawMessage(" null ")
	if got := editedTask(cur, sp); got.Settings != nil {
		t.Errorf("null settings: %s", got.Settings)
	}
}

// Both directions: a device that sends back the spec it was sent edits
// nothing.
func TestEditOfTheSpecSentChangesNothing(t *testing.T) {
	t.Parallel()
	cur := fullTask(t)
	sp, err := specOf(&cur)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cur, editedTask(cur, sp), rawJSON); diff != "" {
		t.Errorf("round trip (-task +edited):\n%s", diff)
	}
}

// The wire's run states, event levels and history rule are the task
// model's: the same strings in the same order, the same final and error
// states, the same event of each state, the same levels kept by each
// history setting. The agent uses the wire's; the server the model's.
func TestWireStatesAreTheTaskModels(t *testing.T) {
	t.Parallel()
	if len(transport.States) != len(task.States) {
		t.Fatalf("%d wire states, %d task states", len(transport.States), len(task.States))
	}
	for i, ws := range transport.States {
		ts := task.States[i]
		if string(ws) != string(ts) {
			t.Errorf("state %d: wire %q, task %q", i, ws, ts)
		}
		if ws.Final() != ts.Final() || ws.IsError() != ts.IsError() || !ws.Valid() {
			t.Errorf("%s: wire final %v error %v, task final %v error %v", ws, ws.Final(), ws.IsError(), ts.Final(), ts.IsError())
		}
		wl, wv := transport.EventOf(ws)
		tl, tv := task.EventOf(ts)
		if string(wl) != string(tl) || string(wv) != string(tv) {
			t.Errorf("%s: wire event %s/%s, task %s/%s", ws, wl, wv, tl, tv)
		}
	}
	for _, h := range []task.HistoryLevel{"", task.HistoryAll, task.HistoryProgress, task.HistoryResults} {
		for _, l := range []task.EventLevel{task.EventResult, task.EventProgress, task.EventInfo} {
			if w, m := transport.HistoryLevel(h).Keeps(transport.EventLevel(l)), h.Keeps(l); w != m {
				t.Errorf("history %q keeps %s: wire %v, task %v", h, l, w, m)
			}
		}
	}
}
