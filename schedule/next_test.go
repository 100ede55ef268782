package schedule_test

import (
	"slices"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/schedule"
)

func mustLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

var created = time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)

func daily(at schedule.TimeOfDay) schedule.Schedule {
	s := schedule.Default(schedule.EveryDays, created, time.UTC)
	s.StartDate = schedule.Date{Year: 2000, Month: 1, Day: 1}
	s.Time = at
	return s
}

// local builds the instant of a wall-clock reading in loc; the offset is
// given explicitly so the test states which of two readings it means.
func local(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse("2006-01-02 15:04:05 -07:00", s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestNextWallClock pins the DST and calendar rules of the issue with
// hand-checked examples; TestNextAgainstOracle covers them at random.
func TestNextWallClock(t *testing.T) {
	t.Parallel()
	monthly := func(day int, at schedule.TimeOfDay) schedule.Schedule {
		s := schedule.Default(schedule.Monthly, created, time.UTC)
		s.Day, s.Time = day, at
		return s
	}
	weekly := func(at schedule.TimeOfDay, days ...time.Weekday) schedule.Schedule {
		s := schedule.Default(schedule.Weekly, created, time.UTC)
		s.Weekdays, s.Time = schedule.NewWeekdays(days...), at
		return s
	}
	nth := func(weeks schedule.Weeks, at schedule.TimeOfDay, days ...time.Weekday) schedule.Schedule {
		s := schedule.Default(schedule.NthWeekday, created, time.UTC)
		s.Weeks, s.Weekdays, s.Time = weeks, schedule.NewWeekdays(days...), at
		return s
	}
	everyDays := func(n int, start schedule.Date, at schedule.TimeOfDay) schedule.Schedule {
		s := daily(at)
		s.Every, s.StartDate = n, start
		return s
	}
	tests := []struct {
		name  string
		s     schedule.Schedule
		zone  string
		after string
		want  []string // successive activations
	}{
		{"daily 18:00 Berlin across spring forward", daily(schedule.Clock(18, 0, 0)), "Europe/Berlin",
			"2026-03-28 12:00:00 +01:00",
			[]string{"2026-03-28 18:00:00 +01:00", "2026-03-29 18:00:00 +02:00", "2026-03-30 18:00:00 +02:00"}},
		{"time in the spring-forward gap fires at the transition", daily(schedule.Clock(2, 30, 0)), "Europe/Berlin",
			"2026-03-28 12:00:00 +01:00",
			[]string{"2026-03-29 03:00:00 +02:00", "2026-03-30 02:30:00 +02:00"}},
		{"time in the repeated hour fires once, at the first occurrence", daily(schedule.Clock(2, 30, 0)), "Europe/Berlin",
			"2026-10-24 12:00:00 +02:00",
			[]string{"2026-10-25 02:30:00 +02:00", "2026-10-26 02:30:00 +01:00"}},
		{"after inside the second pass of the repeated hour", daily(schedule.Clock(2, 30, 0)), "Europe/Berlin",
			"2026-10-25 02:10:00 +01:00",
			[]string{"2026-10-26 02:30:00 +01:00"}},
		{"Lord Howe half-hour gap", daily(schedule.Clock(2, 15, 0)), "Australia/Lord_Howe",
			"2026-10-03 12:00:00 +10:30",
			[]string{"2026-10-04 02:30:00 +11:00", "2026-10-05 02:15:00 +11:00"}},
		{"Lord Howe half-hour repeat", daily(schedule.Clock(1, 45, 0)), "Australia/Lord_Howe",
			"2026-04-04 12:00:00 +11:00",
			[]string{"2026-04-05 01:45:00 +11:00", "2026-04-06 01:45:00 +10:30"}},
		{"Apia skipped Friday 2011-12-30 fires at the first instant after it", weekly(schedule.Clock(18, 0, 0), time.Friday), "Pacific/Apia",
			"2011-12-24 00:00:00 -10:00",
			[]string{"2011-12-31 00:00:00 +14:00", "2012-01-06 18:00:00 +14:00"}},
		{"Apia daily across the skipped day", daily(schedule.Clock(9, 0, 0)), "Pacific/Apia",
			"2011-12-29 10:00:00 -10:00",
			[]string{"2011-12-31 00:00:00 +14:00", "2011-12-31 09:00:00 +14:00"}},
		{"Apia daily at midnight: the skipped day and the next one fire once", daily(schedule.Clock(0, 0, 0)), "Pacific/Apia",
			"2011-12-29 10:00:00 -10:00",
			[]string{"2011-12-31 00:00:00 +14:00", "2012-01-01 00:00:00 +14:00"}},
		{"Santiago: midnight in the gap fires at 01:00", daily(schedule.Clock(0, 0, 0)), "America/Santiago",
			"2026-09-05 12:00:00 -04:00",
			[]string{"2026-09-06 01:00:00 -03:00", "2026-09-07 00:00:00 -03:00"}},
		{"leap-year New Year's Eve after 2037 (Go reports the zone period wrongly)", daily(schedule.Clock(18, 0, 0)), "Europe/Berlin",
			"2048-12-30 20:00:00 +01:00",
			[]string{"2048-12-31 18:00:00 +01:00", "2049-01-01 18:00:00 +01:00"}},
		{"every 2 days counts local calendar days across DST", everyDays(2, schedule.Date{Year: 2026, Month: 3, Day: 27}, schedule.Clock(18, 0, 0)), "Europe/Berlin",
			"2026-03-20 00:00:00 +01:00",
			[]string{"2026-03-27 18:00:00 +01:00", "2026-03-29 18:00:00 +02:00", "2026-03-31 18:00:00 +02:00"}},
		{"every 3 days skips off-cycle days", everyDays(3, schedule.Date{Year: 2026, Month: 1, Day: 1}, schedule.Clock(6, 0, 0)), "UTC",
			"2026-01-05 07:00:00 +00:00",
			[]string{"2026-01-07 06:00:00 +00:00", "2026-01-10 06:00:00 +00:00"}},
		{"seconds in the time of day", daily(schedule.Clock(18, 0, 30)), "Asia/Kathmandu",
			"2026-05-01 18:00:29 +05:45",
			[]string{"2026-05-01 18:00:30 +05:45", "2026-05-02 18:00:30 +05:45"}},
		{"monthly 31 falls on the last day of shorter months", monthly(31, schedule.Clock(8, 0, 0)), "UTC",
			"2028-01-31 09:00:00 +00:00",
			[]string{"2028-02-29 08:00:00 +00:00", "2028-03-31 08:00:00 +00:00", "2028-04-30 08:00:00 +00:00"}},
		{"monthly 30 in February of a common year", monthly(30, schedule.Clock(8, 0, 0)), "UTC",
			"2027-02-01 00:00:00 +00:00",
			[]string{"2027-02-28 08:00:00 +00:00", "2027-03-30 08:00:00 +00:00"}},
		{"weekly Monday and Thursday", weekly(schedule.Clock(7, 30, 0), time.Monday, time.Thursday), "America/New_York",
			"2026-11-20 00:00:00 -05:00",
			[]string{"2026-11-23 07:30:00 -05:00", "2026-11-26 07:30:00 -05:00", "2026-11-30 07:30:00 -05:00"}},
		{"2nd Tuesday 19:00", nth(schedule.SecondWeek, schedule.Clock(19, 0, 0), time.Tuesday), "Europe/Berlin",
			"2026-11-22 00:00:00 +01:00",
			[]string{"2026-12-08 19:00:00 +01:00", "2027-01-12 19:00:00 +01:00"}},
		{"fourth and last Friday coincide in a four-Friday month and fire once", nth(schedule.FourthWeek|schedule.LastWeek, schedule.Clock(12, 0, 0), time.Friday), "UTC",
			"2026-02-01 00:00:00 +00:00",
			[]string{"2026-02-27 12:00:00 +00:00", "2026-03-27 12:00:00 +00:00"}},
		{"last Friday in a five-Friday month", nth(schedule.LastWeek, schedule.Clock(12, 0, 0), time.Friday), "UTC",
			"2026-05-01 13:00:00 +00:00",
			[]string{"2026-05-29 12:00:00 +00:00"}},
		{"first Monday and Sunday", nth(schedule.FirstWeek, schedule.Clock(0, 0, 0), time.Monday, time.Sunday), "UTC",
			"2026-11-01 00:00:00 +00:00",
			[]string{"2026-11-02 00:00:00 +00:00", "2026-12-06 00:00:00 +00:00", "2026-12-07 00:00:00 +00:00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.s.Validate(); err != nil {
				t.Fatal(err)
			}
			loc := mustLoad(t, tt.zone)
			after := local(t, tt.after)
			var got []string
			for range tt.want {
				next, ok := tt.s.Next(after, loc)
				if !ok {
					break
				}
				if next.Location() != loc {
					t.Errorf("result in %v, want %v", next.Location(), loc)
				}
				got = append(got, next.Format("2006-01-02 15:04:05 -07:00"))
				after = next
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("activations (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNextAbsolute(t *testing.T) {
	t.Parallel()
	berlin := mustLoad(t, "Europe/Berlin")
	start := time.Date(2026, 3, 28, 23, 0, 0, 0, time.UTC) // 00:00 CET on the 29th
	everyHours := schedule.Default(schedule.EveryHours, start, berlin)
	everyHours.Every = 6
	everyMinutes := schedule.Default(schedule.EveryMinutes, start, berlin)
	once := schedule.Default(schedule.Once, start, berlin)
	immediately := schedule.Default(schedule.Immediately, start, berlin)
	tests := []struct {
		name  string
		s     schedule.Schedule
		after time.Time
		want  []time.Time
	}{
		{"every 6 hours is absolute across spring forward", everyHours, start.Add(-time.Second),
			[]time.Time{start, start.Add(6 * time.Hour), start.Add(12 * time.Hour)}},
		{"after equal to an activation is strict", everyHours, start,
			[]time.Time{start.Add(6 * time.Hour)}},
		{"every 30 minutes from a far past start", everyMinutes, start.Add(10*365*24*time.Hour + 31*time.Minute),
			[]time.Time{start.Add(10*365*24*time.Hour + 60*time.Minute)}},
		{"once fires at At", once, start.Add(-time.Hour), []time.Time{start}},
		{"once after At has nothing", once, start, nil},
		{"immediately fires once at SavedAt", immediately, start.Add(-time.Nanosecond), []time.Time{start}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.s.Upcoming(tt.after, berlin, len(tt.want)+1)
			if len(got) > len(tt.want) && (tt.s.Kind == schedule.Once || tt.s.Kind == schedule.Immediately) {
				t.Fatalf("one-shot kind fired again: %v", got)
			}
			got = got[:min(len(got), len(tt.want))]
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(time.Time.Equal)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// Sub-second anchors keep their fraction.
	s := everyMinutes
	s.Start = start.Add(250 * time.Millisecond)
	s.Every = 1
	got, ok := s.Next(start.Add(90*time.Second), time.UTC)
	if want := start.Add(2*time.Minute + 250*time.Millisecond); !ok || !got.Equal(want) {
		t.Errorf("Next = %v, %v; want %v", got, ok, want)
	}
}

func TestNextNone(t *testing.T) {
	t.Parallel()
	now := created
	invalidNth := schedule.Default(schedule.NthWeekday, now, time.UTC) // nothing selected
	noDays := schedule.Default(schedule.Weekly, now, time.UTC)
	noDays.Weekdays = 0
	badEvery := schedule.Default(schedule.EveryMinutes, now, time.UTC)
	badEvery.Every = 0
	badTime := daily(86400)
	for _, s := range []schedule.Schedule{
		schedule.Default(schedule.Manual, now, time.UTC),
		schedule.Default(schedule.OnUpdates, now, time.UTC),
		schedule.Default(schedule.OnVirusOutbreak, now, time.UTC),
		schedule.Default(schedule.OnTaskCompletion, now, time.UTC),
		{Kind: "bogus"}, {}, invalidNth, noDays, badEvery, badTime,
	} {
		if got, ok := s.Next(now, nil); ok {
			t.Errorf("%q: Next = %v, want none", s.Kind, got)
		}
	}
	// Instants beyond year 9999 have no activation; nil loc means UTC.
	d := daily(schedule.Clock(1, 0, 0))
	if got, ok := d.Next(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), nil); ok {
		t.Errorf("Next beyond 9999 = %v", got)
	}
	if got, ok := d.Next(now, nil); !ok || got.Location() != time.UTC || !got.Equal(time.Date(2026, 1, 2, 1, 0, 0, 0, time.UTC)) {
		t.Errorf("Next with nil loc = %v, %v", got, ok)
	}
}

func TestBetween(t *testing.T) {
	t.Parallel()
	berlin := mustLoad(t, "Europe/Berlin")
	s := daily(schedule.Clock(18, 0, 0))
	from := local(t, "2026-03-27 18:00:00 +01:00") // an activation: excluded
	to := local(t, "2026-03-30 18:00:00 +02:00")   // an activation: included
	var got []time.Time
	for a := range s.Between(from, to, berlin) {
		got = append(got, a)
	}
	want := []time.Time{local(t, "2026-03-28 18:00:00 +01:00"), local(t, "2026-03-29 18:00:00 +02:00"), to}
	if diff := cmp.Diff(want, got, cmp.Comparer(time.Time.Equal)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Early stop.
	n := 0
	for range s.Between(from, to.AddDate(1, 0, 0), berlin) {
		n++
		if n == 2 {
			break
		}
	}
	if n != 2 {
		t.Errorf("break: %d", n)
	}
	// Manual has none; an empty window has none.
	if got := slices.Collect(schedule.Default(schedule.Manual, created, nil).Between(from, to, berlin)); len(got) != 0 {
		t.Errorf("manual: %v", got)
	}
	if got := slices.Collect(s.Between(to, from, berlin)); len(got) != 0 {
		t.Errorf("reversed window: %v", got)
	}
}

func TestNextAllocs(t *testing.T) {
	berlin := mustLoad(t, "Europe/Berlin")
	after := local(t, "2026-10-25 01:00:00 +02:00")
	nthS := schedule.Default(schedule.NthWeekday, created, berlin)
	nthS.Weeks, nthS.Weekdays = schedule.SecondWeek, schedule.NewWeekdays(time.Tuesday)
	for _, s := range []schedule.Schedule{daily(schedule.Clock(2, 30, 0)), nthS, schedule.Default(schedule.EveryMinutes, created, berlin)} {
		if n := testing.AllocsPerRun(200, func() { s.Next(after, berlin) }); n != 0 {
			t.Errorf("%s: %v allocs per Next", s.Kind, n)
		}
	}
}

func TestKindTables(t *testing.T) {
	t.Parallel()
	type row struct{ local, timed, event bool }
	want := map[schedule.Kind]row{
		schedule.Manual:           {false, false, false},
		schedule.Once:             {false, true, false},
		schedule.Immediately:      {false, true, false},
		schedule.EveryMinutes:     {false, true, false},
		schedule.EveryHours:       {false, true, false},
		schedule.EveryDays:        {true, true, false},
		schedule.Weekly:           {true, true, false},
		schedule.Monthly:          {true, true, false},
		schedule.NthWeekday:       {true, true, false},
		schedule.OnUpdates:        {false, false, true},
		schedule.OnVirusOutbreak:  {false, false, true},
		schedule.OnTaskCompletion: {false, false, true},
	}
	if len(want) != len(schedule.Kinds) {
		t.Fatalf("table covers %d of %d kinds", len(want), len(schedule.Kinds))
	}
	for _, k := range schedule.Kinds {
		s := schedule.Schedule{Kind: k}
		got := row{s.UsesLocalTime(), s.Timed(), s.Event()}
		if got != want[k] {
			t.Errorf("%s: got %+v, want %+v", k, got, want[k])
		}
	}
}

func TestLocation(t *testing.T) {
	t.Parallel()
	dev, srv := mustLoad(t, "Asia/Kolkata"), mustLoad(t, "Europe/Berlin")
	s := schedule.Default(schedule.Weekly, created, nil)
	tests := []struct {
		dev, srv *time.Location
		onServer bool
		want     *time.Location
	}{
		{dev, srv, false, dev},
		{dev, srv, true, srv},
		{nil, srv, false, time.UTC},
		{dev, nil, true, time.UTC},
	}
	for _, tt := range tests {
		if got := s.Location(tt.dev, tt.srv, tt.onServer); got != tt.want {
			t.Errorf("Location(%v, %v, %v) = %v, want %v", tt.dev, tt.srv, tt.onServer, got, tt.want)
		}
	}
	// The zone matters: the same weekly rule fires at different instants.
	after := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	a, _ := s.Next(after, s.Location(dev, srv, false))
	b, _ := s.Next(after, s.Location(dev, srv, true))
	if b.Sub(a) != 4*time.Hour+30*time.Minute {
		t.Errorf("device %v vs server %v", a, b)
	}
}
