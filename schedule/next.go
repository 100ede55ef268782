package schedule

import (
	"iter"
	"math/bits"
	"time"
)

// Instants Next accepts and returns: years 0001..9999 (UTC).
const (
	minUnix = -62135596800 // 0001-01-01T00:00:00Z
	maxUnix = 253402300799 // 9999-12-31T23:59:59Z
)

const (
	secondsPerDay = 86400
	// maxOffset bounds |UTC offset| of any zone in the tz database
	// (historical local mean times reach about ±15:57).
	maxOffset = 18 * 3600
	// fastSlack: if the zone in effect at `after` began at least this long
	// before it, no transition can make an earlier local date's activation
	// fall after `after`, nor put a second occurrence before the first.
	fastSlack = 2 * maxOffset
)

// Next returns the first activation of s strictly after after, as an
// instant in loc (nil means UTC), and true; or false when there is none:
// Manual and the event kinds never have one, Once and Immediately have one
// only while after is before At / SavedAt, and an invalid schedule has none
// (Next never panics; Validate says what is wrong). Instants outside years
// 0001..9999 have no activation.
//
// Absolute kinds (Once, Immediately, EveryMinutes, EveryHours) ignore loc
// except for the location of the result. Wall-clock kinds (EveryDays,
// Weekly, Monthly, NthWeekday) are evaluated in loc: on each matching
// local date D the activation is the first instant whose local date is D
// and whose local wall clock is ≥ Time. A Time inside a spring-forward gap
// therefore fires at the transition, and a Time inside a repeated
// fall-back hour fires once, at its first occurrence. When D has no such
// instant at all (a day the zone skipped, such as 2011-12-30 in
// Pacific/Apia, or a day that ends early because of a transition), D's
// activation is the first instant after D, so no matching date is ever
// skipped; if that coincides with the next date's activation they fire once.
//
// Next does not allocate (after the first use of loc; see the package doc).
func (s Schedule) Next(after time.Time, loc *time.Location) (time.Time, bool) {
	if loc == nil {
		loc = time.UTC
	}
	a := after.Unix()
	if a < minUnix || a > maxUnix {
		return time.Time{}, false
	}
	var u int64
	var ok bool
	switch s.Kind {
	case Once:
		return instantAfter(s.At, after, loc)
	case Immediately:
		return instantAfter(s.SavedAt, after, loc)
	case EveryMinutes:
		return s.nextPeriodic(after, 60, MaxEveryMinutes, loc)
	case EveryHours:
		return s.nextPeriodic(after, 3600, MaxEveryHours, loc)
	case EveryDays:
		if s.Every < MinEveryDays || s.Every > MaxEveryDays || !s.StartDate.Valid() {
			return time.Time{}, false
		}
		u, _, ok = s.nextWall(a, loc)
	case Weekly:
		if s.Weekdays&AllWeekdays == 0 {
			return time.Time{}, false
		}
		u, _, ok = s.nextWall(a, loc)
	case Monthly:
		if s.Day < MinMonthDay || s.Day > MaxMonthDay {
			return time.Time{}, false
		}
		u, _, ok = s.nextWall(a, loc)
	case NthWeekday:
		if s.Weekdays&AllWeekdays == 0 || s.Weeks&AllWeeks == 0 {
			return time.Time{}, false
		}
		u, _, ok = s.nextWall(a, loc)
	default:
		return time.Time{}, false
	}
	if !ok || u > maxUnix {
		return time.Time{}, false
	}
	return time.Unix(u, 0).In(loc), true
}

// Between returns the activations of s in (from, to], ascending, in loc.
// It is the successive application of Next, so it never yields an instant
// twice. The engine uses it for missed runs: the activations between the
// last time a device was seen and now.
func (s Schedule) Between(from, to time.Time, loc *time.Location) iter.Seq[time.Time] {
	if s.UsesLocalTime() {
		return s.betweenWall(from, to, loc)
	}
	return func(yield func(time.Time) bool) {
		t := from
		for {
			n, ok := s.Next(t, loc)
			if !ok || n.After(to) || !yield(n) {
				return
			}
			t = n
		}
	}
}

// betweenWall is Between for wall-clock kinds. It yields exactly what
// successive Next calls would, but keeps the zone period of the previous
// activation, so a step that stays inside it costs no zone lookup.
func (s Schedule) betweenWall(from, to time.Time, loc *time.Location) iter.Seq[time.Time] {
	return func(yield func(time.Time) bool) {
		if loc == nil {
			loc = time.UTC
		}
		first, ok := s.Next(from, loc) // validates the parameters
		if !ok || first.After(to) || !yield(first) {
			return
		}
		T := int64(s.Time)
		prev := first.Unix()
		_, D, _ := s.nextWall(prev-1, loc)
		off, zs, ze := zoneAt(loc, prev)
		end := to.Unix()
		for {
			var u int64
			nd, ok := s.nextDate(D + 1)
			if !ok {
				return
			}
			u = nd*secondsPerDay + T - off
			if !(u > prev && u < ze && zs <= u-fastSlack) {
				off, zs, ze = zoneAt(loc, prev)
				u = nd*secondsPerDay + T - off
				if !(u > prev && u < ze && zs <= u-fastSlack) {
					if u, nd, ok = s.nextWall(prev, loc); !ok {
						return
					}
				}
			}
			if u > end || u > maxUnix || !yield(time.Unix(u, 0).In(loc)) {
				return
			}
			prev, D = u, nd
		}
	}
}

// Upcoming returns up to n activations after after, in loc: the schedule
// preview a console shows.
func (s Schedule) Upcoming(after time.Time, loc *time.Location, n int) []time.Time {
	var out []time.Time
	t := after
	for len(out) < n {
		next, ok := s.Next(t, loc)
		if !ok {
			break
		}
		out = append(out, next)
		t = next
	}
	return out
}

func instantAfter(at, after time.Time, loc *time.Location) (time.Time, bool) {
	if at.IsZero() || !at.After(after) {
		return time.Time{}, false
	}
	return at.In(loc), true
}

// nextPeriodic: Start + k·period for the least k ≥ 0 after after.
func (s Schedule) nextPeriodic(after time.Time, unit int64, maxEvery int, loc *time.Location) (time.Time, bool) {
	if s.Every < 1 || s.Every > maxEvery || s.Start.IsZero() {
		return time.Time{}, false
	}
	if after.Before(s.Start) {
		return s.Start.In(loc), true
	}
	p := int64(s.Every) * unit
	ds := after.Unix() - s.Start.Unix()
	if after.Nanosecond() < s.Start.Nanosecond() {
		ds-- // whole seconds elapsed; the fraction does not change the quotient
	}
	k := ds/p + 1
	sec := s.Start.Unix() + k*p
	if sec > maxUnix {
		return time.Time{}, false
	}
	return time.Unix(sec, int64(s.Start.Nanosecond())).In(loc), true
}

// nextWall returns the first activation of a wall-clock schedule strictly
// after unix second a, and the local date (day number) it belongs to.
func (s Schedule) nextWall(a int64, loc *time.Location) (int64, int64, bool) {
	T := int64(s.Time)
	if T < 0 || T >= secondsPerDay {
		return 0, 0, false
	}
	off, zs, ze := zoneAt(loc, a)
	L := a + off
	d0 := floorDiv(L, secondsPerDay)
	// Fast path: the zone at a has been in effect for a while, so every
	// matching (D, Time) at or before local(a) fired at or before a, and
	// the first later one is reached by plain offset arithmetic if it
	// still lies in this zone period.
	if zs <= a-fastSlack {
		d := d0
		if L-d0*secondsPerDay >= T {
			d++
		}
		if D, ok := s.nextDate(d); ok {
			if u := D*secondsPerDay + T - off; u < ze {
				return u, D, true
			}
		}
	}
	// General path: activations are monotone in the date, so walk the
	// matching dates from two days before a's local date.
	D, ok := s.nextDate(d0 - 2)
	for i := 0; ok && i < 1000; i++ {
		u := firstLocalAtOrAfter(loc, D*secondsPerDay+T)
		if u > a {
			return u, D, true
		}
		D, ok = s.nextDate(D + 1)
	}
	return 0, 0, false
}

// firstLocalAtOrAfter returns the first instant whose local date-time
// (unix second + offset) is ≥ the local date-time target, walking zone
// periods forward from an instant surely before it.
func firstLocalAtOrAfter(loc *time.Location, target int64) int64 {
	u := target - maxOffset
	for i := 0; i < 64; i++ {
		off, _, end := zoneAt(loc, u)
		c := target - off
		if c < u {
			c = u // a forward jump at the period start passed target
		}
		if c < end {
			return c
		}
		u = end
	}
	return target - maxOffset // unreachable for real zone data
}

// nextDate returns the first day number ≥ d on which s fires.
func (s Schedule) nextDate(d int64) (int64, bool) {
	switch s.Kind {
	case EveryDays:
		start := s.StartDate.days()
		if d <= start {
			return start, true
		}
		n := int64(s.Every)
		if n == 1 {
			return d, true // daily: skip the division, the costliest step of Next
		}
		k := (d - start + n - 1) / n
		return start + k*n, true
	case Weekly:
		w := uint(weekdayOf(d))
		m := uint16(s.Weekdays & AllWeekdays)
		m |= m << 7 // two weeks, so the search from w never wraps
		r := m >> w
		if r == 0 {
			return 0, false
		}
		return d + int64(bits.TrailingZeros16(r)), true
	case Monthly:
		y, m, dd := civilFromDays(d)
		first := d - int64(dd) + 1
		dim := daysIn(y, m)
		if target := min(s.Day, dim); dd <= target {
			return first + int64(target) - 1, true
		}
		first += int64(dim)
		y, m = nextMonth(y, m)
		return first + int64(min(s.Day, daysIn(y, m))) - 1, true
	case NthWeekday:
		y, m, dd := civilFromDays(d)
		first := d - int64(dd) + 1
		for i := 0; i < 3; i++ {
			dim := daysIn(y, m)
			if mask := s.monthMask(weekdayOf(first), dim) >> uint(dd); mask != 0 {
				return first + int64(dd-1+bits.TrailingZeros32(mask)), true
			}
			first += int64(dim)
			y, m = nextMonth(y, m)
			dd = 1
		}
	}
	return 0, false
}

func nextMonth(y int64, m int) (int64, int) {
	if m == 12 {
		return y + 1, 1
	}
	return y, m + 1
}

// monthMask returns bit d set for each day d of a month that starts on
// weekday first and has dim days on which an NthWeekday schedule fires.
func (s Schedule) monthMask(first time.Weekday, dim int) uint32 {
	var mask uint32
	for days := uint(s.Weekdays & AllWeekdays); days != 0; days &= days - 1 {
		w := bits.TrailingZeros(days)
		day := 1 + (w-int(first)+7)%7 // first occurrence
		for n := 0; n < 4; n++ {
			if s.Weeks&(FirstWeek<<uint(n)) != 0 {
				mask |= 1 << uint(day+7*n)
			}
		}
		if s.Weeks&LastWeek != 0 {
			mask |= 1 << uint(day+7*((dim-day)/7))
		}
	}
	return mask
}
