package schedule

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// Weekdays is a set of days of the week: bit 1<<time.Sunday … 1<<time.Saturday.
// Its JSON form is an array of lower-case English names in ISO order
// (Monday first), for example ["monday","friday"]; the empty set is [].
type Weekdays uint8

// AllWeekdays is every day of the week.
const AllWeekdays Weekdays = 1<<7 - 1

// NewWeekdays returns the set of the given days. Days outside
// time.Sunday..time.Saturday set bits that Validate rejects.
func NewWeekdays(days ...time.Weekday) Weekdays {
	var w Weekdays
	for _, d := range days {
		w |= 1 << uint(d)
	}
	return w
}

// Has reports whether d is in w.
func (w Weekdays) Has(d time.Weekday) bool { return d >= 0 && d < 7 && w&(1<<uint(d)) != 0 }

// Days lists the days of w in ISO order, Monday first.
func (w Weekdays) Days() []time.Weekday {
	var out []time.Weekday
	for _, d := range isoWeek {
		if w.Has(d) {
			out = append(out, d)
		}
	}
	return out
}

func (w Weekdays) String() string { return setString(uint8(w), weekdayNames[:], isoOrder[:]) }

var isoWeek = [7]time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday, time.Saturday, time.Sunday}
var isoOrder = [7]int{1, 2, 3, 4, 5, 6, 0}
var weekdayNames = [7]string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}

// MarshalJSON encodes w as an array of day names, Monday first.
func (w Weekdays) MarshalJSON() ([]byte, error) {
	return marshalSet(uint8(w), weekdayNames[:], isoOrder[:], "weekdays")
}

// UnmarshalJSON accepts an array of distinct day names ("monday" … "sunday").
func (w *Weekdays) UnmarshalJSON(b []byte) error {
	v, err := unmarshalSet(b, weekdayNames[:])
	if err != nil {
		return err
	}
	*w = Weekdays(v)
	return nil
}

// Weeks is a set of weeks of a month for NthWeekday schedules: the first,
// second, third and fourth occurrence of a weekday in the month, and its last
// occurrence (which is the fourth or the fifth). Its JSON form is an array
// of "first", "second", "third", "fourth", "last".
type Weeks uint8

// The weeks of a month.
const (
	FirstWeek Weeks = 1 << iota
	SecondWeek
	ThirdWeek
	FourthWeek
	LastWeek

	AllWeeks = FirstWeek | SecondWeek | ThirdWeek | FourthWeek | LastWeek
)

var weekNames = [5]string{"first", "second", "third", "fourth", "last"}
var weekOrder = [5]int{0, 1, 2, 3, 4}

// Has reports whether all weeks of x are in w.
func (w Weeks) Has(x Weeks) bool { return x != 0 && w&x == x }

func (w Weeks) String() string { return setString(uint8(w), weekNames[:], weekOrder[:]) }

// MarshalJSON encodes w as an array of week names.
func (w Weeks) MarshalJSON() ([]byte, error) {
	return marshalSet(uint8(w), weekNames[:], weekOrder[:], "weeks")
}

// UnmarshalJSON accepts an array of distinct week names.
func (w *Weeks) UnmarshalJSON(b []byte) error {
	v, err := unmarshalSet(b, weekNames[:])
	if err != nil {
		return err
	}
	*w = Weeks(v)
	return nil
}

// AppTypes is the set of security application types whose virus-outbreak
// events start an OnVirusOutbreak task. JSON: an array of
// "workstations_file_servers", "perimeter_defense", "mail_systems".
type AppTypes uint8

// The application types that monitor virus outbreaks.
const (
	WorkstationsFileServers AppTypes = 1 << iota // Anti-virus for workstations and file servers
	PerimeterDefense                             // Anti-virus for perimeter defense
	MailSystems                                  // Anti-virus for mail systems

	// AllAppTypes is the product documentation's default: every application type.
	AllAppTypes = WorkstationsFileServers | PerimeterDefense | MailSystems
)

var appTypeNames = [3]string{"workstations_file_servers", "perimeter_defense", "mail_systems"}
var appTypeOrder = [3]int{0, 1, 2}

// Has reports whether all types of x are in a.
func (a AppTypes) Has(x AppTypes) bool { return x != 0 && a&x == x }

func (a AppTypes) String() string { return setString(uint8(a), appTypeNames[:], appTypeOrder[:]) }

// MarshalJSON encodes a as an array of type names.
func (a AppTypes) MarshalJSON() ([]byte, error) {
	return marshalSet(uint8(a), appTypeNames[:], appTypeOrder[:], "app_types")
}

// UnmarshalJSON accepts an array of distinct application type names.
func (a *AppTypes) UnmarshalJSON(b []byte) error {
	v, err := unmarshalSet(b, appTypeNames[:])
	if err != nil {
		return err
	}
	*a = AppTypes(v)
	return nil
}

func setString(v uint8, names []string, order []int) string {
	var parts []string
	for _, i := range order {
		if v&(1<<uint(i)) != 0 {
			parts = append(parts, names[i])
		}
	}
	if rest := v &^ (1<<uint(len(names)) - 1); rest != 0 {
		parts = append(parts, "invalid")
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func marshalSet(v uint8, names []string, order []int, what string) ([]byte, error) {
	if v&^(1<<uint(len(names))-1) != 0 {
		return nil, errs.Invalid("", "", what+" holds bits outside the defined values")
	}
	var b bytes.Buffer
	b.WriteByte('[')
	first := true
	for _, i := range order {
		if v&(1<<uint(i)) == 0 {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteByte('"')
		b.WriteString(names[i])
		b.WriteByte('"')
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

func unmarshalSet(b []byte, names []string) (uint8, error) {
	reason := "must be an array of distinct values from " + strings.Join(names, ", ")
	var list []string
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return 0, errs.Invalid("", "null", reason)
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return 0, errs.Invalid("", "", reason)
	}
	var v uint8
	for i, s := range list {
		bit := -1
		for j, n := range names {
			if s == n {
				bit = j
				break
			}
		}
		if bit < 0 || v&(1<<uint(bit)) != 0 {
			return 0, errs.Prefix("["+strconv.Itoa(i)+"]", errs.Invalid("", truncate(s), reason))
		}
		v |= 1 << uint(bit)
	}
	return v, nil
}
