package schedule

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
	_ "time/tzdata"
)

// TestCivilRoundTrip checks the day-number arithmetic against the time
// package for every day from 1890 to 2210 and a sample of distant years.
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
	lo := time.Date(1890, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 86400
	hi := time.Date(2210, 12, 31, 0, 0, 0, 0, time.UTC).Unix() / 86400
	for day := lo; day <= hi; day++ {
		check(day)
	}
	for _, y := range []int{1, 2, 100, 400, 1600, 2400, 9999} {
		check(time.Date(y, 12, 31, 0, 0, 0, 0, time.UTC).Unix() / 86400)
		check(time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 86400)
	}
}

// TestZoneTable checks the cached zone spans against the time package:
// the offset at u, and that the span [start, end) has that offset at both
// ends and contains u.
func TestZoneTable(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(5, 6))
	for _, name := range []string{"UTC", "Europe/Berlin", "Pacific/Apia", "Australia/Lord_Howe", "America/Santiago", "Asia/Kathmandu", "Africa/Casablanca", "Antarctica/Troll"} {
		loc, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5000; i++ {
			u := tableLo - 86400*400 + r.Int64N(tableHi-tableLo+2*86400*400)
			off, start, end := zoneAt(loc, u)
			_, want := time.Unix(u, 0).In(loc).Zone()
			if off != int64(want) || start > u || end <= u {
				t.Fatalf("%s at %d: off %d [%d, %d), time package %d", name, u, off, start, end, want)
			}
			for _, v := range []int64{start, end - 1} {
				if v == math.MinInt64 || v == math.MaxInt64-1 {
					continue
				}
				if _, o := time.Unix(v, 0).In(loc).Zone(); int64(o) != off {
					t.Fatalf("%s: span [%d, %d) of u=%d has offset %d at %d, not %d", name, start, end, u, o, v, off)
				}
			}
		}
	}
}
