package klt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/schedule"
)

// Public schedule fields of the task settings (see the package
// documentation, "Schedules", for the pages and the readings chosen).
const (
	keyFirstExec   = "TASKSCH_FIRST_EXECUTION_TIME"
	keyMSPeriod    = "TASKSCH_MS_PERIOD"
	keyEDHours     = "TASKSCH_ED_HOURS"
	keyEDMins      = "TASKSCH_ED_MINS"
	keyEDSecs      = "TASKSCH_ED_SECS"
	keyWDHours     = "TASKSCH_WD_HOURS"
	keyWDMins      = "TASKSCH_WD_MINS"
	keyWDSecs      = "TASKSCH_WD_SECS"
	keyWDDays      = "TASKSCH_WD_DAYS"
	keyEMDay       = "TASKSCH_EM_DAY"
	keyEMHours     = "TASKSCH_EM_HOURS"
	keyEMMins      = "TASKSCH_EM_MINS"
	keyEMSecs      = "TASKSCH_EM_SECS"
	keyEWDay       = "TASKSCH_EW_DAY"
	keyEWHours     = "TASKSCH_EW_HOURS"
	keyEWMins      = "TASKSCH_EW_MINS"
	keyEWSecs      = "TASKSCH_EW_SECS"
	keyStartDelta  = "TASK_START_DELTA"
	keyMaxExecTime = "TASK_MAX_EXEC_TIME"
	keyEventType   = "EVENT_TYPE"
)

// publicScheduleKeys are the task-level public schedule fields this
// version reads and writes (besides TASKSCH_TYPE and
// TASKSCH_RUN_MISSED_FLAG).
var publicScheduleKeys = []string{keyFirstExec, keyMSPeriod, keyEDHours, keyEDMins, keyEDSecs,
	keyWDHours, keyWDMins, keyWDSecs, keyWDDays, keyEMDay, keyEMHours, keyEMMins, keyEMSecs,
	keyEWDay, keyEWHours, keyEWMins, keyEWSecs,
	keyStartDelta, keyMaxExecTime, keyEventType}

// scheduleDetailKeys are the public schedule fields that belong to one
// schedule type (the others, TASK_START_DELTA, TASK_MAX_EXEC_TIME and
// EVENT_TYPE, are written for every type).
var scheduleDetailKeys = publicScheduleKeys[:len(publicScheduleKeys)-3]

// Open API schedule type ids (KSC Open API, "Schedule types").
const (
	schEmpty     = 0 // never run by the scheduler
	schMillis    = 1 // periodic, period in milliseconds (0: once)
	schEveryDay  = 2
	schOnceWeek  = 3 // once a week: TASKSCH_EW_DAY (1 Monday .. 7 Sunday)
	schMonth     = 4
	schSeconds   = 5 // periodic, period in seconds
	schWeekDays  = 6
	schMonthDays = 7
)

// ScheduleType returns the Open API schedule type id (TASKSCH_TYPE)
// written for a schedule kind: 1 (the milliseconds schedule) for once,
// immediately, every N minutes and every N hours; 2 for every N days; 6
// for days of the week; 4 for monthly; 7 for the N-th weekday; and 0 (the
// empty schedule, never started by the server's scheduler) for manual and
// the event kinds, which EVENT_TYPE names.
func ScheduleType(k schedule.Kind) int {
	switch k {
	case schedule.Once, schedule.Immediately, schedule.EveryMinutes, schedule.EveryHours:
		return schMillis
	case schedule.EveryDays:
		return schEveryDay
	case schedule.Weekly:
		return schWeekDays
	case schedule.Monthly:
		return schMonth
	case schedule.NthWeekday:
		return schMonthDays
	}
	return schEmpty
}

// dateTimeNode writes an instant as an Open API datetime (UTC, whole
// seconds; a schedule's instants are whole seconds).
func dateTimeNode(t time.Time) *node {
	return typed(typeDateTime, strNode(t.UTC().Truncate(time.Second).Format(time.RFC3339)))
}

// publicSchedule sets the public schedule fields of s on tp.
func publicSchedule(tp *node, s schedule.Schedule) {
	tp.set(keyScheduleType, intNode(int64(ScheduleType(s.Kind))))
	tp.set(keyRunMissed, boolNode(s.RunMissed))
	delta := int64(0)
	if s.RandomDelay.Mode == schedule.DelayInterval {
		delta = int64(s.RandomDelay.IntervalMinutes)
	}
	tp.set(keyStartDelta, intNode(delta))
	maxExec := int64(0)
	if s.StopAfter.Enabled {
		maxExec = int64(s.StopAfter.Minutes)
	}
	tp.set(keyMaxExecTime, intNode(maxExec))
	hms := func(h, m, sec string, t schedule.TimeOfDay) {
		tp.set(h, intNode(int64(t.Hour())))
		tp.set(m, intNode(int64(t.Minute())))
		tp.set(sec, intNode(int64(t.Second())))
	}
	event := ""
	switch s.Kind {
	case schedule.Once:
		tp.set(keyFirstExec, dateTimeNode(s.At))
		tp.set(keyMSPeriod, intNode(0))
	case schedule.Immediately:
		tp.set(keyFirstExec, dateTimeNode(s.SavedAt))
		tp.set(keyMSPeriod, intNode(0))
	case schedule.EveryMinutes:
		tp.set(keyFirstExec, dateTimeNode(s.Start))
		tp.set(keyMSPeriod, intNode(int64(s.Every)*60_000))
	case schedule.EveryHours:
		tp.set(keyFirstExec, dateTimeNode(s.Start))
		tp.set(keyMSPeriod, intNode(int64(s.Every)*3_600_000))
	case schedule.EveryDays:
		if s.StartDate.Valid() {
			d := s.StartDate
			tp.set(keyFirstExec, dateTimeNode(time.Date(d.Year, d.Month, d.Day, s.Time.Hour(), s.Time.Minute(), s.Time.Second(), 0, time.UTC)))
		}
		hms(keyEDHours, keyEDMins, keyEDSecs, s.Time)
	case schedule.Weekly:
		hms(keyWDHours, keyWDMins, keyWDSecs, s.Time)
		tp.set(keyWDDays, intNode(int64(s.Weekdays)<<1))
	case schedule.Monthly:
		tp.set(keyEMDay, intNode(int64(s.Day)))
		hms(keyEMHours, keyEMMins, keyEMSecs, s.Time)
	case schedule.OnUpdates, schedule.OnVirusOutbreak, schedule.OnTaskCompletion:
		event = string(s.Kind)
	}
	tp.set(keyEventType, strNode(event))
}

// pubInt reads an integer public field (paramInt or paramLong) within
// [lo, hi]; absent fields give def.
func (p *parser) pubInt(tp *node, key string, lo, hi, def int64) (int64, bool) {
	n := tp.get(key)
	if n == nil {
		return def, true
	}
	if n.kind == kObject {
		t, v, err := typedParts(n, p.path(key))
		if err != nil || t != typeLong {
			p.fail(errs.Invalid(p.path(key), "", "must be an integer (int or long)"))
			return 0, false
		}
		n = v
	}
	v, ok, isInt := integer(n.s)
	if n.kind != kNumber || !isInt || !ok {
		p.fail(errs.Invalid(p.path(key), "", "must be an integer (int or long)"))
		return 0, false
	}
	if v < lo || v > hi {
		p.fail(errs.Invalid(p.path(key), short(n.s), fmt.Sprintf("must be in %d..%d", lo, hi)))
		return 0, false
	}
	return v, true
}

func (p *parser) pubTime(tp *node, key string) (time.Time, bool) {
	n := tp.get(key)
	if n == nil {
		p.fail(errs.Invalid(p.path(key), "", "is required for this schedule type"))
		return time.Time{}, false
	}
	if n.kind == kObject {
		if t, v, err := typedParts(n, p.path(key)); err == nil && t == typeDateTime {
			if at, err := time.Parse(time.RFC3339, v.s); err == nil {
				return at.UTC(), true
			}
		}
	}
	p.fail(errs.Invalid(p.path(key), "", `must be an Open API datetime {"type": "datetime", "value": "YYYY-MM-DDTHH:MM:SSZ"}`))
	return time.Time{}, false
}

func (p *parser) pubClock(tp *node, h, m, s string) (schedule.TimeOfDay, bool) {
	hh, ok1 := p.pubInt(tp, h, 0, 23, 0)
	mm, ok2 := p.pubInt(tp, m, 0, 59, 0)
	ss, ok3 := p.pubInt(tp, s, 0, 59, 0)
	return schedule.Clock(int(hh), int(mm), int(ss)), ok1 && ok2 && ok3
}

// scheduleFromPublic builds the schedule of a document without
// TF_SCHEDULE (a task read from a server) from its public fields. It
// returns false, after a WarnScheduleNotConverted warning, for a schedule
// the public fields do not describe fully (the N-th weekday, an event this
// version does not know); the caller keeps those fields as opaque fields.
func (p *parser) scheduleFromPublic(tp *node, schType int64, runMissed, autoRand bool) (schedule.Schedule, bool, bool) {
	s := schedule.Default(schedule.Manual, time.Time{}, nil)
	ok := true
	event := ""
	if n := tp.get(keyEventType); n != nil {
		if n.kind != kString {
			p.fail(errs.Invalid(p.path(keyEventType), "", "must be a string"))
			return s, true, false
		}
		event = n.s
	}
	switch schType {
	case schEmpty:
		switch k := schedule.Kind(event); k {
		case "":
		case schedule.OnUpdates, schedule.OnVirusOutbreak:
			s = schedule.Default(k, time.Time{}, nil)
		default:
			p.warn(p.path(keyEventType), WarnScheduleNotConverted, fmt.Sprintf("the start event %q is not converted (a task completion needs its task in %s); the task is imported with a manual start and the schedule fields are kept as opaque fields", short(event), keyTFSchedule))
			return s, false, true
		}
	case schMillis, schSeconds:
		at, ok1 := p.pubTime(tp, keyFirstExec)
		period, ok2 := p.pubInt(tp, keyMSPeriod, 0, math.MaxInt64, 0)
		ok = ok1 && ok2
		switch {
		case !ok:
		case period == 0:
			s = schedule.Default(schedule.Once, at, nil)
		case period%3_600_000 == 0:
			s = schedule.Default(schedule.EveryHours, at, nil)
			s.Every = int(min(period/3_600_000, math.MaxInt32))
		case period%60_000 == 0:
			s = schedule.Default(schedule.EveryMinutes, at, nil)
			s.Every = int(min(period/60_000, math.MaxInt32))
		default:
			p.fail(errs.Invalid(p.path(keyMSPeriod), fmt.Sprint(period), "must be a whole number of minutes in milliseconds (taskfleet starts tasks every N minutes or hours)"))
			ok = false
		}
	case schEveryDay:
		s = schedule.Default(schedule.EveryDays, time.Time{}, nil)
		var ok1 bool
		s.Time, ok1 = p.pubClock(tp, keyEDHours, keyEDMins, keyEDSecs)
		s.StartDate = schedule.Date{Year: 2000, Month: 1, Day: 1}
		if tp.get(keyFirstExec) != nil {
			if at, ok2 := p.pubTime(tp, keyFirstExec); ok2 {
				s.StartDate = schedule.DateOf(at)
			} else {
				ok1 = false
			}
		}
		ok = ok1
	case schWeekDays:
		s = schedule.Default(schedule.Weekly, time.Time{}, nil)
		var ok1 bool
		s.Time, ok1 = p.pubClock(tp, keyWDHours, keyWDMins, keyWDSecs)
		mask, ok2 := p.pubInt(tp, keyWDDays, 2, 0xFE, 0)
		if ok2 && mask&1 != 0 {
			p.fail(errs.Invalid(p.path(keyWDDays), fmt.Sprint(mask), "bit 0 is not used (bits 1..7 are Sunday..Saturday)"))
			ok2 = false
		}
		s.Weekdays = schedule.Weekdays(mask >> 1)
		ok = ok1 && ok2
	case schOnceWeek:
		// Read as days of the week with one day; Export writes type 6 for
		// a task of its own, and the server's type 3 fields back while
		// the schedule is the one they describe (addExtra).
		s = schedule.Default(schedule.Weekly, time.Time{}, nil)
		var ok1 bool
		s.Time, ok1 = p.pubClock(tp, keyEWHours, keyEWMins, keyEWSecs)
		day, ok2 := p.pubInt(tp, keyEWDay, 1, 7, 0)
		if ok2 && tp.get(keyEWDay) == nil {
			p.fail(errs.Invalid(p.path(keyEWDay), "", "is required for schedule type 3 (1 Monday .. 7 Sunday)"))
			ok2 = false
		}
		s.Weekdays = schedule.NewWeekdays(time.Weekday(day % 7))
		ok = ok1 && ok2
	case schMonth:
		s = schedule.Default(schedule.Monthly, time.Time{}, nil)
		day, ok1 := p.pubInt(tp, keyEMDay, schedule.MinMonthDay, schedule.MaxMonthDay, schedule.DefaultMonthDay)
		var ok2 bool
		s.Time, ok2 = p.pubClock(tp, keyEMHours, keyEMMins, keyEMSecs)
		s.Day = int(day)
		ok = ok1 && ok2
	default:
		p.warn(p.path(keyScheduleType), WarnScheduleNotConverted, fmt.Sprintf("the Open API schedule type %d has no public detail fields this version reads; the task is imported with a manual start and the schedule fields are kept as opaque fields", schType))
		return s, false, true
	}
	s.RunMissed = runMissed
	if autoRand {
		s.RandomDelay.Mode = schedule.DelayAutomatic
	}
	if d, ok1 := p.pubInt(tp, keyStartDelta, 0, schedule.MaxDelayMinutes, 0); ok1 && d > 0 {
		if autoRand {
			p.fail(errs.Invalid(p.path(keyStartDelta), fmt.Sprint(d), "must be 0 when "+keyAutoRandom+" is on"))
			ok = false
		}
		s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayInterval, IntervalMinutes: int(d)}
	} else if !ok1 {
		ok = false
	}
	if m, ok1 := p.pubInt(tp, keyMaxExecTime, 0, schedule.MaxStopAfterMinutes, 0); ok1 && m > 0 {
		s.StopAfter = schedule.Limit{Enabled: true, Minutes: int(m)}
	} else if !ok1 {
		ok = false
	}
	if ok {
		if err := s.Validate(); err != nil {
			p.fail(errs.Prefix(p.path(keyScheduleType), err))
			ok = false
		}
	}
	return s, true, ok
}

// describesSchedule reports whether the public schedule fields of fields
// (a server's, kept verbatim) read as the schedule s of the task: only
// then does Export write them instead of its own.
func describesSchedule(fields *node, s schedule.Schedule) bool {
	tn := fields.get(keyScheduleType)
	if tn == nil || tn.kind != kNumber {
		return false
	}
	schType, fits, isInt := integer(tn.s)
	if !fits || !isInt {
		return false
	}
	q := &parser{imp: &Import{}}
	autoRand := s.RandomDelay.Mode == schedule.DelayAutomatic
	got, converted, ok := q.scheduleFromPublic(fields, schType, s.RunMissed, autoRand)
	if !ok || len(q.bad) > 0 {
		return false
	}
	if !converted {
		got = schedule.Default(schedule.Manual, time.Time{}, nil)
		got.RunMissed = s.RunMissed
		if autoRand {
			got.RandomDelay.Mode = schedule.DelayAutomatic
		}
	}
	a, err1 := json.Marshal(got)
	b, err2 := json.Marshal(s)
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}
