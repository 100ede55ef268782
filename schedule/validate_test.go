package schedule_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/schedule"
)

func TestDefault(t *testing.T) {
	t.Parallel()
	kolkata := mustLoad(t, "Asia/Kolkata")
	now := time.Date(2026, 11, 21, 20, 15, 42, 987654321, time.UTC) // 01:45:42 on the 22nd in Kolkata
	nowSec := time.Date(2026, 11, 21, 20, 15, 42, 0, time.UTC)
	adv := func(s schedule.Schedule) schedule.Schedule {
		s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayOff, IntervalMinutes: 1}
		s.StopAfter = schedule.Limit{Minutes: 120}
		s.WakeOnLAN = schedule.Limit{Minutes: 5}
		return s
	}
	tests := []struct {
		kind  schedule.Kind
		want  schedule.Schedule
		valid bool
	}{
		{schedule.Manual, adv(schedule.Schedule{Kind: schedule.Manual}), true},
		{schedule.Once, adv(schedule.Schedule{Kind: schedule.Once, At: nowSec}), true},
		{schedule.Immediately, adv(schedule.Schedule{Kind: schedule.Immediately, SavedAt: nowSec}), true},
		{schedule.EveryMinutes, adv(schedule.Schedule{Kind: schedule.EveryMinutes, Every: 30, Start: nowSec}), true},
		{schedule.EveryHours, adv(schedule.Schedule{Kind: schedule.EveryHours, Every: 6, Start: nowSec}), true},
		{schedule.EveryDays, adv(schedule.Schedule{Kind: schedule.EveryDays, Every: 1,
			StartDate: schedule.Date{Year: 2026, Month: 11, Day: 22}, Time: schedule.Clock(1, 45, 42)}), true},
		{schedule.Weekly, adv(schedule.Schedule{Kind: schedule.Weekly, Weekdays: schedule.NewWeekdays(time.Friday), Time: schedule.Clock(18, 0, 0)}), true},
		{schedule.Monthly, adv(schedule.Schedule{Kind: schedule.Monthly, Day: 1, Time: schedule.Clock(1, 45, 42)}), true},
		{schedule.NthWeekday, adv(schedule.Schedule{Kind: schedule.NthWeekday, Time: schedule.Clock(18, 0, 0)}), false},
		{schedule.OnUpdates, adv(schedule.Schedule{Kind: schedule.OnUpdates}), true},
		{schedule.OnVirusOutbreak, adv(schedule.Schedule{Kind: schedule.OnVirusOutbreak, AppTypes: schedule.AllAppTypes}), true},
		{schedule.OnTaskCompletion, adv(schedule.Schedule{Kind: schedule.OnTaskCompletion, Status: schedule.Completed}), false},
	}
	if len(tests) != len(schedule.Kinds) {
		t.Fatalf("covers %d of %d kinds", len(tests), len(schedule.Kinds))
	}
	for _, tt := range tests {
		got := schedule.Default(tt.kind, now, kolkata)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Default(%s) (-want +got):\n%s", tt.kind, diff)
		}
		if err := got.Validate(); (err == nil) != tt.valid {
			t.Errorf("Default(%s).Validate() = %v, want valid=%v", tt.kind, err, tt.valid)
		}
	}
	if got := schedule.Default(schedule.Weekly, now, nil); got.Time != schedule.DefaultWeeklyTime {
		t.Errorf("nil loc: %v", got.Time)
	}
}

// fieldErrs flattens err into "field: reason" lines.
func fieldErrs(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	if !errors.Is(err, schedule.ErrInvalid) {
		t.Errorf("%v does not match ErrInvalid", err)
	}
	var list schedule.ValidationErrors
	var one *schedule.ValidationError
	switch {
	case errors.As(err, &list):
	case errors.As(err, &one):
		list = schedule.ValidationErrors{one}
	default:
		t.Fatalf("untyped error %T: %v", err, err)
	}
	var out []string
	for _, e := range list {
		out = append(out, e.Field+": "+e.Reason)
	}
	return out
}

func TestValidate(t *testing.T) {
	t.Parallel()
	now := created
	with := func(kind schedule.Kind, f func(*schedule.Schedule)) schedule.Schedule {
		s := schedule.Default(kind, now, time.UTC)
		f(&s)
		return s
	}
	tests := []struct {
		name string
		s    schedule.Schedule
		want []string
	}{
		{"every minutes 0", with(schedule.EveryMinutes, func(s *schedule.Schedule) { s.Every = 0 }),
			[]string{"every: must be between 1 and 1440"}},
		{"every minutes 1441", with(schedule.EveryMinutes, func(s *schedule.Schedule) { s.Every = 1441 }),
			[]string{"every: must be between 1 and 1440"}},
		{"every minutes 1440 ok", with(schedule.EveryMinutes, func(s *schedule.Schedule) { s.Every = 1440 }), nil},
		{"every hours 745", with(schedule.EveryHours, func(s *schedule.Schedule) { s.Every = 745 }),
			[]string{"every: must be between 1 and 744"}},
		{"every days 367 and bad date", with(schedule.EveryDays, func(s *schedule.Schedule) {
			s.Every = 367
			s.StartDate = schedule.Date{Year: 2026, Month: 2, Day: 29}
		}), []string{"every: must be between 1 and 366", `start_date: must be a calendar date "YYYY-MM-DD" in years 0001..9999`}},
		{"once without instant", with(schedule.Once, func(s *schedule.Schedule) { s.At = time.Time{} }),
			[]string{"at: required: an instant in years 0001..9999"}},
		{"immediately without SavedAt", with(schedule.Immediately, func(s *schedule.Schedule) { s.SavedAt = time.Time{} }),
			[]string{"saved_at: required: an instant in years 0001..9999"}},
		{"start in year 10000", with(schedule.EveryHours, func(s *schedule.Schedule) { s.Start = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }),
			[]string{"start: must be an instant in years 0001..9999"}},
		{"weekly no days, bad time", with(schedule.Weekly, func(s *schedule.Schedule) { s.Weekdays = 0; s.Time = 86400 }),
			[]string{"weekdays: select at least one of monday … sunday", "time: must be a time of day between 00:00:00 and 23:59:59"}},
		{"weekly stray bit", with(schedule.Weekly, func(s *schedule.Schedule) { s.Weekdays = 1 << 7 }),
			[]string{"weekdays: select at least one of monday … sunday"}},
		{"monthly day 32 and 0", with(schedule.Monthly, func(s *schedule.Schedule) { s.Day = 32 }),
			[]string{"day: must be between 1 and 31"}},
		{"nth nothing selected", schedule.Default(schedule.NthWeekday, now, nil),
			[]string{"weeks: select at least one of first, second, third, fourth, last", "weekdays: select at least one of monday … sunday"}},
		{"virus outbreak none", with(schedule.OnVirusOutbreak, func(s *schedule.Schedule) { s.AppTypes = 0 }),
			[]string{"app_types: select at least one of workstations_file_servers, perimeter_defense, mail_systems"}},
		{"task completion", with(schedule.OnTaskCompletion, func(s *schedule.Schedule) { s.Status = "done" }),
			[]string{"task_id: required: the triggering task's id, 1 to 256 bytes", "status: must be completed or failed"}},
		{"task id too long", with(schedule.OnTaskCompletion, func(s *schedule.Schedule) { s.TaskID = strings.Repeat("x", 257) }),
			[]string{"task_id: required: the triggering task's id, 1 to 256 bytes"}},
		{"fields of another kind", with(schedule.Weekly, func(s *schedule.Schedule) { s.Every = 3; s.TaskID = "t"; s.At = now }),
			[]string{"at: must be empty for kind weekly", "every: must be empty for kind weekly", "task_id: must be empty for kind weekly"}},
		{"advanced settings out of range", with(schedule.Manual, func(s *schedule.Schedule) {
			s.RandomDelay = schedule.RandomDelay{Mode: "sometimes", IntervalMinutes: 0}
			s.StopAfter = schedule.Limit{Enabled: true, Minutes: 10081}
			s.WakeOnLAN = schedule.Limit{Minutes: 61}
		}), []string{
			"random_delay.mode: must be off, automatic or interval",
			"random_delay.interval_minutes: must be between 1 and 1440",
			"stop_after.minutes: must be between 1 and 10080",
			"wake_on_lan.minutes: must be between 1 and 60",
		}},
		{"zero schedule", schedule.Schedule{}, []string{"kind: must be one of manual, once, immediately, every_minutes, every_hours, every_days, weekly, monthly, nth_weekday, on_updates_downloaded, on_virus_outbreak, on_task_completion"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := fieldErrs(t, tt.s.Validate())
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// A task nests the paths with the shared Prefix.
	err := errs.Prefix("schedule", with(schedule.EveryMinutes, func(s *schedule.Schedule) { s.Every = 0 }).Validate())
	var ve *schedule.ValidationError
	if !errors.As(err, &ve) || ve.Field != "schedule.every" || ve.Value != "0" {
		t.Errorf("prefixed: %#v", err)
	}
}

func TestParseTimeOfDayAndDate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want schedule.TimeOfDay
		ok   bool
	}{
		{"18:00:00", schedule.Clock(18, 0, 0), true},
		{"00:00:00", 0, true},
		{"23:59:59", schedule.Clock(23, 59, 59), true},
		{"24:00:00", 0, false},
		{"18:60:00", 0, false},
		{"18:00:60", 0, false},
		{"18:00", 0, false},
		{"8:00:00", 0, false},
		{"18-00-00", 0, false},
		{"+1:00:00", 0, false},
		{"18:00:00Z", 0, false},
	} {
		got, err := schedule.ParseTimeOfDay(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseTimeOfDay(%q) = %v, %v", tt.in, got, err)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
	for _, tt := range []struct {
		in   string
		want schedule.Date
		ok   bool
	}{
		{"2026-11-22", schedule.Date{Year: 2026, Month: 11, Day: 22}, true},
		{"2028-02-29", schedule.Date{Year: 2028, Month: 2, Day: 29}, true},
		{"0001-01-01", schedule.Date{Year: 1, Month: 1, Day: 1}, true},
		{"2027-02-29", schedule.Date{}, false},
		{"0000-01-01", schedule.Date{}, false},
		{"2026-13-01", schedule.Date{}, false},
		{"2026-11-31", schedule.Date{}, false},
		{"2026-1-01", schedule.Date{}, false},
		{"26-11-22", schedule.Date{}, false},
		{"2026/11/22", schedule.Date{}, false},
	} {
		got, err := schedule.ParseDate(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDate(%q) = %v, %v", tt.in, got, err)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
	if s := schedule.TimeOfDay(-1).String(); s != "TimeOfDay(-1)" {
		t.Errorf("invalid String: %q", s)
	}
}
