// Command schedulepreview prints the next activations of a taskfleet
// schedule in a chosen time zone and marks every daylight-saving effect:
// the preview users of other schedulers keep asking for ("when will this
// actually fire?").
//
//	go run ./examples/schedulepreview [-n 10] [-zone Europe/Berlin] [-after 2026-03-27T00:00:00Z] \
//		[-json '{"kind":"weekly","weekdays":["sunday"],"time":"02:30:00"}' | -file schedule.json | < schedule.json]
//
// The schedule is given in the schedule package's stable JSON encoding (the
// one stored in databases and KLT files). It is decoded strictly: a bad
// schedule is reported as the package's typed error, with the JSON path of
// the field and the allowed range, and the exit code is 2.
//
// Each activation is printed with its local time, its UTC instant and its
// UTC offset. Marks explain what daylight saving time did:
//
//   - DST gap: a wall-clock rule's time of day did not exist that day
//     (02:30 on a spring-forward day in Europe/Berlin), so it fires at the
//     transition (03:00);
//   - offset change: the first activation after the zone's UTC offset
//     changed, with the instant of the change;
//   - repeated hour: the activation's wall clock occurs twice that day
//     (fall-back), and whether this is its first or second occurrence;
//     wall-clock rules fire once, at the first;
//   - short month: a monthly day 29–31 that the month lacks, which fires on
//     the month's last day.
//
// The program's logic is in run, so a test drives it with arguments and
// buffers; main only wires it to the process.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/schedule"

	_ "time/tzdata" // every IANA zone, whatever the machine has installed
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the input could not be read
	exitUsage = 2 // bad flags, bad JSON or an invalid schedule
)

// Bounds of -n, inclusive.
const (
	defaultCount = 10
	minCount     = 1
	maxCount     = 1000
)

// maxInput bounds the schedule JSON read from a file or stdin. A schedule
// is a few hundred bytes; this only keeps a wrong file from being slurped.
const maxInput = 1 << 20

// The two schedules the help text shows. The test runs both, so the help
// never shows a schedule that does not decode.
const (
	exampleWeekly  = `{"kind":"weekly","weekdays":["saturday","sunday"],"time":"02:30:00"}`
	exampleMonthly = `{"kind":"monthly","day":31,"time":"09:00:00","run_missed":true,"random_delay":{"mode":"interval","interval_minutes":30}}`
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the whole program: it parses args, reads the schedule (from -json,
// -file or stdin), and writes the preview to stdout or the error to stderr.
// It returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("schedulepreview", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and usage are printed below, help to stdout
	n := fs.Int("n", defaultCount, fmt.Sprintf("number of activations to print (%d..%d)", minCount, maxCount))
	zone := fs.String("zone", "UTC", `IANA time zone the schedule is evaluated in, e.g. "Europe/Berlin" ("Local" is this machine's)`)
	afterText := fs.String("after", "", "list activations strictly after this RFC 3339 instant (default: now)")
	jsonText := fs.String("json", "", "the schedule as JSON")
	file := fs.String("file", "", "read the schedule JSON from this file (default: stdin when -json is not given)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout, fs)
			return exitOK
		}
		fmt.Fprintf(stderr, "schedulepreview: %v (run with -help for usage)\n", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "schedulepreview: unexpected argument %q (give the schedule with -json, -file or on stdin)\n", fs.Arg(0))
		return exitUsage
	}
	if *n < minCount || *n > maxCount {
		fmt.Fprintf(stderr, "schedulepreview: invalid -n %d: must be between %d and %d\n", *n, minCount, maxCount)
		return exitUsage
	}
	loc, err := time.LoadLocation(*zone)
	if err != nil || *zone == "" {
		fmt.Fprintf(stderr, "schedulepreview: invalid -zone %q: must be an IANA zone name such as Europe/Berlin, UTC or Local\n", *zone)
		return exitUsage
	}
	after := time.Now().Truncate(time.Second)
	if *afterText != "" {
		after, err = time.Parse(time.RFC3339, *afterText)
		if err != nil {
			fmt.Fprintf(stderr, "schedulepreview: invalid -after %q: must be an RFC 3339 instant such as 2026-03-27T00:00:00Z\n", *afterText)
			return exitUsage
		}
	}
	if *jsonText != "" && *file != "" {
		fmt.Fprintln(stderr, "schedulepreview: give the schedule with -json or -file, not both")
		return exitUsage
	}

	data, source, err := input(*jsonText, *file, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "schedulepreview: %v\n", err)
		return exitError
	}
	s, err := decode(data)
	if err != nil {
		reportDecodeError(stderr, source, err)
		return exitUsage
	}
	preview(stdout, s, loc, after, *n)
	return exitOK
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, `Usage: go run ./examples/schedulepreview [flags] [-json JSON | -file FILE | < FILE]

Prints the next activations of a taskfleet schedule in a time zone: the local
time, the UTC instant and the UTC offset of each, and marks what daylight
saving time does to them (a time skipped by a spring-forward gap fires at the
transition; a time in a repeated fall-back hour fires once, at its first
occurrence; the first activation after an offset change says so).

The schedule is JSON in the schedule package's encoding (see "go doc
github.com/taskfleet/taskfleet/schedule", section "JSON encoding"). "kind" is
one of manual, once, immediately, every_minutes, every_hours, every_days,
weekly, monthly, nth_weekday, on_updates_downloaded, on_virus_outbreak,
on_task_completion; absent advanced settings take their defaults. Manual and
event kinds have no timed activations: the preview says so.

Examples:

  Weekends at 02:30, across Europe's spring-forward night (03:00 on 29 March):
    go run ./examples/schedulepreview -zone Europe/Berlin -after 2026-03-27T00:00:00Z -n 4 \
      -json '%s'

  The 31st of each month at 09:00 (the last day of shorter months), run missed
  starts, each device delayed by up to 30 minutes:
    go run ./examples/schedulepreview -zone America/New_York -after 2026-01-01T00:00:00Z -n 6 \
      -json '%s'

A schedule the package rejects is printed as its error, with the JSON path of
each bad field and the allowed values, and the exit code is 2:
    $ go run ./examples/schedulepreview -json '{"kind":"every_minutes","every":0,"start":"2026-01-01T00:00:00Z"}'
    schedulepreview: invalid schedule (-json):
      every: "0": must be between 1 and 1440

Exit codes: 0 preview printed (also for -help), 1 the input could not be read,
2 bad flags, bad JSON or an invalid schedule.

Flags:
`, exampleWeekly, exampleMonthly)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// input returns the schedule's bytes and a name of where they came from.
func input(jsonText, file string, stdin io.Reader) ([]byte, string, error) {
	switch {
	case jsonText != "":
		return []byte(jsonText), "-json", nil
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return nil, "", err
		}
		defer f.Close()
		data, err := readBounded(f)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", file, err)
		}
		return data, file, nil
	default:
		data, err := readBounded(stdin)
		if err != nil {
			return nil, "", fmt.Errorf("stdin: %w", err)
		}
		return data, "stdin", nil
	}
}

func readBounded(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxInput {
		return nil, fmt.Errorf("larger than %d bytes: not a schedule", maxInput)
	}
	return data, nil
}

// syntaxError is JSON that is not well formed; the schedule decoder would
// only say "must be a JSON object", so the position is reported instead.
type syntaxError struct {
	offset int64
	err    error
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("not valid JSON at byte %d: %v", e.offset, e.err)
}

// decode checks that data is well-formed JSON, then decodes it with the
// schedule package's strict decoder, which also validates.
func decode(data []byte) (schedule.Schedule, error) {
	var s schedule.Schedule
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return s, errors.New("no schedule given: pass it with -json, -file or on stdin")
	}
	if !json.Valid(trimmed) {
		var raw json.RawMessage
		err := json.Unmarshal(trimmed, &raw)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return s, &syntaxError{offset: se.Offset, err: err}
		}
		return s, &syntaxError{err: err}
	}
	err := s.UnmarshalJSON(trimmed)
	return s, err
}

// reportDecodeError prints err; a validation error is printed one field per
// line, with its JSON path, the offending value and the allowed values.
func reportDecodeError(w io.Writer, source string, err error) {
	var list schedule.ValidationErrors
	var one *schedule.ValidationError
	switch {
	case errors.As(err, &list):
	case errors.As(err, &one):
		list = schedule.ValidationErrors{one}
	default:
		fmt.Fprintf(w, "schedulepreview: invalid schedule (%s): %v\n", source, err)
		return
	}
	fmt.Fprintf(w, "schedulepreview: invalid schedule (%s):\n", source)
	for _, e := range list {
		field := e.Field
		if field == "" {
			field = "(the document)"
		}
		fmt.Fprintf(w, "  %s:", field)
		if e.Value != "" {
			fmt.Fprintf(w, " %q:", e.Value)
		}
		fmt.Fprintf(w, " %s\n", e.Reason)
	}
}

// preview writes the summary of s and its next n activations after after,
// evaluated in loc.
func preview(w io.Writer, s schedule.Schedule, loc *time.Location, after time.Time, n int) {
	fmt.Fprintf(w, "Schedule:  %s\n", describe(s))
	fmt.Fprintf(w, "Advanced:  %s\n", describeAdvanced(s))
	switch {
	case s.UsesLocalTime():
		fmt.Fprintf(w, "Zone:      device-local time (UsesLocalTime: true): a wall-clock rule each device evaluates in its own zone; here %s\n", loc)
	case s.Timed():
		fmt.Fprintf(w, "Zone:      absolute time (UsesLocalTime: false): activations are instants, shown in %s; their wall clock shifts when the zone's UTC offset changes\n", loc)
	default:
		fmt.Fprintf(w, "Zone:      not used (UsesLocalTime: false)\n")
	}
	if !s.Timed() {
		if s.Event() {
			fmt.Fprintf(w, "\nKind %s starts on an event, so it has no timed activations.\n", s.Kind)
		} else {
			fmt.Fprintf(w, "\nKind %s starts only when an administrator starts the task, so it has no timed activations.\n", s.Kind)
		}
		return
	}

	acts := s.Upcoming(after, loc, n)
	fmt.Fprintf(w, "\nNext activations after %s in %s (up to %d):\n", after.UTC().Format(time.RFC3339), loc, n)
	if len(acts) == 0 {
		fmt.Fprintln(w, "  none")
	}
	const localLayout = "Mon 2006-01-02 15:04:05 MST"
	width := len("local time")
	for _, a := range acts {
		width = max(width, len(a.Format(localLayout)))
	}
	if len(acts) > 0 {
		fmt.Fprintf(w, "  %4s  %-*s  %-20s  %s\n", "#", width, "local time", "UTC", "offset")
	}
	prev := after.In(loc)
	for i, a := range acts {
		fmt.Fprintf(w, "  %4d  %-*s  %-20s  %s\n", i+1, width, a.Format(localLayout),
			a.UTC().Format(time.RFC3339), a.Format("-07:00"))
		for _, m := range marks(s, a, prev) {
			fmt.Fprintf(w, "        * %s\n", m)
		}
		prev = a
	}
	if len(acts) < n {
		switch s.Kind {
		case schedule.Once, schedule.Immediately:
			fmt.Fprintf(w, "A %s schedule fires once; there are no further activations.\n", s.Kind)
		default:
			fmt.Fprintf(w, "Only %d activations exist after %s.\n", len(acts), after.UTC().Format(time.RFC3339))
		}
	}
}

// marks explains what daylight saving time (and short months) did to the
// activation a; prev is the previous activation, or the start of the
// preview for the first one.
func marks(s schedule.Schedule, a, prev time.Time) []string {
	var out []string
	name, off := a.Zone()
	start, end := a.ZoneBounds()

	// A wall-clock rule whose wall clock differs from its time of day:
	// the time did not exist that day.
	if s.UsesLocalTime() && schedule.Clock(a.Hour(), a.Minute(), a.Second()) != s.Time {
		out = append(out, gapMark(s.Time, a, start))
	}

	// The first activation after a change of UTC offset.
	if prevName, prevOff := prev.Zone(); prevOff != off {
		text := fmt.Sprintf("first activation after a UTC offset change: %s (%s) -> %s (%s)", formatOffset(prevOff), prevName, formatOffset(off), name)
		if !start.IsZero() && start.After(prev) && offsetAt(start.Add(-time.Second)) == prevOff {
			text += " at " + start.UTC().Format(time.RFC3339)
		}
		out = append(out, text)
	}

	// A wall clock that occurs twice: the hour after a fall-back
	// transition repeats the hour before it.
	if !end.IsZero() {
		if next := offsetAt(end); next < off && a.Compare(end.Add(-time.Duration(off-next)*time.Second)) >= 0 {
			nextName, _ := end.Zone()
			from := end.In(fixedZone(end))          // the wall clock after the fall-back
			to := end.In(time.FixedZone(name, off)) // the wall clock it falls back from
			out = append(out, fmt.Sprintf("repeated hour: local %s-%s occurs twice on %s (%s, then %s); this is the first occurrence%s",
				from.Format("15:04:05"), to.Format("15:04:05"), a.Format("Mon 2006-01-02"), name, nextName, onceNote(s, a, nextName)))
		}
	}
	if !start.IsZero() {
		if p := offsetAt(start.Add(-time.Second)); p > off && a.Before(start.Add(time.Duration(p-off)*time.Second)) {
			prevName, _ := start.Add(-time.Second).Zone()
			out = append(out, fmt.Sprintf("repeated hour: %s %s is the second occurrence of this wall clock (the first was %s %s); absolute schedules count elapsed time",
				a.Format("15:04:05"), name, a.Format("15:04:05"), prevName))
		}
	}

	// Monthly on a day the month does not have.
	if s.Kind == schedule.Monthly && s.Day > a.Day() {
		out = append(out, fmt.Sprintf("short month: %s has no day %d; fires on its last day, the %d", a.Format("January"), s.Day, a.Day()))
	}
	return out
}

// gapMark explains a wall-clock rule's activation a whose wall clock is
// not the rule's time t: t did not exist on the scheduled date, because the
// zone's clocks jumped forward over it at start (the beginning of a's zone
// period).
func gapMark(t schedule.TimeOfDay, a, start time.Time) string {
	generic := fmt.Sprintf("wall clock %s differs from the schedule's %s: that local time was skipped by a transition; fires at the first instant after it",
		a.Format("15:04:05"), t)
	if start.IsZero() || !a.Equal(start) {
		return generic
	}
	before := start.Add(-time.Second)
	if offsetAt(before) >= offsetAt(a) {
		return generic
	}
	// The skipped wall clocks are [from, to): from is the transition read
	// on the old offset, to on the new one. Compare them as naive wall
	// clocks (in UTC) to find the date whose time t they swallowed.
	from, to := naive(start.In(fixedZone(before))), naive(a)
	for d := from.Truncate(24 * time.Hour); !d.After(to); d = d.AddDate(0, 0, 1) {
		at := d.Add(time.Duration(t) * time.Second)
		if at.Before(from) || !at.Before(to) {
			continue
		}
		if !d.Before(from) && !d.AddDate(0, 0, 1).After(to) {
			return fmt.Sprintf("skipped date: %s does not exist in %s (clocks jump from %s to %s); its %s fires at the first instant after it, %s",
				d.Format("Mon 2006-01-02"), a.Location(), from.Format("Mon 2006-01-02 15:04:05"), to.Format("Mon 2006-01-02 15:04:05"),
				t, a.Format("Mon 2006-01-02 15:04:05 MST"))
		}
		layout := "15:04:05"
		if from.YearDay() != to.YearDay() {
			layout = "Mon 2006-01-02 15:04:05"
		}
		return fmt.Sprintf("DST gap: %s does not exist on %s (clocks jump from %s to %s); fires at the transition, %s",
			t, d.Format("Mon 2006-01-02"), from.Format(layout), to.Format(layout), a.Format("15:04:05 MST"))
	}
	return generic
}

// naive is t's wall clock as the same wall clock in UTC.
func naive(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

func onceNote(s schedule.Schedule, a time.Time, nextName string) string {
	if !s.UsesLocalTime() {
		return ""
	}
	return fmt.Sprintf("; the schedule fires once, here, not again at %s %s", a.Format("15:04:05"), nextName)
}

// offsetAt is the UTC offset, in seconds, of t's location at t.
func offsetAt(t time.Time) int {
	_, off := t.Zone()
	return off
}

// fixedZone is the zone in effect at t as a fixed zone, to show a wall
// clock in the offset of the other side of a transition.
func fixedZone(t time.Time) *time.Location {
	name, off := t.Zone()
	return time.FixedZone(name, off)
}

func formatOffset(seconds int) string {
	return time.Unix(0, 0).In(time.FixedZone("", seconds)).Format("-07:00")
}

// describe is a one-line English summary of s's start setting.
func describe(s schedule.Schedule) string {
	instant := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	switch s.Kind {
	case schedule.Manual:
		return "manually (only when an administrator starts it)"
	case schedule.Once:
		return "once, at " + instant(s.At)
	case schedule.Immediately:
		return "immediately, once, at the save time " + instant(s.SavedAt)
	case schedule.EveryMinutes:
		if s.Every == 1 {
			return "every minute from " + instant(s.Start)
		}
		return fmt.Sprintf("every %d minutes from %s", s.Every, instant(s.Start))
	case schedule.EveryHours:
		if s.Every == 1 {
			return "every hour from " + instant(s.Start)
		}
		return fmt.Sprintf("every %d hours from %s", s.Every, instant(s.Start))
	case schedule.EveryDays:
		if s.Every == 1 {
			return fmt.Sprintf("every day at %s from %s", s.Time, s.StartDate)
		}
		return fmt.Sprintf("every %d days at %s from %s", s.Every, s.Time, s.StartDate)
	case schedule.Weekly:
		return fmt.Sprintf("every %s at %s", weekdayList(s.Weekdays), s.Time)
	case schedule.Monthly:
		text := fmt.Sprintf("on day %d of every month at %s", s.Day, s.Time)
		if s.Day > 28 {
			text += fmt.Sprintf(" (the last day of months shorter than %d days)", s.Day)
		}
		return text
	case schedule.NthWeekday:
		return fmt.Sprintf("on the %s %s of every month at %s", weekList(s.Weeks), weekdayList(s.Weekdays), s.Time)
	case schedule.OnUpdates:
		return "when new updates are downloaded to the repository (event)"
	case schedule.OnVirusOutbreak:
		return fmt.Sprintf("on a virus outbreak reported by %s (event)", strings.Trim(s.AppTypes.String(), "[]"))
	case schedule.OnTaskCompletion:
		return fmt.Sprintf("when task %q has %s (event)", s.TaskID, s.Status)
	}
	return string(s.Kind)
}

func weekdayList(w schedule.Weekdays) string {
	var names []string
	for _, d := range w.Days() {
		names = append(names, d.String())
	}
	return strings.Join(names, ", ")
}

func weekList(w schedule.Weeks) string {
	var names []string
	for i, name := range []string{"first", "second", "third", "fourth", "last"} {
		if w.Has(schedule.FirstWeek << i) {
			names = append(names, name)
		}
	}
	return strings.Join(names, ", ")
}

func describeAdvanced(s schedule.Schedule) string {
	onOff := func(b bool) string {
		if b {
			return "on"
		}
		return "off"
	}
	delay := "randomized delay off"
	switch s.RandomDelay.Mode {
	case schedule.DelayAutomatic:
		delay = "randomized delay automatic (up to 1 s per 10 devices, at most 1 h)"
	case schedule.DelayInterval:
		delay = fmt.Sprintf("randomized delay within %d min (per device, deterministic)", s.RandomDelay.IntervalMinutes)
	}
	limit := func(what string, l schedule.Limit) string {
		if l.Enabled {
			return fmt.Sprintf("%s %d min", what, l.Minutes)
		}
		return what + " off"
	}
	return strings.Join([]string{
		"run missed " + onOff(s.RunMissed),
		delay,
		limit("stop after", s.StopAfter),
		limit("Wake-on-LAN", s.WakeOnLAN),
		"shut down after " + onOff(s.ShutdownAfter),
	}, "; ")
}
