package schedule

import (
	"strconv"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// field names (JSON) of the kind-specific values, and which kinds use them.
const (
	fAt        = "at"
	fSavedAt   = "saved_at"
	fEvery     = "every"
	fStart     = "start"
	fStartDate = "start_date"
	fTime      = "time"
	fWeekdays  = "weekdays"
	fDay       = "day"
	fWeeks     = "weeks"
	fAppTypes  = "app_types"
	fTaskID    = "task_id"
	fStatus    = "status"
)

// kindFields lists the kind-specific fields of each kind, in JSON order.
var kindFields = map[Kind][]string{
	Manual:           nil,
	Once:             {fAt},
	Immediately:      {fSavedAt},
	EveryMinutes:     {fEvery, fStart},
	EveryHours:       {fEvery, fStart},
	EveryDays:        {fEvery, fStartDate, fTime},
	Weekly:           {fWeekdays, fTime},
	Monthly:          {fDay, fTime},
	NthWeekday:       {fWeeks, fWeekdays, fTime},
	OnUpdates:        nil,
	OnVirusOutbreak:  {fAppTypes},
	OnTaskCompletion: {fTaskID, fStatus},
}

func usesField(k Kind, f string) bool {
	for _, x := range kindFields[k] {
		if x == f {
			return true
		}
	}
	return false
}

func kindList() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// Validate checks s and returns nil, a *ValidationError, or
// ValidationErrors listing every problem. Field names are the JSON names
// ("every", "random_delay.interval_minutes"); the reason states the allowed
// values. Values are never clamped or fixed up. A field another kind uses
// must hold its zero value. All errors match ErrInvalid.
func (s Schedule) Validate() error {
	var es ValidationErrors
	add := func(e *ValidationError) { es = append(es, e) }
	rangeCheck := func(field string, v, lo, hi int) {
		if v < lo || v > hi {
			add(errs.Range(field, v, lo, hi))
		}
	}
	if !s.Kind.Known() {
		add(errs.Invalid("kind", truncate(string(s.Kind)), "must be one of "+kindList()))
		return es.Err()
	}
	k := s.Kind
	// Fields the kind does not use must be empty.
	unused := func(f string, zero bool) {
		if !zero && !usesField(k, f) {
			add(errs.Invalid(f, "", "must be empty for kind "+string(k)))
		}
	}
	unused(fAt, s.At.IsZero())
	unused(fSavedAt, s.SavedAt.IsZero())
	unused(fEvery, s.Every == 0)
	unused(fStart, s.Start.IsZero())
	unused(fStartDate, s.StartDate == Date{})
	unused(fTime, s.Time == 0)
	unused(fWeekdays, s.Weekdays == 0)
	unused(fDay, s.Day == 0)
	unused(fWeeks, s.Weeks == 0)
	unused(fAppTypes, s.AppTypes == 0)
	unused(fTaskID, s.TaskID == "")
	unused(fStatus, s.Status == "")

	instant := func(f string, t time.Time) {
		if t.IsZero() {
			add(errs.Invalid(f, "", "required: an instant in years 0001..9999"))
			return
		}
		if y := t.UTC().Year(); y < MinYear || y > MaxYear {
			add(errs.Invalid(f, strconv.Itoa(y), "must be an instant in years 0001..9999"))
		}
	}
	timeOfDay := func() {
		if !s.Time.Valid() {
			add(errs.Invalid(fTime, strconv.Itoa(int(s.Time)), "must be a time of day between 00:00:00 and 23:59:59"))
		}
	}
	weekdays := func() {
		if s.Weekdays == 0 || s.Weekdays&^AllWeekdays != 0 {
			add(errs.Invalid(fWeekdays, s.Weekdays.String(), "select at least one of monday … sunday"))
		}
	}
	switch k {
	case Once:
		instant(fAt, s.At)
	case Immediately:
		instant(fSavedAt, s.SavedAt)
	case EveryMinutes:
		rangeCheck(fEvery, s.Every, MinEveryMinutes, MaxEveryMinutes)
		instant(fStart, s.Start)
	case EveryHours:
		rangeCheck(fEvery, s.Every, MinEveryHours, MaxEveryHours)
		instant(fStart, s.Start)
	case EveryDays:
		rangeCheck(fEvery, s.Every, MinEveryDays, MaxEveryDays)
		if !s.StartDate.Valid() {
			add(errs.Invalid(fStartDate, s.StartDate.String(), dateReason))
		}
		timeOfDay()
	case Weekly:
		weekdays()
		timeOfDay()
	case Monthly:
		rangeCheck(fDay, s.Day, MinMonthDay, MaxMonthDay)
		timeOfDay()
	case NthWeekday:
		if s.Weeks == 0 || s.Weeks&^AllWeeks != 0 {
			add(errs.Invalid(fWeeks, s.Weeks.String(), "select at least one of first, second, third, fourth, last"))
		}
		weekdays()
		timeOfDay()
	case OnVirusOutbreak:
		if s.AppTypes == 0 || s.AppTypes&^AllAppTypes != 0 {
			add(errs.Invalid(fAppTypes, s.AppTypes.String(),
				"select at least one of workstations_file_servers, perimeter_defense, mail_systems"))
		}
	case OnTaskCompletion:
		if s.TaskID == "" || len(s.TaskID) > MaxTaskIDLength {
			add(errs.Invalid(fTaskID, truncate(s.TaskID),
				"required: the triggering task's id, 1 to "+strconv.Itoa(MaxTaskIDLength)+" bytes"))
		}
		if s.Status != Completed && s.Status != Failed {
			add(errs.Invalid(fStatus, truncate(string(s.Status)), "must be completed or failed"))
		}
	}

	switch s.RandomDelay.Mode {
	case DelayOff, DelayAutomatic, DelayInterval:
	default:
		add(errs.Invalid("random_delay.mode", truncate(string(s.RandomDelay.Mode)), "must be off, automatic or interval"))
	}
	rangeCheck("random_delay.interval_minutes", s.RandomDelay.IntervalMinutes, MinDelayMinutes, MaxDelayMinutes)
	rangeCheck("stop_after.minutes", s.StopAfter.Minutes, MinStopAfterMinutes, MaxStopAfterMinutes)
	rangeCheck("wake_on_lan.minutes", s.WakeOnLAN.Minutes, MinWakeMinutes, MaxWakeMinutes)
	return es.Err()
}
