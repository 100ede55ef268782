package schedule_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/schedule"
)

const advJSON = `"run_missed":false,"random_delay":{"mode":"off","interval_minutes":1},"stop_after":{"enabled":false,"minutes":120},"wake_on_lan":{"enabled":false,"minutes":5},"shutdown_after":false}`

// validSamples returns a valid schedule of every kind, with non-default
// values where the kind has them, and its exact encoding.
func validSamples() []struct {
	s    schedule.Schedule
	json string
} {
	now := time.Date(2026, 11, 22, 9, 30, 15, 0, time.UTC)
	berlin, _ := time.LoadLocation("Europe/Berlin")
	d := func(k schedule.Kind) schedule.Schedule { return schedule.Default(k, now, berlin) }
	nth := d(schedule.NthWeekday)
	nth.Weeks, nth.Weekdays = schedule.SecondWeek|schedule.LastWeek, schedule.NewWeekdays(time.Tuesday, time.Sunday)
	tc := d(schedule.OnTaskCompletion)
	tc.TaskID, tc.Status = "task-42", schedule.Failed
	vo := d(schedule.OnVirusOutbreak)
	vo.AppTypes = schedule.MailSystems | schedule.PerimeterDefense
	adv := d(schedule.Monthly)
	adv.Day = 31
	adv.RunMissed, adv.ShutdownAfter = true, true
	adv.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayInterval, IntervalMinutes: 15}
	adv.StopAfter = schedule.Limit{Enabled: true, Minutes: 90}
	adv.WakeOnLAN = schedule.Limit{Enabled: true, Minutes: 10}
	frac := d(schedule.EveryMinutes)
	frac.Start = frac.Start.Add(500 * time.Millisecond)
	return []struct {
		s    schedule.Schedule
		json string
	}{
		{d(schedule.Manual), `{"kind":"manual",` + advJSON},
		{d(schedule.Once), `{"kind":"once","at":"2026-11-22T09:30:15Z",` + advJSON},
		{d(schedule.Immediately), `{"kind":"immediately","saved_at":"2026-11-22T09:30:15Z",` + advJSON},
		{d(schedule.EveryMinutes), `{"kind":"every_minutes","every":30,"start":"2026-11-22T09:30:15Z",` + advJSON},
		{frac, `{"kind":"every_minutes","every":30,"start":"2026-11-22T09:30:15.5Z",` + advJSON},
		{d(schedule.EveryHours), `{"kind":"every_hours","every":6,"start":"2026-11-22T09:30:15Z",` + advJSON},
		{d(schedule.EveryDays), `{"kind":"every_days","every":1,"start_date":"2026-11-22","time":"10:30:15",` + advJSON},
		{d(schedule.Weekly), `{"kind":"weekly","weekdays":["friday"],"time":"18:00:00",` + advJSON},
		{d(schedule.Monthly), `{"kind":"monthly","day":1,"time":"10:30:15",` + advJSON},
		{nth, `{"kind":"nth_weekday","weeks":["second","last"],"weekdays":["tuesday","sunday"],"time":"18:00:00",` + advJSON},
		{d(schedule.OnUpdates), `{"kind":"on_updates_downloaded",` + advJSON},
		{vo, `{"kind":"on_virus_outbreak","app_types":["perimeter_defense","mail_systems"],` + advJSON},
		{tc, `{"kind":"on_task_completion","task_id":"task-42","status":"failed",` + advJSON},
		{adv, `{"kind":"monthly","day":31,"time":"10:30:15","run_missed":true,"random_delay":{"mode":"interval","interval_minutes":15},"stop_after":{"enabled":true,"minutes":90},"wake_on_lan":{"enabled":true,"minutes":10},"shutdown_after":true}`},
	}
}

// TestJSONGoldenAndRoundTrip pins the stored encoding of every kind and
// checks that decoding gives back the same Schedule.
func TestJSONGoldenAndRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tt := range validSamples() {
		t.Run(tt.json, func(t *testing.T) {
			t.Parallel()
			if err := tt.s.Validate(); err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(tt.s)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.json, string(b)); diff != "" {
				t.Errorf("encoding (-want +got):\n%s", diff)
			}
			var back schedule.Schedule
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.s, back); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// TestJSONOmittedFieldsTakeDefaults: a document that omits a field gets
// the documented default.
func TestJSONOmittedFieldsTakeDefaults(t *testing.T) {
	t.Parallel()
	adv := func(s schedule.Schedule) schedule.Schedule {
		s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayOff, IntervalMinutes: 1}
		s.StopAfter = schedule.Limit{Minutes: 120}
		s.WakeOnLAN = schedule.Limit{Minutes: 5}
		return s
	}
	start := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want schedule.Schedule
	}{
		{`{"kind":"manual"}`, adv(schedule.Schedule{Kind: schedule.Manual})},
		{`{"kind":"weekly"}`, adv(schedule.Schedule{Kind: schedule.Weekly, Weekdays: schedule.NewWeekdays(time.Friday), Time: schedule.Clock(18, 0, 0)})},
		{`{"kind":"every_minutes","start":"2026-11-22T09:00:00+01:00"}`, adv(schedule.Schedule{Kind: schedule.EveryMinutes, Every: 30, Start: start})},
		{`{"kind":"every_hours","start":"2026-11-22T08:00:00Z"}`, adv(schedule.Schedule{Kind: schedule.EveryHours, Every: 6, Start: start})},
		{`{"kind":"on_virus_outbreak"}`, adv(schedule.Schedule{Kind: schedule.OnVirusOutbreak, AppTypes: schedule.AllAppTypes})},
		{`{"kind":"on_task_completion","task_id":"t1"}`, adv(schedule.Schedule{Kind: schedule.OnTaskCompletion, TaskID: "t1", Status: schedule.Completed})},
		{`{"kind":"manual","stop_after":{"enabled":true},"random_delay":{"mode":"automatic"},"wake_on_lan":{}}`, func() schedule.Schedule {
			s := adv(schedule.Schedule{Kind: schedule.Manual})
			s.StopAfter.Enabled = true
			s.RandomDelay.Mode = schedule.DelayAutomatic
			return s
		}()},
	}
	for _, tt := range tests {
		var got schedule.Schedule
		if err := json.Unmarshal([]byte(tt.in), &got); err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestJSONStrict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{`[]`, []string{": a schedule must be a JSON object"}},
		{`null`, []string{": a schedule must be a JSON object"}},
		{`{}`, []string{"kind: required: one of manual, once, immediately, every_minutes, every_hours, every_days, weekly, monthly, nth_weekday, on_updates_downloaded, on_virus_outbreak, on_task_completion"}},
		{`{"kind":7}`, []string{"kind: must be a JSON string"}},
		{`{"kind":"hourly"}`, []string{"kind: must be one of manual, once, immediately, every_minutes, every_hours, every_days, weekly, monthly, nth_weekday, on_updates_downloaded, on_virus_outbreak, on_task_completion"}},
		{`{"kind":"manual","colour":"red"}`, []string{"colour: unknown field"}},
		{`{"kind":"manual","every":5}`, []string{"every: not used by kind manual"}},
		{`{"kind":"every_minutes","every":0,"start":"2026-11-22T08:00:00Z"}`, []string{"every: must be between 1 and 1440"}},
		{`{"kind":"every_minutes","every":1441,"start":"2026-11-22T08:00:00Z"}`, []string{"every: must be between 1 and 1440"}},
		{`{"kind":"every_minutes","every":99999999999,"start":"2026-11-22T08:00:00Z"}`, []string{"every: must be an integer"}},
		{`{"kind":"every_minutes","every":1.5,"start":"2026-11-22T08:00:00Z"}`, []string{"every: must be an integer"}},
		{`{"kind":"every_minutes","every":null,"start":"2026-11-22T08:00:00Z"}`, []string{"every: must be an integer"}},
		{`{"kind":"every_minutes"}`, []string{"start: required"}},
		{`{"kind":"every_hours","start":"2026-11-22 08:00"}`, []string{"start: must be an RFC 3339 instant such as 2026-11-22T18:00:00Z"}},
		{`{"kind":"every_days","start_date":"2026-02-30"}`, []string{"start_date: must be a calendar date \"YYYY-MM-DD\" in years 0001..9999", "time: required"}},
		{`{"kind":"weekly","weekdays":["friday","friday"]}`, []string{"weekdays[1]: must be an array of distinct values from sunday, monday, tuesday, wednesday, thursday, friday, saturday"}},
		{`{"kind":"weekly","weekdays":["Friday"]}`, []string{"weekdays[0]: must be an array of distinct values from sunday, monday, tuesday, wednesday, thursday, friday, saturday"}},
		{`{"kind":"weekly","weekdays":[]}`, []string{"weekdays: select at least one of monday … sunday"}},
		{`{"kind":"weekly","weekdays":null}`, []string{"weekdays: must not be null"}},
		{`{"kind":"weekly","time":"6:00 PM"}`, []string{"time: must be a time of day \"HH:MM:SS\" between 00:00:00 and 23:59:59"}},
		{`{"kind":"nth_weekday","weeks":["fifth"],"weekdays":["monday"]}`, []string{"weeks[0]: must be an array of distinct values from first, second, third, fourth, last"}},
		{`{"kind":"nth_weekday"}`, []string{"weeks: select at least one of first, second, third, fourth, last", "weekdays: select at least one of monday … sunday"}},
		{`{"kind":"on_virus_outbreak","app_types":[]}`, []string{"app_types: select at least one of workstations_file_servers, perimeter_defense, mail_systems"}},
		{`{"kind":"on_task_completion","task_id":"t","status":"ok"}`, []string{"status: must be completed or failed"}},
		{`{"kind":"manual","run_missed":"yes"}`, []string{"run_missed: must be true or false"}},
		{`{"kind":"manual","random_delay":{"mode":"off","interval":3}}`, []string{"random_delay.interval: unknown field"}},
		{`{"kind":"manual","random_delay":{"interval_minutes":0}}`, []string{"random_delay.interval_minutes: must be between 1 and 1440"}},
		{`{"kind":"manual","stop_after":{"enabled":1,"minutes":"5"}}`, []string{"stop_after.enabled: must be true or false", "stop_after.minutes: must be an integer"}},
		{`{"kind":"manual","wake_on_lan":null}`, []string{"wake_on_lan: must be a JSON object"}},
		{`{"kind":"manual","wake_on_lan":{"minutes":61}}`, []string{"wake_on_lan.minutes: must be between 1 and 60"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			before := schedule.Schedule{Kind: schedule.Weekly}
			s := before
			err := json.Unmarshal([]byte(tt.in), &s)
			if diff := cmp.Diff(tt.want, fieldErrs(t, err)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, s); diff != "" {
				t.Errorf("a failed decode changed the target:\n%s", diff)
			}
		})
	}
}

func TestMarshalInvalid(t *testing.T) {
	t.Parallel()
	s := schedule.Default(schedule.Weekly, created, nil)
	s.Time = -5
	if _, err := json.Marshal(s); err == nil {
		t.Error("encoded an invalid time of day")
	}
	// Fields of another kind are not written (Validate rejects them).
	s = schedule.Default(schedule.Manual, created, nil)
	s.Every = 5
	b, err := json.Marshal(s)
	if err != nil || string(b) != `{"kind":"manual",`+advJSON {
		t.Errorf("%s, %v", b, err)
	}
}
