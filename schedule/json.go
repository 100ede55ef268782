package schedule

import (
	"bytes"
	"encoding/json"
	"slices"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// wire is the JSON shape of a Schedule (see the package doc, "JSON
// encoding"). Kind-specific fields are pointers so that exactly the fields
// of the kind are written.
type wire struct {
	Kind          Kind              `json:"kind"`
	At            *time.Time        `json:"at,omitempty"`
	SavedAt       *time.Time        `json:"saved_at,omitempty"`
	Every         *int              `json:"every,omitempty"`
	Start         *time.Time        `json:"start,omitempty"`
	StartDate     *Date             `json:"start_date,omitempty"`
	Weeks         *Weeks            `json:"weeks,omitempty"`
	Weekdays      *Weekdays         `json:"weekdays,omitempty"`
	Day           *int              `json:"day,omitempty"`
	Time          *TimeOfDay        `json:"time,omitempty"`
	AppTypes      *AppTypes         `json:"app_types,omitempty"`
	TaskID        *string           `json:"task_id,omitempty"`
	Status        *CompletionStatus `json:"status,omitempty"`
	RunMissed     bool              `json:"run_missed"`
	RandomDelay   RandomDelay       `json:"random_delay"`
	StopAfter     Limit             `json:"stop_after"`
	WakeOnLAN     Limit             `json:"wake_on_lan"`
	ShutdownAfter bool              `json:"shutdown_after"`
}

// MarshalJSON writes kind, the fields of the kind, and every advanced
// setting. Instants are written in UTC (RFC 3339, fractional seconds only
// when present). Fields of other kinds are not written, so encode only
// valid schedules (Validate) if the result must decode again.
func (s Schedule) MarshalJSON() ([]byte, error) {
	w := wire{
		Kind:          s.Kind,
		RunMissed:     s.RunMissed,
		RandomDelay:   s.RandomDelay,
		StopAfter:     s.StopAfter,
		WakeOnLAN:     s.WakeOnLAN,
		ShutdownAfter: s.ShutdownAfter,
	}
	utc := func(t time.Time) *time.Time { u := t.UTC(); return &u }
	for _, f := range kindFields[s.Kind] {
		switch f {
		case fAt:
			w.At = utc(s.At)
		case fSavedAt:
			w.SavedAt = utc(s.SavedAt)
		case fEvery:
			w.Every = &s.Every
		case fStart:
			w.Start = utc(s.Start)
		case fStartDate:
			w.StartDate = &s.StartDate
		case fTime:
			w.Time = &s.Time
		case fWeekdays:
			w.Weekdays = &s.Weekdays
		case fDay:
			w.Day = &s.Day
		case fWeeks:
			w.Weeks = &s.Weeks
		case fAppTypes:
			w.AppTypes = &s.AppTypes
		case fTaskID:
			w.TaskID = &s.TaskID
		case fStatus:
			w.Status = &s.Status
		}
	}
	b, err := json.Marshal(w)
	if err != nil {
		// The only failures are invalid TimeOfDay, Date or set values.
		return nil, errs.Invalid("", "", "cannot encode an invalid schedule; call Validate: "+err.Error())
	}
	return b, nil
}

// UnmarshalJSON decodes strictly and then validates, so a decoded Schedule
// is always valid. Unknown fields, fields of another kind, null, wrong JSON
// types and bad values are rejected with a *ValidationError (or
// ValidationErrors) naming the field. A field that is absent takes the
// default Default would give it when that default does not depend on the
// creation time; the instants (at, saved_at, start), every_days' start_date
// and the time of every_days and monthly are required.
func (s *Schedule) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return errs.Invalid("", "", "a schedule must be a JSON object")
	}
	var kind Kind
	raw, ok := m["kind"]
	if !ok {
		return errs.Invalid("kind", "", "required: one of "+kindList())
	}
	if err := decodeString(raw, (*string)(&kind)); err != nil {
		return errs.Prefix("kind", err)
	}
	if !kind.Known() {
		return errs.Invalid("kind", truncate(string(kind)), "must be one of "+kindList())
	}
	out := staticDefault(kind)
	var es ValidationErrors
	addErr := func(field string, err error) {
		switch e := errs.Prefix(field, err).(type) {
		case *ValidationError:
			es = append(es, e)
		case ValidationErrors:
			es = append(es, e...)
		default:
			es = append(es, errs.Invalid(field, "", err.Error()))
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		raw := m[key]
		var err error
		switch {
		case key == "kind":
			continue
		case usesField(kind, key):
			err = decodeKindField(&out, key, raw)
		case key == "run_missed":
			err = decodeBool(raw, &out.RunMissed)
		case key == "shutdown_after":
			err = decodeBool(raw, &out.ShutdownAfter)
		case key == "random_delay":
			err = decodeObject(raw, map[string]func(json.RawMessage) error{
				"mode": func(r json.RawMessage) error {
					return decodeString(r, (*string)(&out.RandomDelay.Mode))
				},
				"interval_minutes": func(r json.RawMessage) error { return decodeInt(r, &out.RandomDelay.IntervalMinutes) },
			})
		case key == "stop_after":
			err = decodeLimit(raw, &out.StopAfter)
		case key == "wake_on_lan":
			err = decodeLimit(raw, &out.WakeOnLAN)
		case isKindField(key):
			err = errs.Invalid("", "", "not used by kind "+string(kind))
		default:
			err = errs.Invalid("", "", "unknown field")
		}
		if err != nil {
			addErr(key, err)
		}
	}
	for _, f := range []string{fAt, fSavedAt, fStart, fStartDate} {
		if _, ok := m[f]; !ok && usesField(kind, f) {
			es = append(es, errs.Invalid(f, "", "required"))
		}
	}
	if _, ok := m[fTime]; !ok && (kind == EveryDays || kind == Monthly) {
		es = append(es, errs.Invalid(fTime, "", "required"))
	}
	if len(es) > 0 {
		return es.Err()
	}
	if err := out.Validate(); err != nil {
		return err
	}
	*s = out
	return nil
}

func isKindField(key string) bool {
	for _, fs := range kindFields {
		if slices.Contains(fs, key) {
			return true
		}
	}
	return false
}

func decodeKindField(s *Schedule, key string, raw json.RawMessage) error {
	switch key {
	case fAt:
		return decodeInstant(raw, &s.At)
	case fSavedAt:
		return decodeInstant(raw, &s.SavedAt)
	case fStart:
		return decodeInstant(raw, &s.Start)
	case fEvery:
		return decodeInt(raw, &s.Every)
	case fDay:
		return decodeInt(raw, &s.Day)
	case fStartDate:
		return decodeText(raw, &s.StartDate)
	case fTime:
		return decodeText(raw, &s.Time)
	case fWeekdays:
		return decodeNonNull(raw, &s.Weekdays)
	case fWeeks:
		return decodeNonNull(raw, &s.Weeks)
	case fAppTypes:
		return decodeNonNull(raw, &s.AppTypes)
	case fTaskID:
		return decodeString(raw, &s.TaskID)
	case fStatus:
		return decodeString(raw, (*string)(&s.Status))
	}
	return errs.Invalid("", "", "unknown field")
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

func decodeNonNull(raw json.RawMessage, v json.Unmarshaler) error {
	if isNull(raw) {
		return errs.Invalid("", "null", "must not be null")
	}
	return v.UnmarshalJSON(raw)
}

func decodeString(raw json.RawMessage, dst *string) error {
	if isNull(raw) || json.Unmarshal(raw, dst) != nil {
		return errs.Invalid("", "", "must be a JSON string")
	}
	return nil
}

func decodeBool(raw json.RawMessage, dst *bool) error {
	if isNull(raw) || json.Unmarshal(raw, dst) != nil {
		return errs.Invalid("", "", "must be true or false")
	}
	return nil
}

func decodeInt(raw json.RawMessage, dst *int) error {
	var v int32 // every bound fits; larger numbers are errors, not wrap-arounds
	if isNull(raw) || json.Unmarshal(raw, &v) != nil {
		return errs.Invalid("", truncate(string(raw)), "must be an integer")
	}
	*dst = int(v)
	return nil
}

type textUnmarshaler interface{ UnmarshalText([]byte) error }

func decodeText(raw json.RawMessage, dst textUnmarshaler) error {
	var str string
	if isNull(raw) || json.Unmarshal(raw, &str) != nil {
		return errs.Invalid("", "", "must be a JSON string")
	}
	return dst.UnmarshalText([]byte(str))
}

func decodeInstant(raw json.RawMessage, dst *time.Time) error {
	var str string
	if isNull(raw) || json.Unmarshal(raw, &str) != nil {
		return errs.Invalid("", "", "must be an RFC 3339 instant string")
	}
	t, err := time.Parse(time.RFC3339Nano, str)
	if err != nil {
		return errs.Invalid("", truncate(str), "must be an RFC 3339 instant such as 2026-11-22T18:00:00Z")
	}
	*dst = t.UTC()
	return nil
}

func decodeLimit(raw json.RawMessage, dst *Limit) error {
	return decodeObject(raw, map[string]func(json.RawMessage) error{
		"enabled": func(r json.RawMessage) error { return decodeBool(r, &dst.Enabled) },
		"minutes": func(r json.RawMessage) error { return decodeInt(r, &dst.Minutes) },
	})
}

// decodeObject decodes a JSON object field by field; absent members keep
// their current (default) value, unknown members are errors.
func decodeObject(raw json.RawMessage, fields map[string]func(json.RawMessage) error) error {
	var m map[string]json.RawMessage
	if isNull(raw) || json.Unmarshal(raw, &m) != nil || m == nil {
		return errs.Invalid("", "", "must be a JSON object")
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var es ValidationErrors
	for _, k := range keys {
		f, ok := fields[k]
		var err error
		if !ok {
			err = errs.Invalid("", "", "unknown field")
		} else {
			err = f(m[k])
		}
		if err != nil {
			switch e := errs.Prefix(k, err).(type) {
			case *ValidationError:
				es = append(es, e)
			case ValidationErrors:
				es = append(es, e...)
			}
		}
	}
	return es.Err()
}
