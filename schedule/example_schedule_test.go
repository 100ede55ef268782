package schedule_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	_ "time/tzdata"

	"github.com/taskfleet/taskfleet/schedule"
)

// A weekly schedule evaluated in the device's zone: the Friday 18:00
// default, moved to 02:30 on Sundays, across the spring-forward night in
// Berlin (02:30 does not exist on 2026-03-29, so it fires at 03:00 CEST).
func ExampleSchedule_Next() {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	created := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

	s := schedule.Default(schedule.Weekly, created, berlin)
	s.Weekdays = schedule.NewWeekdays(time.Sunday)
	s.Time = schedule.Clock(2, 30, 0)

	loc := s.Location(berlin, time.UTC, false) // runs on the device
	t := created
	for range 4 {
		t, _ = s.Next(t, loc)
		fmt.Println(t.Format("Mon 2006-01-02 15:04 MST"))
	}
	// Output:
	// Sun 2026-03-08 02:30 CET
	// Sun 2026-03-15 02:30 CET
	// Sun 2026-03-22 02:30 CET
	// Sun 2026-03-29 03:00 CEST
}

// Between lists the activations a device missed while it was off, for
// "run missed tasks": here the last day of each month at 18:00.
func ExampleSchedule_Between() {
	kathmandu, _ := time.LoadLocation("Asia/Kathmandu")
	s := schedule.Default(schedule.Monthly, time.Now(), kathmandu)
	s.Day, s.Time = 31, schedule.Clock(18, 0, 0)

	offline := time.Date(2028, 1, 15, 0, 0, 0, 0, time.UTC)
	backOnline := time.Date(2028, 5, 2, 0, 0, 0, 0, time.UTC)
	for t := range s.Between(offline, backOnline, kathmandu) {
		fmt.Println(t.Format(time.RFC3339))
	}
	// Output:
	// 2028-01-31T18:00:00+05:45
	// 2028-02-29T18:00:00+05:45
	// 2028-03-31T18:00:00+05:45
	// 2028-04-30T18:00:00+05:45
}

// Validate names each bad field by its JSON path and says what is allowed.
func ExampleSchedule_Validate() {
	s := schedule.Default(schedule.EveryMinutes, time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC), nil)
	s.Every = 2000
	s.StopAfter.Minutes = 0

	err := s.Validate()
	fmt.Println(errors.Is(err, schedule.ErrInvalid))
	var list schedule.ValidationErrors
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Printf("%s = %s: %s\n", e.Field, e.Value, e.Reason)
		}
	}
	// Output:
	// true
	// every = 2000: must be between 1 and 1440
	// stop_after.minutes = 0: must be between 1 and 10080
}

// Schedules are stored as JSON; decoding is strict and validates, and
// absent fields take their documented defaults.
func ExampleSchedule_MarshalJSON() {
	s := schedule.Default(schedule.NthWeekday, time.Now(), nil)
	s.Weeks = schedule.SecondWeek
	s.Weekdays = schedule.NewWeekdays(time.Tuesday)
	s.Time = schedule.Clock(19, 0, 0)
	s.RandomDelay.Mode = schedule.DelayAutomatic

	b, _ := json.Marshal(s)
	fmt.Println(string(b))

	var back schedule.Schedule
	fmt.Println(json.Unmarshal(b, &back), back == s)

	var short schedule.Schedule
	_ = json.Unmarshal([]byte(`{"kind":"weekly"}`), &short)
	fmt.Println(short.Weekdays, short.Time, short.StopAfter.Minutes)

	fmt.Println(json.Unmarshal([]byte(`{"kind":"weekly","every":3}`), &short))
	// Output:
	// {"kind":"nth_weekday","weeks":["second"],"weekdays":["tuesday"],"time":"19:00:00","run_missed":false,"random_delay":{"mode":"automatic","interval_minutes":1},"stop_after":{"enabled":false,"minutes":120},"wake_on_lan":{"enabled":false,"minutes":5},"shutdown_after":false}
	// <nil> true
	// [friday] 18:00:00 120
	// invalid every: not used by kind weekly
}

// Each device starts at the activation plus a stable per-device offset.
func ExampleRandomOffset() {
	s := schedule.Default(schedule.Weekly, time.Now(), nil)
	s.RandomDelay.Mode = schedule.DelayAutomatic
	window := s.DelayWindow(1200) // 1200 devices at 10 starts/s: 2 minutes
	fmt.Println(window)
	off := schedule.RandomOffset(window, "task-7", "device-42", 3)
	fmt.Println(off >= 0 && off < window, off == schedule.RandomOffset(window, "task-7", "device-42", 3))
	// Output:
	// 2m0s
	// true true
}
