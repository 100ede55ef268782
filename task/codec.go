package task

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/taskfleet/taskfleet/storage"
)

// taskJSON is the stored form of a Task: Settings stay raw until the
// registered type decodes them.
type taskJSON struct {
	Task
	Settings json.RawMessage `json:"settings"`
}

// encode returns the JSON body of t.
func encode(t *Task) ([]byte, error) {
	var raw json.RawMessage
	switch s := t.Settings.(type) {
	case nil:
		raw = json.RawMessage("null")
	case json.RawMessage:
		raw = s
	default:
		b, err := json.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("task: encode settings: %w", err)
		}
		raw = b
	}
	if len(raw) > MaxSettingsBytes {
		return nil, &ValidationError{Field: "settings", Reason: fmt.Sprintf("must encode to at most %d bytes", MaxSettingsBytes)}
	}
	c := *t
	c.Settings = nil
	return json.Marshal(taskJSON{Task: c, Settings: raw})
}

// ErrUndecodable matches a *DecodeError: a stored task that cannot be
// decoded.
var ErrUndecodable = errors.New("stored task cannot be decoded")

// DecodeError reports a stored task that cannot be decoded: its settings
// no longer fit its registered type (a field changed type, the stored
// JSON is damaged) and no Migrate hook of the type repaired them, or the
// stored body is not a task at all. Get returns it (after the read
// permission check), List reports such tasks in ListResult.Undecodable
// instead of failing, Delete removes them, and the engine skips them.
// errors.Is(err, ErrUndecodable) matches it. It never quotes the stored
// settings (they may hold secrets).
type DecodeError struct {
	// TaskID, Name, Application, Type and Revision are what the store
	// knows of the task without decoding it.
	TaskID      string
	Name        string
	Application string
	Type        string
	Revision    int64
	// Reason says what could not be decoded.
	Reason string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("task %s (%q, %s %s, revision %d): stored task cannot be decoded: %s", e.TaskID, e.Name, e.Application, e.Type, e.Revision, e.Reason)
}

// Is makes errors.Is(err, ErrUndecodable) true.
func (e *DecodeError) Is(target error) bool { return target == ErrUndecodable }

// decodeError turns a decode failure of rec into a *DecodeError.
func (m *Manager) decodeError(rec *storage.TaskRecord, err error) *DecodeError {
	var de *DecodeError
	if errors.As(err, &de) {
		err = errors.New(de.Reason)
	}
	return &DecodeError{TaskID: rec.ID, Name: rec.Name, Application: rec.Application, Type: rec.TaskType, Revision: rec.Revision, Reason: err.Error()}
}

// decode reads a body written by encode, decoding the settings into the
// registered type when there is one. Stored settings are decoded
// leniently: fields the type no longer has are ignored (forward
// compatibility), and the type's Migrate hook sees them first when the
// task was saved by another application version.
func (m *Manager) decode(body []byte) (*Task, error) {
	t, _, err := m.decodeParts(body)
	return t, err
}

// decodeParts is decode that also returns what could be read of a task
// whose settings cannot be decoded (nil when the body itself cannot be),
// for the permission checks of Get and Delete.
func (m *Manager) decodeParts(body []byte) (t *Task, partial *Task, err error) {
	var tj taskJSON
	if err := json.Unmarshal(body, &tj); err != nil {
		return nil, nil, &DecodeError{Reason: "the stored body is not a task: " + err.Error()}
	}
	out := tj.Task
	out.Settings = nil
	if len(tj.Settings) > 0 && !bytes.Equal(tj.Settings, []byte("null")) {
		if reg := m.reg.lookup(out.Application, out.Type); reg != nil && reg.settingsType != nil {
			raw := []byte(tj.Settings)
			if reg.Migrate != nil && out.ApplicationVersion != reg.ApplicationVersion {
				mig, err := reg.Migrate(out.ApplicationVersion, bytes.Clone(raw))
				if err != nil {
					return nil, &out, &DecodeError{Reason: fmt.Sprintf("the settings of application version %q cannot be migrated: %v", out.ApplicationVersion, err)}
				}
				raw = mig
			}
			v, err := reg.decodeSettings(raw, false)
			if err != nil {
				return nil, &out, &DecodeError{Reason: "the stored settings do not fit " + reg.settingsType.String() + ": " + jsonReason(err)}
			}
			out.Settings = v
		} else {
			out.Settings = rawSettings(bytes.Clone(tj.Settings))
		}
	}
	return &out, nil, nil
}

// jsonReason returns a decode error without any value it might quote.
func jsonReason(err error) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return fmt.Sprintf("the field %q holds a JSON %s where %s is needed", ute.Field, ute.Value, ute.Type)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at offset %d", se.Offset)
	}
	return "the JSON does not decode"
}

// uniqueName is the key that makes names unique: per device for local
// tasks, across all other tasks otherwise.
func uniqueName(t *Task) string {
	fold := strings.ToLower(t.Name)
	if t.Kind() == Local {
		return "device:" + string(t.Scope.Device) + "/" + fold
	}
	return "task/" + fold
}

func toRecord(t *Task, body []byte) storage.TaskRecord {
	rec := storage.TaskRecord{
		ID:          t.ID,
		Name:        t.Name,
		SearchName:  strings.ToLower(t.Name),
		UniqueName:  uniqueName(t),
		Application: t.Application,
		TaskType:    t.Type,
		Kind:        string(t.Kind()),
		Revision:    t.Revision,
		Suspended:   t.Suspended,
		CreatedAt:   storage.UTC(t.CreatedAt),
		UpdatedAt:   storage.UTC(t.UpdatedAt),
		Body:        body,
	}
	switch t.Kind() {
	case Group:
		rec.GroupID = string(t.Scope.Group)
	case Local:
		rec.DeviceID = string(t.Scope.Device)
	}
	return rec
}
