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

// TestZoneTableAllZones checks the zone table of every zone of Go's zone
// data, loaded from each zone database (ZoneSourcesForTest), against the
// time package's single-instant offsets over 1900–2200: it walks the time
// package's periods and checks the table's offset at each period's first
// and last second and in its middle (and the second before it), and
// checks that every table span has its offset at both of its ends. The
// first footer-derived period of a zone (issue #23: Metlakatla 2019,
// Ciudad_Juarez 2022, Indiana/Winamac 2007 with Go's zone data) was
// applied from the start of its year before.
func TestZoneTableAllZones(t *testing.T) {
	t.Parallel()
	names := GoZoneNames(t)
	for _, src := range ZoneSourcesForTest(t) {
		t.Run(src.Name, func(t *testing.T) {
			t.Parallel()
			checked := 0
			for _, name := range names {
				loc, err := src.Load(name)
				if err != nil {
					continue // a zone the system database does not have
				}
				checked++
				offAt := func(u int64) int64 {
					_, o := time.Unix(u, 0).In(loc).Zone()
					return int64(o)
				}
				fails := 0
				check := func(u int64, what string) {
					off, start, end := zoneAt(loc, u)
					if want := offAt(u); off != want && fails < 3 {
						fails++
						t.Errorf("%s at %v (%s): table offset %d, time package %d", name, time.Unix(u, 0).UTC(), what, off, want)
					}
					if start > u || end <= u {
						t.Fatalf("%s at %d: span [%d, %d) does not contain it", name, u, start, end)
					}
				}
				for u := tableLo; u < tableHi; {
					_, e := time.Unix(u, 0).In(loc).ZoneBounds()
					end := e.Unix()
					switch {
					case e.IsZero() || end > tableHi: // no later transition
						end = tableHi
					case end <= u: // the leap-year quirk zoneAtRaw describes
						end = min(u+86400, tableHi)
					}
					if u > tableLo {
						check(u-1, "before a period")
					}
					check(u, "period start")
					check(u+(end-u)/2, "mid period")
					check(end-1, "period end")
					u = end
				}
				tab := tableFor(loc)
				for i, s := range tab.starts {
					e := tab.lastEnd
					if i+1 < len(tab.starts) {
						e = tab.starts[i+1]
					}
					for _, v := range []int64{max(s, tableLo-86400), min(e-1, tableHi+86400)} {
						if o := offAt(v); o != int64(tab.offs[i]) && fails < 3 {
							fails++
							t.Errorf("%s: table span [%v, %v) offset %d, time package %d at %v",
								name, time.Unix(s, 0).UTC(), time.Unix(e, 0).UTC(), tab.offs[i], o, time.Unix(v, 0).UTC())
						}
					}
				}
			}
			if checked < 300 {
				t.Fatalf("only %d of %d zones loaded from %s", checked, len(names), src.Name)
			}
		})
	}
}
