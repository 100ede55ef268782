package klt_test

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/klt"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

// A file written by an earlier version (format 1.1) carries the
// notifications as TF_NOTIFICATIONS: they are read, and a new export
// writes the public KLPRSS_EVPNotifications only.
func TestNotificationsOfEarlierFiles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	in, err := os.ReadFile("testdata/v1.1_tf_notifications.klt")
	must(t, err)
	if !bytes.Contains(in, []byte(`"TF_NOTIFICATIONS"`)) || bytes.Contains(in, []byte("KLPRSS_EVPNotifications")) {
		t.Fatal("the 1.1 file should carry TF_NOTIFICATIONS only")
	}
	imp, err := klt.Parse(bytes.NewReader(in), b.reg, klt.ParseOptions{AnyType: true})
	must(t, err)
	want := task.Notifications{History: task.HistoryAll, RetentionDays: 90, ErrorsOnly: true, Email: []string{"soc@corp.example"}}
	if d := cmp.Diff(want, imp.Task.Notifications); d != "" {
		t.Fatalf("notifications (-want +got):\n%s", d)
	}
	x := imp.Task
	x.Scope = *imp.SourceScope
	out, _, err := klt.Export(&x, task.TaskType{Application: x.Application, Name: x.Type}, klt.ExportOptions{Time: exportTime})
	must(t, err)
	if bytes.Contains(out, []byte("TF_NOTIFICATIONS")) || !bytes.Contains(out, []byte("KLPRSS_EVPNotifications")) {
		t.Fatalf("the export should write KLPRSS_EVPNotifications only:\n%s", out)
	}
	again, err := klt.Parse(bytes.NewReader(out), b.reg, klt.ParseOptions{AnyType: true})
	must(t, err)
	if d := cmp.Diff(want, again.Task.Notifications); d != "" {
		t.Fatalf("notifications after the new export (-want +got):\n%s", d)
	}
}

// A file of an earlier version with both names: TF_NOTIFICATIONS is
// authoritative; a KLPRSS_EVPNotifications that disagrees is not kept.
func TestEarlierFileWithBothNotificationNames(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	in, err := os.ReadFile("testdata/v1.1_tf_notifications.klt")
	must(t, err)
	server, err := os.ReadFile("testdata/openapi/schedule_notifications_server.json")
	must(t, err)
	var container string
	{
		i := bytes.Index(server, []byte(`"KLPRSS_EVPNotifications": `))
		j := bytes.Index(server[i:], []byte("\n        },\n"))
		container = string(server[i : i+j+len("\n        }")])
	}
	doc := strings.Replace(string(in), `"DisplayName": "Friday scan",`, `"DisplayName": "Friday scan", `+container+",", 1)
	imp, err := klt.Parse(strings.NewReader(doc), reg, klt.ParseOptions{AnyType: true})
	must(t, err)
	if imp.Task.Notifications.RetentionDays != 90 {
		t.Fatalf("TF_NOTIFICATIONS was not authoritative: %+v", imp.Task.Notifications)
	}
	if !slices.Contains(codes(imp.Warnings), "ignored@task.TASK_INFO_PARAMS.KLPRSS_EVPNotifications") {
		t.Fatalf("warnings %q", codes(imp.Warnings))
	}
	for _, f := range imp.Extra {
		if f.PathString() == "task.TASK_INFO_PARAMS.KLPRSS_EVPNotifications" {
			t.Fatal("a disagreeing container was kept")
		}
	}
}

// A server's container kept verbatim is written back only while the
// task's notifications read the same: once they change, the export
// writes the task's own.
func TestServerNotificationsFollowChanges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	imp, _ := parseFile(t, b.reg, "testdata/openapi/schedule_notifications_server.json")
	created, err := imp.Commit(b.ctx, b.m, b.admin, *imp.SourceScope)
	must(t, err)
	tt := lookup(t, b.reg, created)
	out, _, err := klt.Export(created, tt, klt.ExportOptions{Time: exportTime})
	must(t, err)
	if !bytes.Contains(out, []byte("KLEVP_GroupTaskSyncState")) || !bytes.Contains(out, []byte(`"KLEVP_ND_USE_SMS": true`)) {
		t.Fatalf("the server's container was not written back:\n%s", out)
	}
	changed := *created
	changed.Notifications.ErrorsOnly = true
	updated, err := b.m.Update(b.ctx, b.admin, changed)
	must(t, err)
	out, _, err = klt.Export(updated, tt, klt.ExportOptions{Time: exportTime})
	must(t, err)
	if bytes.Contains(out, []byte("KLEVP_GroupTaskSyncState")) {
		t.Fatalf("the server's stale container was written after the notifications changed:\n%s", out)
	}
	again, err := klt.Parse(bytes.NewReader(out), b.reg, klt.ParseOptions{})
	must(t, err)
	if d := cmp.Diff(updated.Notifications, again.Task.Notifications); d != "" {
		t.Fatalf("notifications (-want +got):\n%s", d)
	}
}

// Export writes the fields Tasks.AddTask requires also for a task that
// never came from a server, from ExportOptions or their documented
// defaults, and writes group ids as integers or refuses them.
func TestExportWritesFieldsAServerRequires(t *testing.T) {
	t.Parallel()
	b := setup(t)
	x := fullTask(t, b.seal) // group "office", excluding "sales"
	tt := lookup(t, b.reg, x)

	out, rep, err := klt.Export(x, tt, klt.ExportOptions{Time: exportTime})
	must(t, err)
	got := members(t, out)
	info := infoMembers(t, got["TASK_INFO_PARAMS"])
	for k, want := range map[string]string{"TASKID_COMPONENT_NAME": `"Endpoint Security"`, "TASKID_VERSION": `"12.1"`, "TASK_NAME": `"virus_scan"`, "TASKSCH_TYPE": "6"} {
		if got[k] != want {
			t.Errorf("%s = %s, want %s", k, got[k], want)
		}
	}
	if info["klprts-TaskScheduleSubtype"] != "256" || info["DisplayName"] == "" {
		t.Errorf("TASK_INFO_PARAMS %v", info)
	}
	if _, ok := info["PRTS_TASK_GROUPID"]; ok {
		t.Errorf("a non-integer group id was written: %s", info["PRTS_TASK_GROUPID"])
	}
	if d := cmp.Diff([]scope.GroupID{"office", "sales"}, rep.GroupIDsOmitted); d != "" {
		t.Errorf("GroupIDsOmitted (-want +got):\n%s", d)
	}

	// For a server: the host's names and numbers.
	ids := map[scope.GroupID]int32{"office": 7, "sales": 9}
	opts := klt.ExportOptions{Time: exportTime, ComponentName: "86",
		ScheduleSubtype: func(k schedule.Kind) int { return map[schedule.Kind]int{schedule.Weekly: 6}[k] },
		GroupIDs:        func(g scope.GroupID) (int32, bool) { v, ok := ids[g]; return v, ok }}
	out, rep, err = klt.Export(x, tt, opts)
	must(t, err)
	got = members(t, out)
	info = infoMembers(t, got["TASK_INFO_PARAMS"])
	if got["TASKID_COMPONENT_NAME"] != `"86"` || info["klprts-TaskScheduleSubtype"] != "6" ||
		info["PRTS_TASK_GROUPID"] != "7" || info["PRTS_EXCEPT_GROUPIDS"] != "[9]" || len(rep.GroupIDsOmitted) != 0 {
		t.Fatalf("component %s, info %v, omitted %v", got["TASKID_COMPONENT_NAME"], info, rep.GroupIDsOmitted)
	}
	// The host's values are not taskfleet's defaults: they travel as the
	// task's own, with no warning, and come back on the next export.
	imp, err := klt.Parse(bytes.NewReader(out), b.reg, klt.ParseOptions{})
	must(t, err)
	for _, w := range imp.Warnings {
		if w.Code == klt.WarnUnknownField {
			t.Errorf("warning %s", w)
		}
	}
	y := imp.Task
	y.Scope, y.Account = x.Scope, x.Account
	again, _, err := klt.Export(&y, tt, klt.ExportOptions{Time: exportTime, GroupIDs: opts.GroupIDs})
	must(t, err)
	if !bytes.Equal(out, again) {
		t.Fatalf("the host's values did not come back:\n%s\n%s", out, again)
	}

	// A group the mapping does not know is refused, never written as a
	// string.
	delete(ids, "sales")
	_, _, err = klt.Export(x, tt, opts)
	if !errors.Is(err, klt.ErrInvalid) || !slices.Contains(fieldsOf(err), "scope.excluded_groups[0]") {
		t.Fatalf("err = %v", err)
	}
}

// The Open API's DisplayName holds at most 100 characters: a longer task
// name is refused by Export, and a longer DisplayName by Parse.
func TestDisplayNameLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	x := fullTask(t, b.seal)
	tt := lookup(t, b.reg, x)
	x.Name = strings.Repeat("ü", klt.MaxDisplayNameLength)
	out, _, err := klt.Export(x, tt, klt.ExportOptions{Time: exportTime})
	must(t, err)
	_, err = klt.Parse(bytes.NewReader(out), b.reg, klt.ParseOptions{})
	must(t, err)

	x.Name += "x"
	if len(x.Name) > task.MaxNameLength || !(klt.MaxDisplayNameLength < task.MaxNameLength) {
		t.Fatal("the test name should be one the task model allows")
	}
	_, _, err = klt.Export(x, tt, klt.ExportOptions{Time: exportTime})
	var ve *klt.ValidationError
	if !errors.As(err, &ve) || ve.Field != "name" || !errors.Is(err, klt.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	long := bytes.Replace(out, []byte(`"DisplayName": "`), []byte(`"DisplayName": "x`), 1)
	_, err = klt.Parse(bytes.NewReader(long), b.reg, klt.ParseOptions{})
	if !errors.Is(err, klt.ErrInvalid) || !slices.Contains(fieldsOf(err), "task.TASK_INFO_PARAMS.DisplayName") {
		t.Fatalf("err = %v", err)
	}
}
