package schedule_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/schedule"
)

// The oracle below knows nothing of the package's arithmetic: it walks real
// instants (whole minutes, coarse hourly steps that are refined to single
// minutes wherever anything could happen), asks the time package for each
// instant's local date and clock, and applies the rule literally:
// on a matching local date D the activation is the first instant whose
// local date is D and whose wall clock is ≥ T; a matching date that ends
// (the local date moves past it) without such an instant fires at that
// first instant after it.

var propertyZones = []string{
	"UTC",
	"Europe/Berlin",
	"Europe/London",
	"Europe/Moscow",
	"America/New_York",
	"America/Los_Angeles",
	"America/St_Johns",  // -3:30 with DST
	"America/Sao_Paulo", // southern DST until 2019
	"America/Santiago",  // southern DST, midnight transitions
	"America/Havana",    // DST at midnight
	"Asia/Kolkata",      // +5:30
	"Asia/Kathmandu",    // +5:45
	"Asia/Tehran",       // +3:30 with DST until 2022
	"Asia/Beirut",       // midnight transitions
	"Asia/Jerusalem",
	"Africa/Casablanca",   // Ramadan suspensions of DST
	"Australia/Adelaide",  // +9:30, southern DST
	"Australia/Lord_Howe", // 30-minute DST
	"Australia/Eucla",     // +8:45
	"Pacific/Apia",        // skipped 2011-12-30
	"Pacific/Chatham",     // +12:45 / +13:45
	"Pacific/Kiritimati",  // +14
	"Pacific/Pago_Pago",   // -11
	"Antarctica/Troll",    // two-hour DST
	// Zones whose TZ footer rule starts right after a last listed
	// transition in Go's zone data (issue #23).
	"America/Metlakatla",
	"America/Ciudad_Juarez",
	"America/Indiana/Winamac",
}

type localDT struct {
	day int64 // days since 1970-01-01 of the local date
	sec int64 // seconds since local midnight
}

func localOf(u int64, loc *time.Location) localDT {
	t := time.Unix(u, 0).In(loc)
	y, m, d := t.Date()
	h, mi, s := t.Clock()
	day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
	return localDT{day: day, sec: int64(h*3600 + mi*60 + s)}
}

func offsetOf(u int64, loc *time.Location) int {
	_, off := time.Unix(u, 0).In(loc).Zone()
	return off
}

// oracleMatches decides whether local day number day is a matching date,
// using the time package's calendar (UTC dates) rather than the package's.
func oracleMatches(s schedule.Schedule, day int64) bool {
	t := time.Unix(day*86400, 0).UTC()
	dom := t.Day()
	dim := time.Date(t.Year(), t.Month()+1, 0, 0, 0, 0, 0, time.UTC).Day()
	switch s.Kind {
	case schedule.EveryDays:
		start := time.Date(s.StartDate.Year, s.StartDate.Month, s.StartDate.Day, 0, 0, 0, 0, time.UTC).Unix() / 86400
		return day >= start && (day-start)%int64(s.Every) == 0
	case schedule.Weekly:
		return s.Weekdays.Has(t.Weekday())
	case schedule.Monthly:
		return dom == min(s.Day, dim)
	case schedule.NthWeekday:
		if !s.Weekdays.Has(t.Weekday()) {
			return false
		}
		n := (dom-1)/7 + 1
		weeks := []schedule.Weeks{schedule.FirstWeek, schedule.SecondWeek, schedule.ThirdWeek, schedule.FourthWeek}
		if n <= 4 && s.Weeks.Has(weeks[n-1]) {
			return true
		}
		return s.Weeks.Has(schedule.LastWeek) && dom+7 > dim
	}
	panic("not a wall-clock kind")
}

// oracleNextWall is the brute-force first activation strictly after `after`.
func oracleNextWall(s schedule.Schedule, after time.Time, loc *time.Location) time.Time {
	T := int64(s.Time)
	a := after.Unix()
	u := (a - 30*3600) / 60 * 60
	cur := localOf(u, loc)
	high := cur.day
	fired := map[int64]bool{cur.day: cur.sec >= T}
	match := map[int64]bool{}
	matches := func(d int64) bool {
		v, ok := match[d]
		if !ok {
			v = oracleMatches(s, d)
			match[d] = v
		}
		return v
	}
	// visit applies the rule at instant v and reports whether something
	// fires there.
	visit := func(v int64) bool {
		l := localOf(v, loc)
		fire := false
		for d := high; d < l.day; d++ {
			if matches(d) && !fired[d] {
				fired[d] = true
				fire = true
			}
		}
		if matches(l.day) && !fired[l.day] && l.sec >= T {
			fired[l.day] = true
			fire = true
		}
		high = max(high, l.day)
		cur = l
		return fire
	}
	limit := a + 500*86400
	for u < limit {
		// Whole days with no matching date near them and one offset
		// throughout cannot fire: step over them.
		if !matches(cur.day) && !matches(cur.day+1) && !matches(cur.day+2) {
			v := u + 86400
			o := offsetOf(u, loc)
			if o == offsetOf(u+21600, loc) && o == offsetOf(u+43200, loc) && o == offsetOf(u+64800, loc) && o == offsetOf(v, loc) {
				visit(v)
				u = v
				continue
			}
		}
		v := u + 3600
		lv := localOf(v, loc)
		refine := offsetOf(u, loc) != offsetOf(v, loc) ||
			(lv.day != cur.day && matches(cur.day) && !fired[cur.day]) ||
			(lv.day != cur.day && matches(lv.day) && lv.sec >= T) ||
			(matches(cur.day) && !fired[cur.day] && lv.sec >= T)
		if !refine {
			visit(v)
			u = v
			continue
		}
		for w := u + 60; w <= v; w += 60 {
			if visit(w) && w > a {
				return time.Unix(w, 0)
			}
		}
		u = v
	}
	panic(fmt.Sprintf("oracle found nothing for %+v after %v", s, after))
}

// oracleNextPeriodic steps through Start + k·period one period at a time.
func oracleNextPeriodic(s schedule.Schedule, after time.Time) time.Time {
	unit := time.Minute
	if s.Kind == schedule.EveryHours {
		unit = time.Hour
	}
	for t := s.Start; ; t = t.Add(time.Duration(s.Every) * unit) {
		if t.After(after) {
			return t
		}
	}
}

type propertyCase struct {
	s     schedule.Schedule
	after time.Time
}

func randomCase(r *rand.Rand, loc *time.Location) propertyCase {
	// A starting instant in 2000–2060; a third of them within two days of
	// a zone transition.
	lo := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	hi := time.Date(2060, 12, 31, 0, 0, 0, 0, time.UTC).Unix()
	a := lo + r.Int64N(hi-lo)
	if r.IntN(3) == 0 {
		start, _ := time.Unix(a, 0).In(loc).ZoneBounds()
		if !start.IsZero() && start.Unix() > lo+3*86400 {
			a = start.Unix() + r.Int64N(4*86400) - 2*86400
		}
	}
	after := time.Unix(a, r.Int64N(3)*int64(time.Second)/2).In(loc)
	if r.IntN(5) == 0 {
		after = after.Truncate(time.Minute)
	}

	// Times of day: half near the usual transition hours and midnight.
	var T schedule.TimeOfDay
	switch r.IntN(4) {
	case 0, 1:
		T = schedule.Clock(r.IntN(24), r.IntN(60), 0)
	case 2:
		T = schedule.Clock(r.IntN(4), r.IntN(60), 0)
	default:
		T = schedule.Clock(23, r.IntN(60), 0)
		if r.IntN(2) == 0 {
			T = schedule.Clock(0, r.IntN(60), 0)
		}
	}
	now := after.Add(-time.Duration(r.Int64N(int64(400 * 24 * time.Hour))))
	var s schedule.Schedule
	switch r.IntN(10) {
	case 0, 1:
		s = schedule.Default(schedule.EveryDays, now, loc)
		s.Every = 1 + r.IntN(10)
		if r.IntN(10) == 0 {
			s.Every = 1 + r.IntN(schedule.MaxEveryDays)
		}
		s.Time = T
	case 2, 3:
		s = schedule.Default(schedule.Weekly, now, loc)
		s.Weekdays = schedule.Weekdays(1 + r.IntN(127))
		s.Time = T
	case 4, 5:
		s = schedule.Default(schedule.Monthly, now, loc)
		s.Day = 1 + r.IntN(31)
		if r.IntN(2) == 0 {
			s.Day = 28 + r.IntN(4)
		}
		s.Time = T
	case 6, 7:
		s = schedule.Default(schedule.NthWeekday, now, loc)
		s.Weeks = schedule.Weeks(1 + r.IntN(31))
		s.Weekdays = schedule.Weekdays(1 + r.IntN(127))
		s.Time = T
	case 8:
		s = schedule.Default(schedule.EveryMinutes, now, loc)
		s.Every = 1 + r.IntN(schedule.MaxEveryMinutes)
		s.Start = after.Add(time.Duration(r.Int64N(int64(40*24*time.Hour))) - 30*24*time.Hour).UTC()
	default:
		s = schedule.Default(schedule.EveryHours, now, loc)
		s.Every = 1 + r.IntN(schedule.MaxEveryHours)
		s.Start = after.Add(time.Duration(r.Int64N(int64(400*24*time.Hour))) - 300*24*time.Hour).UTC()
	}
	return propertyCase{s: s, after: after}
}

func oracleNext(c propertyCase, loc *time.Location) time.Time {
	if c.s.UsesLocalTime() {
		return oracleNextWall(c.s, c.after, loc)
	}
	return oracleNextPeriodic(c.s, c.after)
}

// TestNextAgainstOracle compares Next with the brute-force oracle over
// random schedules, zones and starting instants. CI runs 10,000 cases;
// TASKFLEET_FULL_PROPERTY=1 runs 200,000. TASKFLEET_PROPERTY_SEED picks
// another deterministic sample.
func TestNextAgainstOracle(t *testing.T) {
	t.Parallel()
	total := 10_000
	if os.Getenv("TASKFLEET_FULL_PROPERTY") == "1" {
		total = 200_000
	}
	seed := uint64(20261122)
	if v := os.Getenv("TASKFLEET_PROPERTY_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("TASKFLEET_PROPERTY_SEED: %v", err)
		}
		seed = n
	}
	perZone := (total + len(propertyZones) - 1) / len(propertyZones)
	var cases, checks atomic.Int64
	start := time.Now()
	t.Cleanup(func() {
		t.Logf("oracle: %d cases (%d comparisons incl. chained Next) over %d zones, seed %d, in %v",
			cases.Load(), checks.Load(), len(propertyZones), seed, time.Since(start).Round(time.Millisecond))
	})
	for zi, name := range propertyZones {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			loc, err := time.LoadLocation(name)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(seed, uint64(zi)))
			fails := 0
			for i := 0; i < perZone && fails < 5; i++ {
				c := randomCase(r, loc)
				if err := c.s.Validate(); err != nil {
					t.Fatalf("generated an invalid schedule: %v", err)
				}
				cases.Add(1)
				after := c.after
				// Check Next, then chain from its result (strictness at an
				// activation) for a quarter of the cases.
				for step := 0; step < 1+boolInt(i%4 == 0); step++ {
					checks.Add(1)
					got, ok := c.s.Next(after, loc)
					want := oracleNext(propertyCase{s: c.s, after: after}, loc)
					if !ok || !got.Equal(want) || got.Location() != loc {
						fails++
						j, _ := c.s.MarshalJSON()
						t.Errorf("Next(%s) in %s for %s\n got %v (ok=%v)\nwant %v",
							after.UTC().Format(time.RFC3339Nano), name, j, got, ok, want.In(loc))
						break
					}
					after = got
				}
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestBetweenMatchesNext checks that Between (which caches zone periods)
// yields exactly the successive Next activations, over random wall-clock
// schedules and year-long windows in every property zone.
func TestBetweenMatchesNext(t *testing.T) {
	t.Parallel()
	for zi, name := range propertyZones {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			loc := mustLoad(t, name)
			r := rand.New(rand.NewPCG(99, uint64(zi)))
			for i := 0; i < 40; i++ {
				c := randomCase(r, loc)
				if name == "Pacific/Apia" && i < 10 {
					c.after = time.Date(2011, 6, 1, 0, 0, 0, 0, loc)
				}
				to := c.after.AddDate(1, 0, 0)
				var want []time.Time
				for a, ok := c.s.Next(c.after, loc); ok && !a.After(to); a, ok = c.s.Next(a, loc) {
					want = append(want, a)
				}
				var got []time.Time
				for a := range c.s.Between(c.after, to, loc) {
					got = append(got, a)
				}
				if diff := cmp.Diff(want, got, cmp.Comparer(time.Time.Equal)); diff != "" {
					j, _ := c.s.MarshalJSON()
					t.Fatalf("Between(%v, %v) for %s (-Next +Between):\n%s", c.after, to, j, diff)
				}
			}
		})
	}
}
