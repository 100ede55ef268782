package schedule

import (
	"fmt"
	"strconv"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// TimeOfDay is a civil wall-clock time, counted in seconds since local
// midnight (0 ≤ t < 86400). It is not an instant: the same TimeOfDay falls
// on different instants in different zones and on different dates. Build one
// with Clock; its JSON and text form is "HH:MM:SS" (for example "18:00:00").
type TimeOfDay int32

// Clock returns the TimeOfDay h:m:s. It does not check its arguments;
// Validate reports an out-of-range value.
func Clock(h, m, s int) TimeOfDay { return TimeOfDay(h*3600 + m*60 + s) }

// Hour, Minute and Second return the parts of t.
func (t TimeOfDay) Hour() int   { return int(t) / 3600 }
func (t TimeOfDay) Minute() int { return int(t) % 3600 / 60 }
func (t TimeOfDay) Second() int { return int(t) % 60 }

// Valid reports whether t is within a day: 00:00:00 ≤ t ≤ 23:59:59.
func (t TimeOfDay) Valid() bool { return t >= 0 && t < 86400 }

// String returns "HH:MM:SS" for a valid t, and a diagnostic form otherwise.
func (t TimeOfDay) String() string {
	if !t.Valid() {
		return "TimeOfDay(" + strconv.Itoa(int(t)) + ")"
	}
	return string(t.appendText(make([]byte, 0, 8)))
}

func (t TimeOfDay) appendText(b []byte) []byte {
	return append(b,
		byte('0'+t.Hour()/10), byte('0'+t.Hour()%10), ':',
		byte('0'+t.Minute()/10), byte('0'+t.Minute()%10), ':',
		byte('0'+t.Second()/10), byte('0'+t.Second()%10))
}

// MarshalText encodes t as "HH:MM:SS". It fails for an invalid t.
func (t TimeOfDay) MarshalText() ([]byte, error) {
	if !t.Valid() {
		return nil, errs.Invalid("", strconv.Itoa(int(t)), "time of day must be between 00:00:00 and 23:59:59")
	}
	return t.appendText(nil), nil
}

// UnmarshalText accepts exactly "HH:MM:SS" with 00 ≤ HH ≤ 23, 00 ≤ MM ≤ 59,
// 00 ≤ SS ≤ 59. Anything else is a *ValidationError.
func (t *TimeOfDay) UnmarshalText(b []byte) error {
	v, err := ParseTimeOfDay(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

const timeOfDayReason = `must be a time of day "HH:MM:SS" between 00:00:00 and 23:59:59`

// ParseTimeOfDay parses "HH:MM:SS" (24-hour clock, two digits each).
func ParseTimeOfDay(s string) (TimeOfDay, error) {
	bad := errs.Invalid("", truncate(s), timeOfDayReason)
	if len(s) != 8 || s[2] != ':' || s[5] != ':' {
		return 0, bad
	}
	h, ok1 := twoDigits(s[0:2])
	m, ok2 := twoDigits(s[3:5])
	sec, ok3 := twoDigits(s[6:8])
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || sec > 59 {
		return 0, bad
	}
	return Clock(h, m, sec), nil
}

// Date is a civil calendar date (proleptic Gregorian), not an instant. Its
// JSON and text form is "YYYY-MM-DD" (for example "2026-11-22"). Valid years
// are MinYear..MaxYear.
type Date struct {
	// Year is the year, MinYear to MaxYear.
	Year int
	// Month is the month, January to December.
	Month time.Month
	// Day is the day of the month, from 1.
	Day int
}

// Bounds of a Date's year (the years RFC 3339 can write).
const (
	MinYear = 1
	MaxYear = 9999
)

// DateOf returns the civil date of t in t's location.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date{Year: y, Month: m, Day: d}
}

// Valid reports whether d names a real day in years MinYear..MaxYear.
func (d Date) Valid() bool {
	return d.Year >= MinYear && d.Year <= MaxYear && d.Month >= 1 && d.Month <= 12 &&
		d.Day >= 1 && d.Day <= daysIn(int64(d.Year), int(d.Month))
}

// String returns "YYYY-MM-DD".
func (d Date) String() string {
	if !d.Valid() {
		return fmt.Sprintf("Date(%d, %d, %d)", d.Year, int(d.Month), d.Day)
	}
	return fmt.Sprintf("%04d-%02d-%02d", d.Year, int(d.Month), d.Day)
}

// MarshalText encodes d as "YYYY-MM-DD". It fails for an invalid d.
func (d Date) MarshalText() ([]byte, error) {
	if !d.Valid() {
		return nil, errs.Invalid("", d.String(), dateReason)
	}
	return []byte(d.String()), nil
}

// UnmarshalText accepts exactly "YYYY-MM-DD" naming a real day.
func (d *Date) UnmarshalText(b []byte) error {
	v, err := ParseDate(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

const dateReason = `must be a calendar date "YYYY-MM-DD" in years 0001..9999`

// ParseDate parses "YYYY-MM-DD" naming a real day.
func ParseDate(s string) (Date, error) {
	bad := errs.Invalid("", truncate(s), dateReason)
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return Date{}, bad
	}
	y1, ok1 := twoDigits(s[0:2])
	y2, ok2 := twoDigits(s[2:4])
	m, ok3 := twoDigits(s[5:7])
	dd, ok4 := twoDigits(s[8:10])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return Date{}, bad
	}
	d := Date{Year: y1*100 + y2, Month: time.Month(m), Day: dd}
	if !d.Valid() {
		return Date{}, bad
	}
	return d, nil
}

func (d Date) days() int64 { return daysFromCivil(int64(d.Year), int(d.Month), d.Day) }

func twoDigits(s string) (int, bool) {
	if len(s) != 2 || s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' {
		return 0, false
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), true
}

// truncate keeps error values short when echoing untrusted input.
func truncate(s string) string {
	const max = 40
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// Civil calendar arithmetic on day numbers (days since 1970-01-01, which
// is day 0), proleptic Gregorian, exact for every int64 year we accept. The
// algorithm maps March-based years onto 400-year eras of 146097 days.

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// eraShift moves day and year numbers by 25 eras (10,000 years) so the
// arithmetic below runs on non-negative values, where dividing by a
// constant compiles to a multiplication. Valid for years > -10000.
const eraShift = 25

func daysFromCivil(y int64, m, d int) int64 {
	if m <= 2 {
		y--
	}
	yy := uint64(y + eraShift*400)
	era := yy / 400
	yoe := yy - era*400 // [0, 399]
	mp := uint64(m+9) % 12
	doy := (153*mp+2)/5 + uint64(d) - 1 // [0, 365]
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era*146097+doe) - 719468 - eraShift*146097
}

func civilFromDays(z int64) (y int64, m, d int) {
	zz := uint64(z + 719468 + eraShift*146097)
	era := zz / 146097
	doe := zz - era*146097                                 // [0, 146096]
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // [0, 399]
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // [0, 365]
	mp := (5*doy + 2) / 153                                // [0, 11], March-based
	d = int(doy - (153*mp+2)/5 + 1)
	if mp < 10 {
		m = int(mp + 3)
	} else {
		m = int(mp - 9)
	}
	y = int64(yoe+era*400) - eraShift*400
	if m <= 2 {
		y++
	}
	return y, m, d
}

// weekdayOf returns the weekday of day number z (day 0 was a Thursday).
func weekdayOf(z int64) time.Weekday {
	w := (z + 4) % 7
	if w < 0 {
		w += 7
	}
	return time.Weekday(w)
}

func isLeap(y int64) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(y int64, m int) int {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
