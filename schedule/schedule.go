package schedule

import (
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// The shared error vocabulary, re-exported so callers can match errors from
// this package with errors.Is / errors.As against schedule's own names.
type (
	ValidationError  = errs.ValidationError
	ValidationErrors = errs.ValidationErrors
)

// ErrInvalid matches every validation or decoding error of this package.
var ErrInvalid = errs.ErrInvalid

// Kind is how a task is started. Its JSON value is the string.
type Kind string

// The start kinds of the product documentation ("Start task" setting).
const (
	// Manual: the task never starts by itself. The default.
	Manual Kind = "manual"
	// Once: the task starts once, at At.
	Once Kind = "once"
	// Immediately: the task starts once, at the instant its settings were
	// saved (SavedAt, set by the task manager on every save).
	Immediately Kind = "immediately"
	// EveryMinutes: every Every minutes from Start (absolute time).
	EveryMinutes Kind = "every_minutes"
	// EveryHours: every Every hours from Start (absolute time).
	EveryHours Kind = "every_hours"
	// EveryDays: every Every local calendar days from StartDate, at Time.
	EveryDays Kind = "every_days"
	// Weekly ("By days of week"): on each of Weekdays at Time.
	Weekly Kind = "weekly"
	// Monthly: on day Day of each month at Time; day 29–31 falls on the last
	// day of shorter months.
	Monthly Kind = "monthly"
	// NthWeekday ("Every month on specified days of selected weeks"): on
	// each selected weekday of each selected week of the month, at Time.
	NthWeekday Kind = "nth_weekday"
	// OnUpdates: when new updates are downloaded to the repository (event).
	OnUpdates Kind = "on_updates_downloaded"
	// OnVirusOutbreak: on a virus-outbreak event of one of AppTypes (event).
	OnVirusOutbreak Kind = "on_virus_outbreak"
	// OnTaskCompletion: when task TaskID completes with Status (event).
	OnTaskCompletion Kind = "on_task_completion"
)

// Kinds lists every kind in the product documentation's order.
var Kinds = []Kind{Manual, Once, Immediately, EveryMinutes, EveryHours, EveryDays, Weekly, Monthly,
	NthWeekday, OnUpdates, OnVirusOutbreak, OnTaskCompletion}

// Known reports whether k is one of Kinds.
func (k Kind) Known() bool {
	for _, x := range Kinds {
		if k == x {
			return true
		}
	}
	return false
}

// Defaults and bounds. Every value a Schedule carries has a named default
// (the product documentation's) and an inclusive range that Validate enforces.
const (
	DefaultEveryMinutes = 30 // Every N minutes: the product documentation's default
	MinEveryMinutes     = 1
	MaxEveryMinutes     = 1440 // one day

	DefaultEveryHours = 6 // Every N hours: the product documentation's default
	MinEveryHours     = 1
	MaxEveryHours     = 744 // 31 days

	DefaultEveryDays = 1 // Every N days: the product documentation's default
	MinEveryDays     = 1
	MaxEveryDays     = 366 // one leap year

	DefaultMonthDay = 1 // Monthly: the first day of each month
	MinMonthDay     = 1
	MaxMonthDay     = 31 // 29–31 fall on the last day of shorter months

	// DefaultWeekday is the day of a new Weekly schedule (Friday).
	DefaultWeekday = time.Friday
	// DefaultWeeklyTime is the time of a new Weekly schedule (18:00:00).
	DefaultWeeklyTime TimeOfDay = 18 * 3600
	// DefaultNthWeekdayTime is the time of a new NthWeekday schedule.
	DefaultNthWeekdayTime TimeOfDay = 18 * 3600

	// Randomized delay "within an interval of" N minutes.
	DefaultDelayMinutes = 1
	MinDelayMinutes     = 1
	MaxDelayMinutes     = 1440

	// "Stop the task if it runs longer than" N minutes.
	DefaultStopAfterMinutes = 120
	MinStopAfterMinutes     = 1
	MaxStopAfterMinutes     = 10080 // one week

	// Wake-on-LAN N minutes before the start.
	DefaultWakeMinutes = 5
	MinWakeMinutes     = 1
	MaxWakeMinutes     = 60

	// MaxTaskIDLength bounds OnTaskCompletion's TaskID.
	MaxTaskIDLength = 256
)

// CompletionStatus is the outcome of the triggering task that starts an
// OnTaskCompletion schedule.
type CompletionStatus string

// The statuses the product documentation offers: "Completed successfully" and "Failed".
const (
	Completed CompletionStatus = "completed"
	Failed    CompletionStatus = "failed"
)

// DelayMode selects the randomized start delay.
type DelayMode string

// The randomized delay modes.
const (
	// DelayOff: the task starts on every device at the scheduled instant.
	DelayOff DelayMode = "off"
	// DelayAutomatic: the window is AutoWindow(number of devices in scope).
	DelayAutomatic DelayMode = "automatic"
	// DelayInterval: the window is RandomDelay.IntervalMinutes.
	DelayInterval DelayMode = "interval"
)

// RandomDelay spreads a task's start over the devices: each device starts at
// the scheduled instant plus RandomOffset(window, …). IntervalMinutes is kept
// (and validated) even when Mode is not DelayInterval, so switching the mode
// back restores the administrator's value.
type RandomDelay struct {
	// Mode is off, automatic (a window from the fleet's size) or a fixed
	// interval.
	Mode DelayMode `json:"mode"`
	// IntervalMinutes is the window of DelayInterval.
	IntervalMinutes int `json:"interval_minutes"`
}

// Limit is an option that is off or on with a number of minutes ("Stop the
// task if it runs longer than", "Wake-on-LAN before start"). Minutes is kept
// and validated while the option is off.
type Limit struct {
	// Enabled turns the option on.
	Enabled bool `json:"enabled"`
	// Minutes is the option's number of minutes.
	Minutes int `json:"minutes"`
}

// Schedule is a task's start setting plus the advanced scheduling settings
// that travel with it. Only the fields of its Kind may be set; Validate
// rejects values in fields another kind uses, so a valid Schedule survives
// JSON unchanged. Build one with Default and change what you need.
type Schedule struct {
	Kind Kind

	// At is the instant of a Once schedule.
	At time.Time
	// SavedAt is the instant an Immediately schedule's settings were saved;
	// the task manager sets it on every save. The schedule fires once, then.
	SavedAt time.Time
	// Every is N of EveryMinutes, EveryHours and EveryDays.
	Every int
	// Start is the first activation of EveryMinutes and EveryHours; later
	// activations are Start + k·N minutes/hours in absolute time.
	Start time.Time
	// StartDate is the local date of EveryDays' first activation; it fires
	// on StartDate + k·N local calendar days.
	StartDate Date
	// Time is the local wall-clock time of EveryDays, Weekly, Monthly and
	// NthWeekday.
	Time TimeOfDay
	// Weekdays are the days of Weekly and NthWeekday.
	Weekdays Weekdays
	// Day is Monthly's day of the month, MinMonthDay..MaxMonthDay.
	Day int
	// Weeks are NthWeekday's weeks of the month.
	Weeks Weeks
	// AppTypes are OnVirusOutbreak's application types.
	AppTypes AppTypes
	// TaskID and Status are OnTaskCompletion's triggering task and outcome.
	TaskID string
	Status CompletionStatus

	// RunMissed: start a missed activation when the device is next seen
	// (the engine's concern; see Between). Default off.
	RunMissed bool
	// RandomDelay: randomized start delay. Default off, interval 1 minute.
	RandomDelay RandomDelay
	// StopAfter: stop the task when it runs longer than Minutes. Default
	// off, 120 minutes.
	StopAfter Limit
	// WakeOnLAN: wake devices Minutes before the start. Default off, 5
	// minutes.
	WakeOnLAN Limit
	// ShutdownAfter: shut the devices down after the task completes.
	// Default off.
	ShutdownAfter bool
}

// Default returns the product documentation's default schedule of kind for a task created at
// now, whose creator sees local time in loc (nil means UTC). Values that
// the product documentation ties to "the current system time" (Once's At, the Start of
// EveryMinutes/EveryHours, EveryDays' StartDate and Time, Monthly's Time)
// are taken from now, truncated to whole seconds; instants are UTC.
//
// NthWeekday's default selects no weeks and no weekdays, as in the product documentation;
// Validate rejects it until at least one of each is selected.
// OnTaskCompletion's default has no TaskID; Validate requires one.
// An unknown kind yields a Schedule that Validate rejects.
func Default(kind Kind, now time.Time, loc *time.Location) Schedule {
	if loc == nil {
		loc = time.UTC
	}
	now = now.Truncate(time.Second)
	s := staticDefault(kind)
	local := now.In(loc)
	clock := Clock(local.Clock())
	switch kind {
	case Once:
		s.At = now.UTC()
	case Immediately:
		s.SavedAt = now.UTC()
	case EveryMinutes, EveryHours:
		s.Start = now.UTC()
	case EveryDays:
		s.StartDate = DateOf(local)
		s.Time = clock
	case Monthly:
		s.Time = clock
	}
	return s
}

// staticDefault holds the defaults that do not depend on the creation time;
// JSON decoding starts from it.
func staticDefault(kind Kind) Schedule {
	s := Schedule{
		Kind:        kind,
		RandomDelay: RandomDelay{Mode: DelayOff, IntervalMinutes: DefaultDelayMinutes},
		StopAfter:   Limit{Minutes: DefaultStopAfterMinutes},
		WakeOnLAN:   Limit{Minutes: DefaultWakeMinutes},
	}
	switch kind {
	case EveryMinutes:
		s.Every = DefaultEveryMinutes
	case EveryHours:
		s.Every = DefaultEveryHours
	case EveryDays:
		s.Every = DefaultEveryDays
	case Weekly:
		s.Weekdays = NewWeekdays(DefaultWeekday)
		s.Time = DefaultWeeklyTime
	case Monthly:
		s.Day = DefaultMonthDay
	case NthWeekday:
		s.Time = DefaultNthWeekdayTime
	case OnVirusOutbreak:
		s.AppTypes = AllAppTypes
	case OnTaskCompletion:
		s.Status = Completed
	}
	return s
}

// UsesLocalTime reports whether s is a wall-clock rule evaluated in a
// zone (the product documentation's table: Every N days, By days of week, Monthly, N-th
// weekday). Once, EveryMinutes and EveryHours are absolute instants; the
// other kinds are triggers.
func (s Schedule) UsesLocalTime() bool {
	switch s.Kind {
	case EveryDays, Weekly, Monthly, NthWeekday:
		return true
	}
	return false
}

// Timed reports whether s has activations that Next computes: every kind
// except Manual and the event kinds (OnUpdates, OnVirusOutbreak,
// OnTaskCompletion), which the engine starts on request or on an event.
// Immediately is timed: it fires once, at SavedAt.
func (s Schedule) Timed() bool {
	switch s.Kind {
	case Once, Immediately, EveryMinutes, EveryHours, EveryDays, Weekly, Monthly, NthWeekday:
		return true
	}
	return false
}

// Event reports whether s starts on an event (OnUpdates, OnVirusOutbreak,
// OnTaskCompletion).
func (s Schedule) Event() bool {
	switch s.Kind {
	case OnUpdates, OnVirusOutbreak, OnTaskCompletion:
		return true
	}
	return false
}

// Location returns the zone the engine must pass to Next and Between for a
// task with this schedule. The product documentation: tasks for device selections run on
// the Administration Server and follow the server's local time; every
// other task runs on the device and follows the device's local time. So
// it returns server when runsOnServer (device-selection tasks, server
// tasks) and device otherwise; a nil choice means UTC. For kinds that do
// not use local time the zone only decides how results are displayed.
func (s Schedule) Location(device, server *time.Location, runsOnServer bool) *time.Location {
	loc := device
	if runsOnServer {
		loc = server
	}
	if loc == nil {
		return time.UTC
	}
	return loc
}

// MaxRunDuration returns the "stop if runs longer than" limit and whether
// it is enabled.
func (s Schedule) MaxRunDuration() (time.Duration, bool) {
	return time.Duration(s.StopAfter.Minutes) * time.Minute, s.StopAfter.Enabled
}

// WakeLead returns how long before a start devices are woken with
// Wake-on-LAN, and whether that is enabled.
func (s Schedule) WakeLead() (time.Duration, bool) {
	return time.Duration(s.WakeOnLAN.Minutes) * time.Minute, s.WakeOnLAN.Enabled
}

// DelayWindow returns the randomized-delay window for a start on devices
// devices: 0 when the delay is off, AutoWindow(devices) when automatic, and
// the interval otherwise. Each device's offset is
// RandomOffset(window, taskID, deviceID, revision).
func (s Schedule) DelayWindow(devices int) time.Duration {
	switch s.RandomDelay.Mode {
	case DelayAutomatic:
		return AutoWindow(devices)
	case DelayInterval:
		return time.Duration(s.RandomDelay.IntervalMinutes) * time.Minute
	}
	return 0
}
