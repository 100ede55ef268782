// Package schedule describes when a task starts and computes its
// activations exactly: every start kind of the Kaspersky Security Center
// task console ("Start task" setting) plus the advanced scheduling settings
// that travel with a schedule (run missed tasks, randomized delay, stop if
// running too long, Wake-on-LAN, shut down afterwards).
//
// The package does no I/O and never reads the clock: every function takes
// the instants it needs. Next does not allocate, except once per
// *time.Location: its first use builds a cached table of the zone's UTC
// offsets for 1900–2200 (a few KB; at most 256 zones are kept), so keep
// and reuse loaded locations rather than calling time.LoadLocation for
// every query. Everything is safe for concurrent use.
//
// # Concepts
//
// A [Schedule] has a [Kind] and the fields of that kind:
//
//	Kind             fields                        defaults (Default)
//	manual           -                             the default kind
//	once             At                            now
//	immediately      SavedAt                       now (set on every save)
//	every_minutes    Every, Start                  30, now
//	every_hours      Every, Start                  6, now
//	every_days       Every, StartDate, Time        1, today, now's clock
//	weekly           Weekdays, Time                Friday, 18:00:00
//	monthly          Day, Time                     1, now's clock
//	nth_weekday      Weeks, Weekdays, Time         none, none, 18:00:00
//	on_updates_downloaded  -
//	on_virus_outbreak      AppTypes                all three types
//	on_task_completion     TaskID, Status          -, completed
//
// Ranges (inclusive, named constants such as MaxEveryMinutes): every
// minutes 1..1440, every hours 1..744, every days 1..366, month day 1..31,
// randomized delay interval 1..1440 minutes (default 1), stop after
// 1..10080 minutes (default 120), Wake-on-LAN lead 1..60 minutes (default
// 5). Build a schedule with [Default] and change fields; the zero Schedule
// is not valid (its kind is empty).
//
//	s := schedule.Default(schedule.Weekly, now, loc) // Fridays 18:00
//	s.Weekdays = schedule.NewWeekdays(time.Monday, time.Thursday)
//	if err := s.Validate(); err != nil { … }
//	next, ok := s.Next(now, s.Location(deviceZone, serverZone, false))
//
// [Schedule.Timed] is false for manual and the event kinds (the engine
// starts those on request or on an event); [Schedule.Next] then returns
// false. Immediately is timed: it fires once, at SavedAt.
//
// # Time semantics
//
// Once, Immediately, EveryMinutes and EveryHours are absolute: their
// activations are instants (Start + k·N minutes or hours), unaffected by
// daylight saving time. EveryDays, Weekly, Monthly and NthWeekday are
// wall-clock rules evaluated in a zone ([Schedule.UsesLocalTime]). Which
// zone is the engine's business, so [Schedule.Location] decides it: the
// Administration Server's for tasks that run on the server (device
// selections), the device's otherwise.
//
// On a matching local date D with time T, the activation is the first
// instant whose local date is D and whose wall clock is ≥ T:
//
//   - a T inside a spring-forward gap fires at the transition
//     (02:30 on 2026-03-29 in Europe/Berlin fires at 03:00 CEST);
//   - a T inside a repeated fall-back hour fires once, at its first
//     occurrence (02:30 CEST, not again at 02:30 CET);
//   - a date the zone skipped entirely (2011-12-30 in Pacific/Apia), or a
//     day that ends before T because of a transition, fires at the first
//     instant after it, so a matching date is never skipped; two dates
//     that land on the same instant fire once.
//
// EveryDays counts local calendar days from StartDate (StartDate,
// StartDate+N, …), whatever the lengths of the days. Monthly on day 29, 30
// or 31 fires on the last day of shorter months. NthWeekday fires on each
// selected weekday of each selected week: the first…fourth occurrence of
// the weekday in the month, and "last" its last occurrence (which may be
// the fourth: selecting fourth and last then fires once that day).
//
// [Schedule.Between] yields the activations in (from, to], which is what
// "run missed tasks" needs; [Schedule.Upcoming] previews the next n.
//
// # Zone data
//
// Wall-clock kinds follow the UTC offset the time package gives for each
// instant in the *time.Location passed in, whichever zone database it was
// loaded from: the system's zone files, ZONEINFO, Go's own zone data (the
// zoneinfo.zip in GOROOT, which Go programs use on Windows, and the
// time/tzdata package that embeds it) or [time.LoadLocationFromTZData].
// The cached zone table agrees with those single-instant offsets at every
// instant, including the first period a zone's TZ rule produces after its
// last listed transition (Go's zone data lists fewer transitions than
// most system files, and the time package reports that period's start too
// early). The package is tested against both the system database and Go's
// zone data.
//
// Two databases, or two versions of one, can still disagree about a
// zone's rules; activations follow the location given. For a task that
// runs on a device ([Schedule.Location] returns the device's zone) the
// device's zone data governs: the device agent (package task/agent)
// computes the activations with the zone loaded on the device, and what
// the server computes for such a task with its own database (the
// Wake-on-LAN lead, previews) is an estimate wherever the two differ.
// Package task/agent's build tag taskfleet_tzdata embeds Go's zone data
// for devices without zone files.
//
// # Clocks that jump
//
// The package is pure; its callers keep a cursor (the last activation
// handled) and ask for Between(cursor, now). That gives the rule the
// engine (task/engine) and the agent (task/agent) follow when a clock
// steps:
//
//   - Back: the activations at or before the cursor were handled and are
//     not handled again (nothing repeats); the schedule goes on with the
//     first activation after the cursor when the clock reaches it.
//   - Forward: the activations stepped over are handled at once, each
//     once (nothing is lost). A server-run task fires each of them and
//     each device runs the latest (one catch-up); an agent runs them late
//     after a step shorter than its SleepGap, and treats a longer step as
//     a sleep (they are missed, one catch-up with "run missed tasks").
//
// Manual starts do not follow the clock alone: a manual run's id is
// always after the task's newest run, so it shows as the latest even
// when the server's clock was set back.
//
// # Randomized delay
//
// With a randomized delay each device starts at the activation plus
// [RandomOffset](window, taskID, deviceID, revision), a deterministic value
// in [0, window) that is the same in every process and changes when the
// revision does (bump it when settings are edited or on a manual start, as
// the product documentation requires). The window is [Schedule.DelayWindow]: the interval,
// or for the automatic mode [AutoWindow](devices) =
// min(devices / DefaultStartsPerSecond s, MaxAutoWindow).
//
// # JSON encoding
//
// Schedules are stored in databases and exported in KLT files; this
// encoding is stable. An object with, in this order:
//
//	"kind"                      string, one of the Kind values
//	"at", "saved_at", "start"   RFC 3339 instant, written in UTC
//	"every", "day"              integer
//	"start_date"                "YYYY-MM-DD"
//	"weeks"                     array of "first" "second" "third" "fourth" "last"
//	"weekdays"                  array of "monday" … "sunday" (ISO order)
//	"time"                      "HH:MM:SS", local wall clock
//	"app_types"                 array of "workstations_file_servers"
//	                            "perimeter_defense" "mail_systems"
//	"task_id", "status"         string; status "completed" or "failed"
//	"run_missed"                bool
//	"random_delay"              {"mode": "off"|"automatic"|"interval", "interval_minutes": int}
//	"stop_after"                {"enabled": bool, "minutes": int}
//	"wake_on_lan"               {"enabled": bool, "minutes": int}
//	"shutdown_after"            bool
//
// Exactly the fields of the kind are written (the table above), then every
// advanced setting; nothing is omitted because it is zero. For example:
//
//	{"kind":"weekly","weekdays":["friday"],"time":"18:00:00","run_missed":false,
//	 "random_delay":{"mode":"off","interval_minutes":1},
//	 "stop_after":{"enabled":false,"minutes":120},
//	 "wake_on_lan":{"enabled":false,"minutes":5},"shutdown_after":false}
//
// Decoding is strict and validates: unknown fields, fields of another
// kind, null, wrong types and bad values are errors naming the field.
// An absent field takes its documented default where that default does
// not depend on the creation time (every, weekdays, weeks, day, app_types,
// status, the time of weekly and nth_weekday, and every advanced setting,
// including the members of the nested objects); "at", "saved_at",
// "start", "start_date" and the "time" of every_days and monthly are
// required. Instants may carry any RFC 3339 offset and are kept in UTC.
//
// # Errors
//
// [Schedule.Validate] and decoding return a *[ValidationError] or
// [ValidationErrors] (aliases of the shared taskfleet vocabulary) whose
// Field is the JSON path ("every", "random_delay.interval_minutes") and
// whose Reason states the allowed values; all match [ErrInvalid]. Values
// are never clamped. A task nests the paths under "schedule." with the
// shared errs.Prefix.
package schedule
