package klt_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/klt"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
)

// openAPICase is a task as a server returns it (Tasks.GetTaskData: a
// PxgRetVal with the settings, no taskfleet fields) with the schedule it
// must import as. converted is false for the schedules the public fields
// do not describe, which import as manual with their fields kept opaque.
type openAPICase struct {
	name      string
	fields    string // the schedule fields, JSON members
	want      func() schedule.Schedule
	converted bool
	// add replaces the restart options in TASK_ADDITIONAL_PARAMS; group
	// replaces PRTS_TASK_GROUPID (default 42).
	add, group string
	// info and top are more members of TASK_INFO_PARAMS and of the task.
	info, top string
	// notify is the notification settings the task must import with
	// (nil: the defaults); verbatim says the server's
	// KLPRSS_EVPNotifications has details they do not hold, so it is
	// kept verbatim with a WarnNotificationsKept warning.
	notify   *task.Notifications
	verbatim bool
}

// notifyMapped is a KLPRSS_EVPNotifications exactly as taskfleet reads
// and writes it: only task results are stored, for 14 days on the server
// and in the devices' OS event log; errors are sent by e-mail to two
// addresses.
const notifyMapped = `"KLPRSS_EVPNotifications": {"type": "params", "value": {
    "ERR": [{"type": "params", "value": {"KLEVP_ND_EVETN_TYPE": "KLPRCI_TaskState", "KLEVP_ND_BODY_FILTER": {"type": "params", "value": {"KLPRCI_newState": 3}},
      "KLEVP_ND_DAYS_TO_STORE_EVENT": 14, "KLEVP_ND_STORE_AT_CLIENT_LOG": true, "KLEVP_ND_STORE_AT_SERVER_LOG": false, "KLEVP_ND_STORE_AT_CLIENT_PRES": false,
      "KLEVP_ND_USE_EMAIL": true, "KLEVP_ND_EMAIL": "soc@example.com,oncall@example.com"}}],
    "WRN": [{"type": "params", "value": {"KLEVP_ND_EVETN_TYPE": "KLPRCI_TaskState", "KLEVP_ND_BODY_FILTER": {"type": "params", "value": {"KLPRCI_newState": 4}},
      "KLEVP_ND_DAYS_TO_STORE_EVENT": 14, "KLEVP_ND_STORE_AT_CLIENT_LOG": true, "KLEVP_ND_STORE_AT_SERVER_LOG": false, "KLEVP_ND_STORE_AT_CLIENT_PRES": false,
      "KLEVP_ND_USE_EMAIL": false, "KLEVP_ND_EMAIL": "soc@example.com,oncall@example.com"}}],
    "INF": [{"type": "params", "value": {"KLEVP_ND_EVETN_TYPE": "KLPRCI_TaskState", "KLEVP_ND_BODY_FILTER": {"type": "params", "value": {"KLPRCI_newState": 4}},
      "KLEVP_ND_DAYS_TO_STORE_EVENT": 14, "KLEVP_ND_STORE_AT_CLIENT_LOG": true, "KLEVP_ND_STORE_AT_SERVER_LOG": false, "KLEVP_ND_STORE_AT_CLIENT_PRES": false,
      "KLEVP_ND_USE_EMAIL": false, "KLEVP_ND_EMAIL": "soc@example.com,oncall@example.com"}}]}}`

// notifyServer is shaped like the public KlAkOAPI sample that creates a
// task (state changes of every severity kept one day, the running,
// suspended and completed states and the synchronization state as
// separate informational events), with a critical severity, an SMS
// channel and the server's OS event log, none of which
// task.Notifications holds.
const notifyServer = `"KLPRSS_EVPNotifications": {"type": "params", "value": {
    "CRT": [{"type": "params", "value": {"KLEVP_ND_EVETN_TYPE": "KLPRCI_TaskState", "KLEVP_ND_DAYS_TO_STORE_EVENT": 1, "KLEVP_ND_USE_SMS": true, "KLEVP_ND_STORE_AT_SERVER_LOG": true}}],
    "ERR": [{"type": "params", "value": {"KLEVP_ND_DAYS_TO_STORE_EVENT": 1, "KLEVP_ND_EVETN_TYPE": "KLPRCI_TaskState", "KLEVP_ND_STORE_AT_CLIENT_LOG": false, "KLEVP_ND_STORE_AT_CLIENT_PRES": false, "KLEVP_ND_STORE_AT_SERVER_LOG": false}}],
    "INF": [
      {"type": "params", "value": {"KLEVP_ND_DAYS_TO_STORE_EVENT": 1, "KLEVP_ND_EVETN_TYPE": "KLEVP_GroupTaskSyncState", "KLEVP_ND_STORE_AT_CLIENT_LOG": false, "KLEVP_ND_STORE_AT_CLIENT_PRES": false, "KLEVP_ND_STORE_AT_SERVER_LOG": false}},
      {"type": "params", "value": {"KLEVP_ND_BODY_FILTER": {"type": "params", "value": {"KLPRCI_newState": 1}}, "KLEVP_ND_DAYS_TO_STORE_EVENT": 1, "KLEVP_ND_EVETN_TYPE": "KLPRCI_TaskState", "KLEVP_ND_STORE_AT_CLIENT_LOG": false, "KLEVP_ND_STORE_AT_CLIENT_PRES": false, "KLEVP_ND_STORE_AT_SERVER_LOG": false}},
      {"type": "params", "value": {"KLEVP_ND_BODY_FILTER": {"type": "params", "value": {"KLPRCI_newState": 2}}, "KLEVP_ND_DAYS_TO_STORE_EVENT": 1, "KLEVP_ND_EVETN_TYPE": "KLPRCI_TaskState", "KLEVP_ND_STORE_AT_CLIENT_LOG": false, "KLEVP_ND_STORE_AT_CLIENT_PRES": false, "KLEVP_ND_STORE_AT_SERVER_LOG": false}},
      {"type": "params", "value": {"KLEVP_ND_BODY_FILTER": {"type": "params", "value": {"KLPRCI_newState": 4}}, "KLEVP_ND_DAYS_TO_STORE_EVENT": 1, "KLEVP_ND_EVETN_TYPE": "KLPRCI_TaskState", "KLEVP_ND_STORE_AT_CLIENT_LOG": false, "KLEVP_ND_STORE_AT_CLIENT_PRES": false, "KLEVP_ND_STORE_AT_SERVER_LOG": false}}],
    "WRN": [{"type": "params", "value": {"KLEVP_ND_DAYS_TO_STORE_EVENT": 1, "KLEVP_ND_EVETN_TYPE": "KLPRCI_TaskState", "KLEVP_ND_STORE_AT_CLIENT_LOG": false, "KLEVP_ND_STORE_AT_CLIENT_PRES": false, "KLEVP_ND_STORE_AT_SERVER_LOG": false}}]}}`

// defaultReboot are the restart options of the default policy.
const defaultReboot = `"KLTSK_RU_REBOOT_IMMEDIATELY": false, "KLTSK_RU_REBOOT_ASK_FOR_REBOOT": true,
    "KLTSK_RU_REBOOT_ASK_FOR_REBOOT_PERIOD": {"type": "long", "value": 5}, "KLTSK_RU_REBOOT_FORCE_REBOOT_PERIOD": {"type": "long", "value": 30},
    "KLTSK_RU_REBOOT_MESSAGE": ""`

func at(s string) time.Time {
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return v
}

func openAPICases() []openAPICase {
	base := func(k schedule.Kind) schedule.Schedule { return schedule.Default(k, time.Time{}, nil) }
	return []openAPICase{
		{"manual", `"TASKSCH_TYPE": 0, "EVENT_TYPE": ""`, func() schedule.Schedule { return base(schedule.Manual) }, true, "", "", "", "", nil, false},
		{"once", `"TASKSCH_TYPE": 1, "TASKSCH_MS_PERIOD": 0, "TASKSCH_FIRST_EXECUTION_TIME": {"type": "datetime", "value": "2026-12-24T20:15:00Z"}`,
			func() schedule.Schedule { return schedule.Default(schedule.Once, at("2026-12-24T20:15:00Z"), nil) }, true, "", "", "", "", nil, false},
		{"every_minutes", `"TASKSCH_TYPE": 1, "TASKSCH_MS_PERIOD": 2700000, "TASKSCH_FIRST_EXECUTION_TIME": {"type": "datetime", "value": "2026-11-20T10:00:00Z"}`,
			func() schedule.Schedule {
				s := schedule.Default(schedule.EveryMinutes, at("2026-11-20T10:00:00Z"), nil)
				s.Every = 45
				return s
			}, true, "", "", "", "", nil, false},
		{"every_hours", `"TASKSCH_TYPE": 1, "TASKSCH_MS_PERIOD": {"type": "long", "value": 2678400000}, "TASKSCH_FIRST_EXECUTION_TIME": {"type": "datetime", "value": "2026-11-20T10:00:00Z"}, "TASK_START_DELTA": 30`,
			func() schedule.Schedule {
				s := schedule.Default(schedule.EveryHours, at("2026-11-20T10:00:00Z"), nil)
				s.Every = 744
				s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayInterval, IntervalMinutes: 30}
				return s
			}, true, "", "", "", "", nil, false},
		{"every_days", `"TASKSCH_TYPE": 2, "TASKSCH_ED_HOURS": 3, "TASKSCH_ED_MINS": 4, "TASKSCH_ED_SECS": 5, "TASKSCH_FIRST_EXECUTION_TIME": {"type": "datetime", "value": "2026-11-21T03:04:05Z"}`,
			func() schedule.Schedule {
				s := base(schedule.EveryDays)
				s.Time = schedule.Clock(3, 4, 5)
				s.StartDate = schedule.Date{Year: 2026, Month: 11, Day: 21}
				return s
			}, true, "", "", "", "", nil, false},
		{"weekly", `"TASKSCH_TYPE": 6, "TASKSCH_WD_DAYS": 130, "TASKSCH_WD_HOURS": 23, "TASKSCH_WD_MINS": 59, "TASKSCH_WD_SECS": 58, "TASK_MAX_EXEC_TIME": 10080, "TASKSCH_RUN_MISSED_FLAG": true`,
			func() schedule.Schedule {
				s := base(schedule.Weekly)
				s.Weekdays = schedule.NewWeekdays(time.Sunday, time.Saturday)
				s.Time = schedule.Clock(23, 59, 58)
				s.StopAfter = schedule.Limit{Enabled: true, Minutes: 10080}
				s.RunMissed = true
				return s
			}, true, "", "", "", "", nil, false},
		// Once a week (type 3, KSC Automation's TASKSCH_EW_*): days of the
		// week with one day, written back as type 3.
		{"once_a_week", `"TASKSCH_TYPE": 3, "TASKSCH_EW_DAY": 5, "TASKSCH_EW_HOURS": 18, "TASKSCH_EW_MINS": 0, "TASKSCH_EW_SECS": 0, "TASK_START_DELTA": 0, "TASK_MAX_EXEC_TIME": 120`,
			func() schedule.Schedule {
				s := base(schedule.Weekly)
				s.Weekdays = schedule.NewWeekdays(time.Friday)
				s.Time = schedule.Clock(18, 0, 0)
				s.StopAfter = schedule.Limit{Enabled: true, Minutes: 120}
				return s
			}, true, "", "", "", "", nil, false},
		{"monthly", `"TASKSCH_TYPE": 4, "TASKSCH_EM_DAY": 31, "TASKSCH_EM_HOURS": 0, "TASKSCH_EM_MINS": 30, "TASKSCH_EM_SECS": 0`,
			func() schedule.Schedule {
				s := base(schedule.Monthly)
				s.Day = 31
				s.Time = schedule.Clock(0, 30, 0)
				return s
			}, true, "", "", "", "", nil, false},
		{"on_updates_downloaded", `"TASKSCH_TYPE": 0, "EVENT_TYPE": "on_updates_downloaded"`,
			func() schedule.Schedule { return base(schedule.OnUpdates) }, true, "", "", "", "", nil, false},
		{"on_virus_outbreak", `"TASKSCH_TYPE": 0, "EVENT_TYPE": "on_virus_outbreak"`,
			func() schedule.Schedule { return base(schedule.OnVirusOutbreak) }, true, "", "", "", "", nil, false},
		// Not described by public fields: imported manual, kept opaque.
		{"nth_weekday", `"TASKSCH_TYPE": 7, "TASKSCH_FIRST_EXECUTION_TIME": {"type": "datetime", "value": "2026-11-20T18:00:00Z"}`,
			func() schedule.Schedule { return base(schedule.Manual) }, false, "", "", "", "", nil, false},
		{"on_task_completion", `"TASKSCH_TYPE": 0, "EVENT_TYPE": "on_task_completion"`,
			func() schedule.Schedule { return base(schedule.Manual) }, false, "", "", "", "", nil, false},
		{"server_event", `"TASKSCH_TYPE": 0, "EVENT_TYPE": "KLEVP_EV_SOME_SERVER_EVENT", "TASK_START_DELTA": 5`,
			func() schedule.Schedule { return base(schedule.Manual) }, false, "", "", "", "", nil, false},
		// A task for specific devices, run as an account, restarting at once.
		{"device_list_account_restart", `"TASKSCH_TYPE": 0, "EVENT_TYPE": "", "HostList": ["dev-01", "dev-03"]`,
			func() schedule.Schedule { return base(schedule.Manual) }, true,
			`"KLTSK_RU_REBOOT_IMMEDIATELY": true, "KLTSK_RU_REBOOT_ASK_FOR_REBOOT": false,
    "KLTSK_RU_REBOOT_ASK_FOR_REBOOT_PERIOD": {"type": "long", "value": 0}, "KLTSK_RU_REBOOT_FORCE_REBOOT_PERIOD": {"type": "long", "value": 0},
    "KLTSK_RU_REBOOT_MESSAGE": "Save your work", "klprts-TaskAccountUser": "CORP\\svc-update", "klprts-TaskAccountPassword": {"type": "binary", "value": "c2VjcmV0"}`, "-1", "", "", nil, false},
		// Prompt the user, repeat every 15 minutes, never force.
		{"restart_prompt", `"TASKSCH_TYPE": 0, "EVENT_TYPE": ""`,
			func() schedule.Schedule { return base(schedule.Manual) }, true,
			`"KLTSK_RU_REBOOT_IMMEDIATELY": false, "KLTSK_RU_REBOOT_ASK_FOR_REBOOT": true,
    "KLTSK_RU_REBOOT_ASK_FOR_REBOOT_PERIOD": {"type": "long", "value": 15}, "KLTSK_RU_REBOOT_FORCE_REBOOT_PERIOD": {"type": "long", "value": 0},
    "KLTSK_RU_REBOOT_MESSAGE": "Restart when you can"`, "", "", "", nil, false},
		// Notifications in the shape taskfleet writes: mapped.
		{"notifications", `"TASKSCH_TYPE": 0, "EVENT_TYPE": ""`,
			func() schedule.Schedule { return base(schedule.Manual) }, true, "", "", notifyMapped, "", &task.Notifications{
				History: task.HistoryResults, RetentionDays: 14, DeviceEventLog: true, ErrorsOnly: true,
				Email: []string{"soc@example.com", "oncall@example.com"}}, false},
		// A server's notifications with details taskfleet does not hold,
		// a component name and a schedule subtype of its own: the nearest
		// settings, and the server's values written back verbatim.
		{"notifications_server", `"TASKSCH_TYPE": 0, "EVENT_TYPE": ""`,
			func() schedule.Schedule { return base(schedule.Manual) }, true, "", "",
			notifyServer + `, "klprts-TaskScheduleSubtype": 512`, `"TASKID_COMPONENT_NAME": "86"`,
			&task.Notifications{RetentionDays: 1}, true},
	}
}

func openAPIDoc(c openAPICase) []byte {
	if c.add == "" {
		c.add = defaultReboot
	}
	if c.group == "" {
		c.group = "42"
	}
	info, top := "", ""
	if c.info != "" {
		info = ", " + c.info
	}
	if c.top != "" {
		top = ", " + c.top
	}
	doc := `{"PxgRetVal": {
  "TASKID_PRODUCT_NAME": "Endpoint Security", "TASKID_VERSION": "12.1", "TASK_NAME": "update",
  "TASK_UNIQUE_ID": "_LOCAL_` + c.name + `",
  "TASK_INFO_PARAMS": {"type": "params", "value": {"DisplayName": "Server task ` + c.name + `", "PRTS_TASK_GROUPID": ` + c.group + info + `}},
  "TASK_ADDITIONAL_PARAMS": {"type": "params", "value": {"source": "administration-server", ` + c.add + `}},
  ` + c.fields + top + `}}`
	n, err := klt.Normalize([]byte(doc))
	if err != nil {
		panic(fmt.Sprintf("%s: %v", c.name, err))
	}
	return n
}

// members returns the task-level members of a KLT document or PxgRetVal
// as compact JSON, by key.
func members(t testing.TB, doc []byte) map[string]string {
	t.Helper()
	var root map[string]json.RawMessage
	must(t, json.Unmarshal(doc, &root))
	var body map[string]json.RawMessage
	if raw, ok := root["PxgRetVal"]; ok {
		must(t, json.Unmarshal(raw, &body))
	} else {
		var tp struct {
			Value map[string]json.RawMessage `json:"value"`
		}
		must(t, json.Unmarshal(root["task"], &tp))
		body = tp.Value
	}
	out := map[string]string{}
	for k, v := range body {
		var b bytes.Buffer
		must(t, json.Compact(&b, v))
		out[k] = b.String()
	}
	return out
}

// infoMembers returns the members of a params container (compact JSON)
// as compact JSON, by key.
func infoMembers(t testing.TB, raw string) map[string]string {
	t.Helper()
	var p struct {
		Value map[string]json.RawMessage `json:"value"`
	}
	must(t, json.Unmarshal([]byte(raw), &p))
	out := map[string]string{}
	for k, v := range p.Value {
		var b bytes.Buffer
		must(t, json.Compact(&b, v))
		out[k] = b.String()
	}
	return out
}

// TestOpenAPIScheduleGolden imports a server task of every schedule type
// (golden files under testdata/openapi, the Open API shape), commits it
// to a store (memory and SQLite), exports the stored task later and
// checks that every field of the original comes back with the same value
// and type.
func TestOpenAPIScheduleGolden(t *testing.T) {
	t.Parallel()
	sqlite, err := sqlstore.OpenSQLite(t.Context(), ":memory:")
	must(t, err)
	t.Cleanup(func() { sqlite.Close() })
	stores := []struct {
		name  string
		store storage.Store
	}{{"memstore", nil}, {"sqlite", sqlite}}
	if pg := postgresStore(t); pg != nil {
		stores = append(stores, struct {
			name  string
			store storage.Store
		}{"postgres", pg})
	}
	for _, st := range stores {
		b := setupStore(t, st.store)
		for _, c := range openAPICases() {
			t.Run(st.name+"/"+c.name, func(t *testing.T) {
				path := filepath.Join("testdata", "openapi", "schedule_"+c.name+".json")
				if *update {
					must(t, os.MkdirAll(filepath.Dir(path), 0o755))
					must(t, os.WriteFile(path, openAPIDoc(c), 0o644))
				}
				in, err := os.ReadFile(path)
				must(t, err)
				imp, err := klt.Parse(bytes.NewReader(in), b.reg, klt.ParseOptions{})
				must(t, err)
				if d := cmp.Diff(c.want(), imp.Task.Schedule, cmpOpts...); d != "" {
					t.Fatalf("schedule (-want +got):\n%s", d)
				}
				notConverted := slices.ContainsFunc(imp.Warnings, func(w klt.Warning) bool { return w.Code == klt.WarnScheduleNotConverted })
				if notConverted == c.converted {
					t.Fatalf("converted %v, but warnings %q", c.converted, codes(imp.Warnings))
				}
				wantNotify := task.Notifications{}
				if c.notify != nil {
					wantNotify = *c.notify
				}
				if d := cmp.Diff(wantNotify, imp.Task.Notifications, cmpOpts...); d != "" {
					t.Fatalf("notifications (-want +got):\n%s", d)
				}
				kept := slices.Contains(codes(imp.Warnings), "notifications_kept_verbatim@PxgRetVal.TASK_INFO_PARAMS.KLPRSS_EVPNotifications")
				if kept != c.verbatim {
					t.Fatalf("kept verbatim %v, but warnings %q", c.verbatim, codes(imp.Warnings))
				}
				if imp.AccountName != "" {
					// The administrator enters the password again.
					imp.Task.Account, err = credentials.Specify(imp.AccountName, credentials.NewSecret("re-entered"), b.seal)
					must(t, err)
				}
				created, err := imp.Commit(b.ctx, b.m, b.admin, *imp.SourceScope)
				must(t, err)
				stored, err := b.m.Get(b.ctx, b.admin, created.ID)
				must(t, err)
				out, _, err := klt.Export(stored, lookup(t, b.reg, stored), klt.ExportOptions{Time: exportTime})
				must(t, err)
				got := members(t, out)
				for k, v := range members(t, in) {
					if k == "TASK_INFO_PARAMS" {
						// Member by member: DisplayName gains an index when
						// taken.
						gotInfo := infoMembers(t, got[k])
						for ik, iv := range infoMembers(t, v) {
							if ik != "DisplayName" && gotInfo[ik] != iv {
								t.Errorf("%s.%s: exported %s, server had %s", k, ik, gotInfo[ik], iv)
							}
						}
						continue
					}
					if k == "TASK_ADDITIONAL_PARAMS" {
						// Everything but the password, which is never exported.
						v = strings.Replace(v, `,"klprts-TaskAccountPassword":{"type":"binary","value":"c2VjcmV0"}`, "", 1)
					}
					if got[k] != v {
						t.Errorf("%s: exported %s, server had %s", k, got[k], v)
					}
				}
				if bytes.Contains(out, []byte("c2VjcmV0")) || bytes.Contains(out, []byte("re-entered")) {
					t.Errorf("a password was exported:\n%s", out)
				}
				again, err := klt.Parse(bytes.NewReader(out), b.reg, klt.ParseOptions{})
				must(t, err)
				if d := cmp.Diff(imp.Task.Schedule, again.Task.Schedule, cmpOpts...); d != "" {
					t.Fatalf("schedule after the store (-imported +again):\n%s", d)
				}
			})
		}
	}
}

// Bad public schedule fields are refused with the field's path; public
// fields that disagree with TF_SCHEDULE are refused too.
func TestPublicScheduleRefusals(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	golden, err := os.ReadFile("testdata/golden/schedule_weekly.klt")
	must(t, err)
	weekly, err := os.ReadFile("testdata/openapi/schedule_weekly.json")
	must(t, err)
	every, err := os.ReadFile("testdata/openapi/schedule_every_minutes.json")
	must(t, err)
	days, err := os.ReadFile("testdata/openapi/schedule_every_days.json")
	must(t, err)
	prompt, err := os.ReadFile("testdata/openapi/schedule_restart_prompt.json")
	must(t, err)
	devices, err := os.ReadFile("testdata/openapi/schedule_device_list_account_restart.json")
	must(t, err)
	cases := []struct {
		name     string
		doc      []byte
		old, new string
		field    string
	}{
		{"disagrees with TF_SCHEDULE", golden, `"TASKSCH_WD_HOURS": 18`, `"TASKSCH_WD_HOURS": 20`, "task.TASKSCH_WD_HOURS"},
		{"run missed disagrees", golden, `"TASKSCH_RUN_MISSED_FLAG": false`, `"TASKSCH_RUN_MISSED_FLAG": true`, "task.TASKSCH_RUN_MISSED_FLAG"},
		{"unused bit 0", weekly, `"TASKSCH_WD_DAYS": 130`, `"TASKSCH_WD_DAYS": 131`, "PxgRetVal.TASKSCH_WD_DAYS"},
		{"no days", weekly, `"TASKSCH_WD_DAYS": 130`, `"TASKSCH_WD_DAYS": 0`, "PxgRetVal.TASKSCH_WD_DAYS"},
		{"hour 24", weekly, `"TASKSCH_WD_HOURS": 23`, `"TASKSCH_WD_HOURS": 24`, "PxgRetVal.TASKSCH_WD_HOURS"},
		{"string hour", days, `"TASKSCH_ED_HOURS": 3`, `"TASKSCH_ED_HOURS": "3"`, "PxgRetVal.TASKSCH_ED_HOURS"},
		{"period not minutes", every, `"TASKSCH_MS_PERIOD": 2700000`, `"TASKSCH_MS_PERIOD": 2700001`, "PxgRetVal.TASKSCH_MS_PERIOD"},
		{"negative period", every, `"TASKSCH_MS_PERIOD": 2700000`, `"TASKSCH_MS_PERIOD": -60000`, "PxgRetVal.TASKSCH_MS_PERIOD"},
		{"period too long", every, `"TASKSCH_MS_PERIOD": 2700000`, `"TASKSCH_MS_PERIOD": 99999999999999999999`, "PxgRetVal.TASKSCH_MS_PERIOD"},
		{"first time not datetime", every, `{
      "type": "datetime",
      "value": "2026-11-20T10:00:00Z"
    }`, `"2026-11-20T10:00:00Z"`, "PxgRetVal.TASKSCH_FIRST_EXECUTION_TIME"},
		{"delay out of range", weekly, `"TASKSCH_RUN_MISSED_FLAG": true`, `"TASKSCH_RUN_MISSED_FLAG": true, "TASK_START_DELTA": 1441`, "PxgRetVal.TASK_START_DELTA"},
		{"invalid typed vendor value", weekly, `"TASKSCH_RUN_MISSED_FLAG": true`, `"TASKSCH_RUN_MISSED_FLAG": true, "KLX_VENDOR": {"type": "long", "value": 1.5}`, "PxgRetVal.KLX_VENDOR"},
		{"invalid nested vendor value", weekly, `"TASKSCH_RUN_MISSED_FLAG": true`, `"TASKSCH_RUN_MISSED_FLAG": true, "KLX_VENDOR": {"type": "params", "value": {"d": {"type": "date", "value": "2026-02-30"}}}`, "PxgRetVal.KLX_VENDOR.d"},
		{"restart and prompt at once", prompt, `"KLTSK_RU_REBOOT_IMMEDIATELY": false`, `"KLTSK_RU_REBOOT_IMMEDIATELY": true`, "PxgRetVal.TASK_ADDITIONAL_PARAMS.KLTSK_RU_REBOOT_ASK_FOR_REBOOT"},
		{"prompt period too long", prompt, `"value": 15`, `"value": 1441`, "PxgRetVal.TASK_ADDITIONAL_PARAMS.KLTSK_RU_REBOOT_ASK_FOR_REBOOT_PERIOD"},
		{"restart disagrees with TF_RESTART", golden, `"KLTSK_RU_REBOOT_IMMEDIATELY": false`, `"KLTSK_RU_REBOOT_IMMEDIATELY": true`, "task.TASK_ADDITIONAL_PARAMS.KLTSK_RU_REBOOT_IMMEDIATELY"},
		{"host not a string", devices, `"dev-03"`, `3`, "PxgRetVal.HostList[1]"},
		{"device list with a group", devices, `"PRTS_TASK_GROUPID": -1`, `"PRTS_TASK_GROUPID": 42`, "PxgRetVal.HostList"},
		{"once a week without a day", days, `"TASKSCH_TYPE": 2`, `"TASKSCH_TYPE": 3`, "PxgRetVal.TASKSCH_EW_DAY"},
		{"once a week on day 8", days, `"TASKSCH_TYPE": 2`, `"TASKSCH_TYPE": 3, "TASKSCH_EW_DAY": 8`, "PxgRetVal.TASKSCH_EW_DAY"},
		{"event not a string", weekly, `"TASKSCH_RUN_MISSED_FLAG": true`, `"TASKSCH_RUN_MISSED_FLAG": true, "EVENT_TYPE": 3`, "PxgRetVal.EVENT_TYPE"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !bytes.Contains(c.doc, []byte(c.old)) {
				t.Fatalf("the document lacks %s", c.old)
			}
			doc := bytes.Replace(c.doc, []byte(c.old), []byte(c.new), 1)
			_, err := klt.Parse(bytes.NewReader(doc), reg, klt.ParseOptions{})
			if !errors.Is(err, klt.ErrInvalid) {
				t.Fatalf("err = %v", err)
			}
			if got := fieldsOf(err); !slices.Contains(got, c.field) {
				t.Fatalf("fields %q do not name %q (%v)", got, c.field, err)
			}
		})
	}
}

// The attribute list of Tasks.GetTask, with the task-independent
// attributes beside the others (no TASK_INFO_PARAMS, the display name as
// TASK_DISPLAY_NAME), imports like the settings document of
// Tasks.GetTaskData; Export writes the settings shape.
func TestOpenAPIAttributeList(t *testing.T) {
	t.Parallel()
	b := setup(t)
	imp, _ := parseFile(t, b.reg, "testdata/openapi_gettask_attributes.json")
	want := schedule.Default(schedule.Monthly, time.Time{}, nil)
	want.Day, want.Time = 15, schedule.Clock(2, 30, 0)
	if imp.Task.Name != "Nightly update" || imp.SourceScope == nil || imp.SourceScope.Group != "42" {
		t.Fatalf("name %q, scope %+v", imp.Task.Name, imp.SourceScope)
	}
	if d := cmp.Diff(want, imp.Task.Schedule, cmpOpts...); d != "" {
		t.Fatalf("schedule (-want +got):\n%s", d)
	}
	var paths []string
	for _, f := range imp.Extra {
		paths = append(paths, f.PathString())
	}
	if d := cmp.Diff([]string{"task.TASK_UNIQUE_ID"}, paths); d != "" {
		t.Fatalf("opaque fields (-want +got):\n%s", d)
	}
	got, err := imp.Commit(b.ctx, b.m, b.admin, *imp.SourceScope)
	must(t, err)
	out, _, err := klt.Export(got, lookup(t, b.reg, got), klt.ExportOptions{Time: exportTime})
	must(t, err)
	info := members(t, out)["TASK_INFO_PARAMS"]
	if !strings.Contains(info, `"DisplayName":"Nightly update"`) || !strings.Contains(info, `"PRTS_TASK_GROUPID":42`) {
		t.Fatalf("TASK_INFO_PARAMS %s", info)
	}
}

// A server's once-a-week schedule (type 3) is written back as it was
// while the task keeps it; once the task's schedule changes, Export writes
// the task's own (type 6), and nothing of type 3 is left.
func TestOnceAWeekFollowsChanges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	imp, _ := parseFile(t, b.reg, "testdata/openapi/schedule_once_a_week.json")
	created, err := imp.Commit(b.ctx, b.m, b.admin, *imp.SourceScope)
	must(t, err)
	tt := lookup(t, b.reg, created)
	out, _, err := klt.Export(created, tt, klt.ExportOptions{Time: exportTime})
	must(t, err)
	if got := members(t, out); got["TASKSCH_TYPE"] != "3" || got["TASKSCH_EW_DAY"] != "5" || got["TASKSCH_WD_DAYS"] != "" {
		t.Fatalf("unchanged: TASKSCH_TYPE %s, EW_DAY %s, WD_DAYS %s", got["TASKSCH_TYPE"], got["TASKSCH_EW_DAY"], got["TASKSCH_WD_DAYS"])
	}
	changed := *created
	changed.Schedule.Weekdays = schedule.NewWeekdays(time.Monday, time.Friday)
	updated, err := b.m.Update(b.ctx, b.admin, changed)
	must(t, err)
	out, _, err = klt.Export(updated, tt, klt.ExportOptions{Time: exportTime})
	must(t, err)
	got := members(t, out)
	if got["TASKSCH_TYPE"] != "6" || got["TASKSCH_WD_DAYS"] != "68" || got["TASKSCH_EW_DAY"] != "" {
		t.Fatalf("changed: TASKSCH_TYPE %s, WD_DAYS %s, EW_DAY %s", got["TASKSCH_TYPE"], got["TASKSCH_WD_DAYS"], got["TASKSCH_EW_DAY"])
	}
	again, err := klt.Parse(bytes.NewReader(out), b.reg, klt.ParseOptions{})
	must(t, err)
	if d := cmp.Diff(updated.Schedule, again.Task.Schedule, cmpOpts...); d != "" {
		t.Fatalf("schedule (-want +got):\n%s", d)
	}
}
