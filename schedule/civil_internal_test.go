package schedule

import (
	"testing"
	"time"
)

// TestCivilRoundTrip checks the day-number arithmetic against the time
// package for every day from 1600 to 2400 and a sample of distant years.
func TestCivilRoundTrip(t *testing.T) {
	t.Parallel()
	check := func(day int64) {
		tm := time.Unix(day*86400, 0).UTC()
		y, m, d := civilFromDays(day)
		if y != int64(tm.Year()) || m != int(tm.Month()) || d != tm.Day() {
			t.Fatalf("civilFromDays(%d) = %d-%d-%d, want %v", day, y, m, d, tm)
		}
		if back := daysFromCivil(y, m, d); back != day {
			t.Fatalf("daysFromCivil(%d-%d-%d) = %d, want %d", y, m, d, back, day)
		}
		if w := weekdayOf(day); w != tm.Weekday() {
			t.Fatalf("weekdayOf(%d) = %v, want %v", day, w, tm.Weekday())
		}
		if dim := time.Date(int(y), time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day(); dim != daysIn(y, m) {
			t.Fatalf("daysIn(%d, %d) = %d, want %d", y, m, daysIn(y, m), dim)
		}
	}
	lo := time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 86400
	hi := time.Date(2400, 12, 31, 0, 0, 0, 0, time.UTC).Unix() / 86400
	for day := lo; day <= hi; day++ {
		check(day)
	}
	for _, y := range []int{1, 2, 100, 400, 9999} {
		check(time.Date(y, 12, 31, 0, 0, 0, 0, time.UTC).Unix() / 86400)
		check(time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 86400)
	}
}
