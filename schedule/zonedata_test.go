package schedule_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
)

// Issue #23: with Go's own zone data (ZONEINFO=$(go env GOROOT)/lib/time/zoneinfo.zip,
// Windows, time/tzdata) the first period a zone's TZ footer rule produces
// after its last listed transition was applied from the start of its year
// (or the rule's transition) instead of from that transition. The cases
// below are the reproducers; each runs against the system zone
// database and against Go's zone data, loaded explicitly by the test.

type zoneCase struct {
	name  string
	zone  string
	s     schedule.Schedule
	after string // RFC 3339
	want  string // RFC 3339
}

func zoneRegressionCases() []zoneCase {
	monthly := func(day int, at schedule.TimeOfDay) schedule.Schedule {
		s := schedule.Default(schedule.Monthly, created, time.UTC)
		s.Day, s.Time = day, at
		return s
	}
	nth := func(weeks schedule.Weeks, at schedule.TimeOfDay, days ...time.Weekday) schedule.Schedule {
		s := schedule.Default(schedule.NthWeekday, created, time.UTC)
		s.Weeks, s.Weekdays, s.Time = weeks, schedule.NewWeekdays(days...), at
		return s
	}
	return []zoneCase{
		// The table (daily schedules).
		{"MetlakatlaDaily2317", "America/Metlakatla", daily(schedule.Clock(23, 17, 0)),
			"2019-01-18T22:00:00-08:00", "2019-01-18T23:17:00-08:00"},
		{"MetlakatlaDaily0900", "America/Metlakatla", daily(schedule.Clock(9, 0, 0)),
			"2019-01-09T13:00:00-08:00", "2019-01-10T09:00:00-08:00"},
		{"CiudadJuarezDaily0100", "America/Ciudad_Juarez", daily(schedule.Clock(1, 0, 0)),
			"2022-11-17T05:00:00-06:00", "2022-11-18T01:00:00-06:00"},
		{"WinamacDaily0130", "America/Indiana/Winamac", daily(schedule.Clock(1, 30, 0)),
			"2007-03-10T05:30:00-06:00", "2007-03-11T01:30:00-06:00"},
		// Monthly and N-th weekday schedules in the same stretches.
		{"MetlakatlaMonthly15", "America/Metlakatla", monthly(15, schedule.Clock(10, 0, 0)),
			"2019-01-05T00:00:00-08:00", "2019-01-15T10:00:00-08:00"},
		{"MetlakatlaThirdFriday", "America/Metlakatla", nth(schedule.ThirdWeek, schedule.Clock(18, 0, 0), time.Friday),
			"2019-01-01T00:00:00-08:00", "2019-01-18T18:00:00-08:00"},
		{"CiudadJuarezMonthly29", "America/Ciudad_Juarez", monthly(29, schedule.Clock(23, 30, 0)),
			"2022-11-10T00:00:00-06:00", "2022-11-29T23:30:00-06:00"},
		{"CiudadJuarezLastTuesday", "America/Ciudad_Juarez", nth(schedule.LastWeek, schedule.Clock(8, 0, 0), time.Tuesday),
			"2022-11-10T00:00:00-06:00", "2022-11-29T08:00:00-06:00"},
		// Monthly on the 11th at 02:30 in Winamac: 2007-03-11 jumps from
		// 02:00 CST to 04:00 EDT, so 02:30 fires at the transition.
		{"WinamacMonthly11", "America/Indiana/Winamac", monthly(11, schedule.Clock(2, 30, 0)),
			"2007-02-12T00:00:00-06:00", "2007-03-11T04:00:00-04:00"},
		{"WinamacMonthly11AfterOldAnswer", "America/Indiana/Winamac", monthly(11, schedule.Clock(2, 30, 0)),
			"2007-03-11T01:15:00-06:00", "2007-03-11T04:00:00-04:00"},
		{"WinamacSecondSunday", "America/Indiana/Winamac", nth(schedule.SecondWeek, schedule.Clock(1, 0, 0), time.Sunday),
			"2007-03-01T00:00:00-06:00", "2007-03-11T01:00:00-06:00"},
	}
}

// TestZoneDataRegressions pins the reproducers under both zone
// databases.
func TestZoneDataRegressions(t *testing.T) {
	t.Parallel()
	for _, src := range schedule.ZoneSourcesForTest(t) {
		t.Run(src.Name, func(t *testing.T) {
			for _, c := range zoneRegressionCases() {
				t.Run(c.name, func(t *testing.T) {
					loc, err := src.Load(c.zone)
					if err != nil {
						t.Fatal(err)
					}
					after, _ := time.Parse(time.RFC3339, c.after)
					want, _ := time.Parse(time.RFC3339, c.want)
					got, ok := c.s.Next(after, loc)
					if !ok || !got.Equal(want) {
						t.Errorf("Next(%s) in %s = %v (ok=%v), want %v", c.after, c.zone, got, ok, want.In(loc))
					}
				})
			}
		})
	}
}

// TestZoneDataNeverSkipNeverDouble walks daily and monthly schedules over
// the three stretches, under both zone databases, and checks that every
// matching local date fires exactly once (the issue saw a daily schedule
// fire twice on Metlakatla's 2019-01-20 and Ciudad_Juarez's 2022-11-29,
// and a monthly one skip Winamac's 2007-03-11), through both Next and
// Between.
func TestZoneDataNeverSkipNeverDouble(t *testing.T) {
	t.Parallel()
	type stretch struct {
		zone     string
		s        schedule.Schedule
		from, to string // local dates, inclusive
		monthly  bool
	}
	monthly11 := schedule.Default(schedule.Monthly, created, time.UTC)
	monthly11.Day, monthly11.Time = 11, schedule.Clock(2, 30, 0)
	var stretches []stretch
	for _, T := range []schedule.TimeOfDay{schedule.Clock(0, 0, 0), schedule.Clock(1, 30, 0), schedule.Clock(2, 30, 0), schedule.Clock(9, 0, 0), schedule.Clock(23, 17, 0), schedule.Clock(23, 59, 59)} {
		stretches = append(stretches,
			stretch{"America/Metlakatla", daily(T), "2018-12-20", "2019-02-20", false},
			stretch{"America/Ciudad_Juarez", daily(T), "2022-10-25", "2022-12-31", false},
			stretch{"America/Indiana/Winamac", daily(T), "2007-02-20", "2007-04-10", false})
	}
	stretches = append(stretches, stretch{"America/Indiana/Winamac", monthly11, "2007-01-01", "2007-06-30", true})
	for _, src := range schedule.ZoneSourcesForTest(t) {
		t.Run(src.Name, func(t *testing.T) {
			for _, st := range stretches {
				loc, err := src.Load(st.zone)
				if err != nil {
					t.Fatal(err)
				}
				from, _ := time.ParseInLocation(time.DateOnly, st.from, loc)
				to, _ := time.ParseInLocation(time.DateOnly, st.to, loc)
				to = to.AddDate(0, 0, 1)
				var want []string
				for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
					if !st.monthly || d.Day() == 11 {
						want = append(want, d.Format(time.DateOnly))
					}
				}
				var viaNext, viaBetween []string
				for a, ok := st.s.Next(from.Add(-time.Second), loc); ok && a.Before(to); a, ok = st.s.Next(a, loc) {
					viaNext = append(viaNext, a.Format(time.DateOnly))
				}
				for a := range st.s.Between(from.Add(-time.Second), to.Add(-time.Second), loc) {
					viaBetween = append(viaBetween, a.Format(time.DateOnly))
				}
				for _, got := range [][]string{viaNext, viaBetween} {
					if !slices.Equal(got, want) {
						t.Errorf("%s at %v from %s: fired on %v\nwant one activation on each of %v", st.zone, st.s.Time, st.from, diffDates(got, want), len(want))
						break
					}
				}
			}
		})
	}
}

// diffDates describes the dates fired twice or missing.
func diffDates(got, want []string) string {
	count := map[string]int{}
	for _, d := range got {
		count[d]++
	}
	var out []string
	for _, d := range want {
		switch n := count[d]; {
		case n == 0:
			out = append(out, d+" missing")
		case n > 1:
			out = append(out, fmt.Sprintf("%s fired %d times", d, n))
		}
		delete(count, d)
	}
	for d := range count {
		out = append(out, d+" unexpected")
	}
	return "[" + strings.Join(out, ", ") + "]"
}
