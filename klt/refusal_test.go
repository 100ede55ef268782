package klt_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/taskfleet/taskfleet/klt"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

// fieldsOf lists the Field of every ValidationError in err.
func fieldsOf(err error) []string {
	var out []string
	var ves klt.ValidationErrors
	var ve *klt.ValidationError
	switch {
	case errors.As(err, &ves):
		for _, e := range ves {
			out = append(out, e.Field)
		}
	case errors.As(err, &ve):
		out = append(out, ve.Field)
	}
	return out
}

func baseDoc(t testing.TB) []byte {
	t.Helper()
	x := fullTask(t, nil)
	out, _, err := klt.Export(x, lookup(t, registry(t), x), klt.ExportOptions{Time: exportTime})
	must(t, err)
	return out
}

// mutate decodes doc, lets f change it (tv is task.value, info
// TASK_INFO_PARAMS.value, add TASK_ADDITIONAL_PARAMS.value) and encodes it.
func mutate(t testing.TB, doc []byte, f func(root, tv, info, add map[string]any)) []byte {
	t.Helper()
	var root map[string]any
	must(t, json.Unmarshal(doc, &root))
	tv := root["task"].(map[string]any)["value"].(map[string]any)
	info := tv["TASK_INFO_PARAMS"].(map[string]any)["value"].(map[string]any)
	add := tv["TASK_ADDITIONAL_PARAMS"].(map[string]any)["value"].(map[string]any)
	f(root, tv, info, add)
	b, err := json.Marshal(root)
	must(t, err)
	return b
}

// notify returns the first event descriptor of a severity in
// TASK_INFO_PARAMS.KLPRSS_EVPNotifications.
func notify(info map[string]any, sev string) map[string]any {
	return value(info, "KLPRSS_EVPNotifications")[sev].([]any)[0].(map[string]any)["value"].(map[string]any)
}

func value(m map[string]any, key string) map[string]any {
	return m[key].(map[string]any)["value"].(map[string]any)
}

func TestParseRefusals(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	base := baseDoc(t)
	m := func(f func(root, tv, info, add map[string]any)) []byte { return mutate(t, base, f) }
	cases := []struct {
		name  string
		doc   []byte
		opts  klt.ParseOptions
		field string // expected ValidationError field ("-" when none)
		is    error
	}{
		{"too large", base, klt.ParseOptions{MaxSize: 100}, "", klt.ErrInvalid},
		{"invalid UTF-8", bytes.Replace(base, []byte("Büro"), []byte("B\xffro"), 1), klt.ParseOptions{}, "", klt.ErrInvalid},
		{"UTF-8 cut at the end", append(bytes.TrimSpace(slices.Clone(base)), 0xe2, 0x82), klt.ParseOptions{}, "", klt.ErrInvalid},
		{"overlong UTF-8", bytes.Replace(base, []byte("Büro"), []byte("B\xc0\xafro"), 1), klt.ParseOptions{}, "", klt.ErrInvalid},
		{"duplicate root key", []byte(`{"format":"taskfleet-klt","format":"taskfleet-klt"}`), klt.ParseOptions{}, "format", klt.ErrInvalid},
		{"duplicate nested key", bytes.Replace(base, []byte(`"DisplayName": `), []byte(`"DisplayName": "x", "DisplayName": `), 1), klt.ParseOptions{}, "task.value.TASK_INFO_PARAMS.value.DisplayName", klt.ErrInvalid},
		{"duplicate key in a big object", []byte(`{"a0":0,"a1":1,"a2":2,"a3":3,"a4":4,"a5":5,"a6":6,"a7":7,"a8":8,"a9":9,"b0":0,"b1":1,"b2":2,"b3":3,"b4":4,"b5":5,"b6":6,"b7":7,"a3":3}`), klt.ParseOptions{}, "a3", klt.ErrInvalid},
		{"too deep", base, klt.ParseOptions{MaxDepth: 3}, "task.value.EVENT_TYPE", klt.ErrInvalid},
		{"deep arrays", []byte(strings.Repeat("[", 100) + strings.Repeat("]", 100)), klt.ParseOptions{}, "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]", klt.ErrInvalid},
		{"too many values", base, klt.ParseOptions{MaxValues: 10}, "task.value.TASKID_PRODUCT_NAME", klt.ErrInvalid},
		{"negative limit", base, klt.ParseOptions{MaxSize: -1}, "MaxSize", klt.ErrInvalid},
		{"not JSON", []byte(`{"format": tru}`), klt.ParseOptions{}, "format", klt.ErrInvalid},
		{"bad number", []byte(`{"format": 01}`), klt.ParseOptions{}, "format", klt.ErrInvalid},
		{"bad escape", []byte(`{"format": "\\x"}`), klt.ParseOptions{}, "format", klt.ErrInvalid},
		{"control character in a string", []byte("{\"format\": \"a\tb\"}"), klt.ParseOptions{}, "format", klt.ErrInvalid},
		{"missing colon", []byte(`{"format" "x"}`), klt.ParseOptions{}, "format", klt.ErrInvalid},
		{"unterminated", []byte(`{"format": "x`), klt.ParseOptions{}, "format", klt.ErrInvalid},
		{"empty", nil, klt.ParseOptions{}, "", klt.ErrInvalid},
		{"data after the document", append(slices.Clone(base), "{}"...), klt.ParseOptions{}, "", klt.ErrInvalid},
		{"not an object", []byte(`[]`), klt.ParseOptions{}, "", klt.ErrInvalid},
		{"no format", []byte(`{}`), klt.ParseOptions{}, "format", klt.ErrInvalid},
		{"other format", m(func(r, _, _, _ map[string]any) { r["format"] = "kaspersky-klt" }), klt.ParseOptions{}, "format", klt.ErrInvalid},
		{"newer major version", m(func(r, _, _, _ map[string]any) { r["format_version"] = "2.0" }), klt.ParseOptions{}, "-", klt.ErrUnsupportedVersion},
		{"malformed version", m(func(r, _, _, _ map[string]any) { r["format_version"] = "01.0" }), klt.ParseOptions{}, "format_version", klt.ErrInvalid},
		{"version not a string", m(func(r, _, _, _ map[string]any) { r["format_version"] = 1 }), klt.ParseOptions{}, "format_version", klt.ErrInvalid},
		{"export time not UTC", m(func(r, _, _, _ map[string]any) { r["exported_at"] = "2026-11-22T02:02:03+01:00" }), klt.ParseOptions{}, "exported_at", klt.ErrInvalid},
		{"no export time", m(func(r, _, _, _ map[string]any) { delete(r, "exported_at") }), klt.ParseOptions{}, "exported_at", klt.ErrInvalid},
		{"no task", m(func(r, _, _, _ map[string]any) { delete(r, "task") }), klt.ParseOptions{}, "task", klt.ErrInvalid},
		{"task not params", m(func(r, _, _, _ map[string]any) { r["task"] = 5 }), klt.ParseOptions{}, "task", klt.ErrInvalid},
		{"task of another type", m(func(r, _, _, _ map[string]any) { r["task"] = map[string]any{"type": "long", "value": 5} }), klt.ParseOptions{}, "task", klt.ErrInvalid},
		{"bad long", m(func(_, _, _, a map[string]any) { a["quota"] = map[string]any{"type": "long", "value": "many"} }), klt.ParseOptions{}, "task.TASK_ADDITIONAL_PARAMS.quota", klt.ErrInvalid},
		{"bad datetime", m(func(_, tv, _, _ map[string]any) {
			value(tv, "TF_SCHEDULE")["start"] = map[string]any{"type": "datetime", "value": "yesterday"}
		}), klt.ParseOptions{}, "task.TF_SCHEDULE.start", klt.ErrInvalid},
		{"bad binary", m(func(_, _, _, a map[string]any) { a["blob"] = map[string]any{"type": "binary", "value": "%%%"} }), klt.ParseOptions{}, "task.TASK_ADDITIONAL_PARAMS.blob", klt.ErrInvalid},
		{"unknown typed value", m(func(_, _, _, a map[string]any) { a["x"] = map[string]any{"type": "widget", "value": 1} }), klt.ParseOptions{}, "task.TASK_ADDITIONAL_PARAMS.x.type", klt.ErrInvalid},
		{"plain object in params", m(func(_, _, _, a map[string]any) { a["x"] = map[string]any{"a": 1} }), klt.ParseOptions{}, "task.TASK_ADDITIONAL_PARAMS.x", klt.ErrInvalid},
		{"server task type", m(func(_, tv, _, _ map[string]any) {
			tv["TASK_NAME"], tv["TASKID_PRODUCT_NAME"] = "backup", appServer
		}), klt.ParseOptions{}, "-", klt.ErrNotExportable},
		{"not exportable type", m(func(_, tv, _, _ map[string]any) {
			tv["TASK_NAME"], tv["TASKID_PRODUCT_NAME"] = "secret_rotation", appAgent
		}), klt.ParseOptions{}, "-", klt.ErrNotExportable},
		{"unregistered type", m(func(_, tv, _, _ map[string]any) { tv["TASK_NAME"] = "defrag" }), klt.ParseOptions{}, "task.TASK_NAME", klt.ErrInvalid},
		{"no type", m(func(_, tv, _, _ map[string]any) { delete(tv, "TASK_NAME") }), klt.ParseOptions{}, "task.TASK_NAME", klt.ErrInvalid},
		{"type not a string", m(func(_, tv, _, _ map[string]any) { tv["TASKID_PRODUCT_NAME"] = true }), klt.ParseOptions{}, "task.TASKID_PRODUCT_NAME", klt.ErrInvalid},
		{"no info params", m(func(_, tv, _, _ map[string]any) { delete(tv, "TASK_INFO_PARAMS") }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS", klt.ErrInvalid},
		{"empty name", m(func(_, _, i, _ map[string]any) { i["DisplayName"] = " " }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.DisplayName", klt.ErrInvalid},
		{"name too long", m(func(_, _, i, _ map[string]any) { i["DisplayName"] = strings.Repeat("n", task.MaxNameLength+1) }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.DisplayName", klt.ErrInvalid},
		{"name over the Open API's 100 characters", m(func(_, _, i, _ map[string]any) { i["DisplayName"] = strings.Repeat("n", klt.MaxDisplayNameLength+1) }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.DisplayName", klt.ErrInvalid},
		{"schedule subtype not an integer", m(func(_, _, i, _ map[string]any) { i["klprts-TaskScheduleSubtype"] = "256" }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.klprts-TaskScheduleSubtype", klt.ErrInvalid},
		{"component name not a string", m(func(_, tv, _, _ map[string]any) { tv["TASKID_COMPONENT_NAME"] = 86 }), klt.ParseOptions{}, "task.TASKID_COMPONENT_NAME", klt.ErrInvalid},
		{"notification days out of range", m(func(_, _, i, _ map[string]any) { notify(i, "ERR")["KLEVP_ND_DAYS_TO_STORE_EVENT"] = 9999 }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.KLPRSS_EVPNotifications.ERR[0].KLEVP_ND_DAYS_TO_STORE_EVENT", klt.ErrInvalid},
		{"notification days not an integer", m(func(_, _, i, _ map[string]any) { notify(i, "INF")["KLEVP_ND_DAYS_TO_STORE_EVENT"] = "30" }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.KLPRSS_EVPNotifications.INF[0].KLEVP_ND_DAYS_TO_STORE_EVENT", klt.ErrInvalid},
		{"bad e-mail", m(func(_, _, i, _ map[string]any) { notify(i, "ERR")["KLEVP_ND_EMAIL"] = "soc at example" }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.KLPRSS_EVPNotifications.email[0]", klt.ErrInvalid},
		{"too many recipients", m(func(_, _, i, _ map[string]any) { notify(i, "ERR")["KLEVP_ND_EMAIL"] = strings.Repeat(",", 1<<20) }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.KLPRSS_EVPNotifications", klt.ErrInvalid},
		{"use e-mail not a boolean", m(func(_, _, i, _ map[string]any) { notify(i, "WRN")["KLEVP_ND_USE_EMAIL"] = 1 }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.KLPRSS_EVPNotifications.WRN[0].KLEVP_ND_USE_EMAIL", klt.ErrInvalid},
		{"severity not an array", m(func(_, _, i, _ map[string]any) { value(i, "KLPRSS_EVPNotifications")["ERR"] = "all" }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.KLPRSS_EVPNotifications.ERR", klt.ErrInvalid},
		{"notifications not params", m(func(_, _, i, _ map[string]any) { i["KLPRSS_EVPNotifications"] = []any{} }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.KLPRSS_EVPNotifications", klt.ErrInvalid},
		{"bad earlier TF_NOTIFICATIONS", m(func(_, tv, _, _ map[string]any) {
			tv["TF_NOTIFICATIONS"] = map[string]any{"type": "params", "value": map[string]any{"retention_days": 9999}}
		}), klt.ParseOptions{}, "task.TF_NOTIFICATIONS.retention_days", klt.ErrInvalid},
		{"unknown earlier TF_NOTIFICATIONS field", m(func(_, tv, _, _ map[string]any) {
			tv["TF_NOTIFICATIONS"] = map[string]any{"type": "params", "value": map[string]any{"sms": true}}
		}), klt.ParseOptions{}, "task.TF_NOTIFICATIONS", klt.ErrInvalid},
		{"control character in description", m(func(_, _, i, _ map[string]any) { i["TF_DESCRIPTION"] = "a\x00b" }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.TF_DESCRIPTION", klt.ErrInvalid},
		{"suspended not a boolean", m(func(_, _, i, _ map[string]any) { i["TF_SUSPENDED"] = "yes" }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.TF_SUSPENDED", klt.ErrInvalid},
		{"invalid schedule", m(func(_, tv, _, _ map[string]any) { value(tv, "TF_SCHEDULE")["weekdays"] = []any{} }), klt.ParseOptions{}, "task.TF_SCHEDULE.weekdays", klt.ErrInvalid},
		{"unknown schedule field", m(func(_, tv, _, _ map[string]any) { value(tv, "TF_SCHEDULE")["every"] = 5 }), klt.ParseOptions{}, "task.TF_SCHEDULE.every", klt.ErrInvalid},
		{"schedule not params", m(func(_, tv, _, _ map[string]any) { tv["TF_SCHEDULE"] = "weekly" }), klt.ParseOptions{}, "task.TF_SCHEDULE", klt.ErrInvalid},
		{"run missed disagrees", m(func(_, tv, _, _ map[string]any) { tv["TASKSCH_RUN_MISSED_FLAG"] = false }), klt.ParseOptions{}, "task.TASKSCH_RUN_MISSED_FLAG", klt.ErrInvalid},
		{"schedule type disagrees", m(func(_, tv, _, _ map[string]any) { tv["TASKSCH_TYPE"] = 2 }), klt.ParseOptions{}, "task.TASKSCH_TYPE", klt.ErrInvalid},
		{"schedule type not an integer", m(func(_, tv, _, _ map[string]any) { tv["TASKSCH_TYPE"] = 2.5 }), klt.ParseOptions{}, "task.TASKSCH_TYPE", klt.ErrInvalid},
		{"auto randomization disagrees", m(func(_, _, i, _ map[string]any) { i["KLTSK_ALLOW_AUTO_RANDOMIZATION"] = true }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.KLTSK_ALLOW_AUTO_RANDOMIZATION", klt.ErrInvalid},
		{"settings out of range", m(func(_, _, _, a map[string]any) { a["max_file_size_mb"] = 0 }), klt.ParseOptions{}, "task.TASK_ADDITIONAL_PARAMS.max_file_size_mb", klt.ErrInvalid},
		{"settings of the wrong type", m(func(_, _, _, a map[string]any) { a["max_file_size_mb"] = "big" }), klt.ParseOptions{}, "task.TASK_ADDITIONAL_PARAMS.max_file_size_mb", klt.ErrInvalid},
		{"settings not params", m(func(_, tv, _, _ map[string]any) { tv["TASK_ADDITIONAL_PARAMS"] = []any{} }), klt.ParseOptions{}, "task.TASK_ADDITIONAL_PARAMS", klt.ErrInvalid},
		{"bad scope", m(func(_, tv, _, _ map[string]any) { value(tv, "TF_SCOPE")["kind"] = "galaxy" }), klt.ParseOptions{}, "task.TF_SCOPE.kind", klt.ErrInvalid},
		{"group id disagrees", m(func(_, tv, i, _ map[string]any) { value(tv, "TF_SCOPE")["group"], i["PRTS_TASK_GROUPID"] = "42", 7 }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.PRTS_TASK_GROUPID", klt.ErrInvalid},
		{"group id not an id", m(func(_, _, i, _ map[string]any) { i["PRTS_TASK_GROUPID"] = true }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.PRTS_TASK_GROUPID", klt.ErrInvalid},
		{"group id of a non-integer group not an integer", m(func(_, _, i, _ map[string]any) { i["PRTS_TASK_GROUPID"] = "lab" }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.PRTS_TASK_GROUPID", klt.ErrInvalid},
		{"excluded groups disagree", m(func(_, _, i, _ map[string]any) { i["PRTS_EXCEPT_GROUPIDS"] = []any{"lab"} }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.PRTS_EXCEPT_GROUPIDS", klt.ErrInvalid},
		{"excluded groups not an array", m(func(_, _, i, _ map[string]any) { i["PRTS_EXCEPT_GROUPIDS"] = "lab" }), klt.ParseOptions{}, "task.TASK_INFO_PARAMS.PRTS_EXCEPT_GROUPIDS", klt.ErrInvalid},
		{"bad restart", m(func(_, tv, _, _ map[string]any) {
			value(value(tv, "TF_RESTART"), "repeat_prompt")["minutes"] = 0
		}), klt.ParseOptions{}, "task.TF_RESTART.repeat_prompt.minutes", klt.ErrInvalid},
		{"bad permission", m(func(_, tv, _, _ map[string]any) {
			value(tv, "TF_SECURITY")["acl"] = []any{map[string]any{"type": "params", "value": map[string]any{"principal": "x", "allow": []any{"own"}}}}
		}), klt.ParseOptions{}, "task.TF_SECURITY.acl[0].allow[0]", klt.ErrInvalid},
		{"empty access entry", m(func(_, tv, _, _ map[string]any) {
			value(tv, "TF_SECURITY")["acl"] = []any{map[string]any{"type": "params", "value": map[string]any{"principal": " "}}}
		}), klt.ParseOptions{}, "task.TF_SECURITY.acl[0].principal", klt.ErrInvalid},
		{"account name not a string", m(func(_, tv, _, _ map[string]any) { tv["TF_ACCOUNT_NAME"] = 1 }), klt.ParseOptions{}, "task.TF_ACCOUNT_NAME", klt.ErrInvalid},
		{"empty account name", m(func(_, tv, _, _ map[string]any) { tv["TF_ACCOUNT_NAME"] = "" }), klt.ParseOptions{}, "task.TF_ACCOUNT_NAME", klt.ErrInvalid},
		{"PxgRetVal not params", []byte(`{"PxgRetVal": 5}`), klt.ParseOptions{}, "PxgRetVal", klt.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			imp, err := klt.Parse(bytes.NewReader(c.doc), reg, c.opts)
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", imp)
			}
			if imp != nil {
				t.Fatal("Parse returned an import with an error")
			}
			if !errors.Is(err, c.is) {
				t.Fatalf("error %v does not match %v", err, c.is)
			}
			got := fieldsOf(err)
			if c.field == "-" {
				if len(got) != 0 {
					t.Fatalf("fields %q, want a typed error", got)
				}
				return
			}
			if !slices.Contains(got, c.field) {
				t.Fatalf("fields %q do not name %q (error: %v)", got, c.field, err)
			}
		})
	}
	if _, err := klt.Parse(bytes.NewReader(base), nil, klt.ParseOptions{}); !errors.Is(err, klt.ErrInvalid) {
		t.Fatalf("nil registry: %v", err)
	}
}

func TestVersionErrorSaysWhatIsSupported(t *testing.T) {
	t.Parallel()
	doc := mutate(t, baseDoc(t), func(r, _, _, _ map[string]any) { r["format_version"] = "3.1" })
	_, err := klt.Parse(bytes.NewReader(doc), registry(t), klt.ParseOptions{})
	var ve *klt.VersionError
	if !errors.As(err, &ve) || ve.Found != "3.1" || ve.Supported != klt.FormatVersion {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "3.1") || !strings.Contains(err.Error(), "1.x") {
		t.Fatalf("message %q does not say which versions are read", err)
	}
}

func TestExportRefusals(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	serverTask := &task.Task{Name: "Backup", Application: appServer, Type: "backup", Scope: scope.Scope{Kind: scope.Server},
		Schedule: schedule.Default(schedule.Manual, start, nil)}
	onServer := fullTask(t, nil)
	onServer.Scope = scope.Scope{Kind: scope.Server}
	notExportable := fullTask(t, nil)
	notExportable.Application, notExportable.Type, notExportable.Settings = appAgent, "secret_rotation", nil
	badSchedule := fullTask(t, nil)
	badSchedule.Schedule.Weekdays = 0
	scan := fullTask(t, nil)
	updateType, _ := reg.Lookup(appES, "update")
	extra := func(e ...klt.Field) klt.ExportOptions { return klt.ExportOptions{Time: exportTime, Extra: e} }
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	cases := []struct {
		name  string
		t     *task.Task
		tt    task.TaskType
		opts  klt.ExportOptions
		field string
		is    error
	}{
		{"server task", serverTask, lookup(t, reg, serverTask), klt.ExportOptions{Time: exportTime}, "-", klt.ErrNotExportable},
		{"server scope", onServer, lookup(t, reg, onServer), klt.ExportOptions{Time: exportTime}, "-", klt.ErrNotExportable},
		{"not exportable type", notExportable, lookup(t, reg, notExportable), klt.ExportOptions{Time: exportTime}, "-", klt.ErrNotExportable},
		{"nil task", nil, updateType, klt.ExportOptions{Time: exportTime}, "task", klt.ErrInvalid},
		{"type mismatch", scan, updateType, klt.ExportOptions{Time: exportTime}, "type", klt.ErrInvalid},
		{"invalid schedule", badSchedule, lookup(t, reg, badSchedule), klt.ExportOptions{Time: exportTime}, "schedule.weekdays", klt.ErrInvalid},
		{"extra outside the task", scan, lookup(t, reg, scan), extra(klt.Field{Path: []string{"task", "TF_SCOPE", "x"}, Value: raw("1")}), "extra[0].path", klt.ErrInvalid},
		{"extra collides", scan, lookup(t, reg, scan), extra(klt.Field{Path: []string{"task", "TASK_INFO_PARAMS", "DisplayName"}, Value: raw(`"x"`)}), "extra[0].path", klt.ErrInvalid},
		{"extra collides with settings", scan, lookup(t, reg, scan), extra(klt.Field{Path: []string{"task", "TASK_ADDITIONAL_PARAMS", "proxy_url"}, Value: raw(`"x"`)}), "extra[0].path", klt.ErrInvalid},
		{"extra header collides", scan, lookup(t, reg, scan), extra(klt.Field{Path: []string{"format"}, Value: raw(`"x"`)}), "extra[0].path", klt.ErrInvalid},
		{"extra twice", scan, lookup(t, reg, scan), extra(klt.Field{Path: []string{"task", "X"}, Value: raw("1")}, klt.Field{Path: []string{"task", "X"}, Value: raw("2")}), "extra[1].path", klt.ErrInvalid},
		{"extra not params", scan, lookup(t, reg, scan), extra(klt.Field{Path: []string{"task", "X"}, Value: raw(`{"a":1}`)}), "extra[0].value", klt.ErrInvalid},
		{"extra not JSON", scan, lookup(t, reg, scan), extra(klt.Field{Path: []string{"task", "X"}, Value: raw(`{`)}), "extra[0].value", klt.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out, _, err := klt.Export(c.t, c.tt, c.opts)
			if err == nil {
				t.Fatalf("Export accepted it:\n%s", out)
			}
			if !errors.Is(err, c.is) {
				t.Fatalf("error %v does not match %v", err, c.is)
			}
			var ne *klt.NotExportableError
			if c.is == klt.ErrNotExportable && !errors.As(err, &ne) {
				t.Fatalf("error %T is not a *NotExportableError", err)
			}
			got := fieldsOf(err)
			if c.field == "-" {
				if len(got) != 0 {
					t.Fatalf("fields %q, want a typed error", got)
				}
				return
			}
			if !slices.Contains(got, c.field) {
				t.Fatalf("fields %q do not name %q (error: %v)", got, c.field, err)
			}
		})
	}
}
