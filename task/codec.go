package task

import (
	"bytes"
	"encoding/json"
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

// decode reads a body written by encode, decoding the settings into the
// registered type when there is one.
func (m *Manager) decode(body []byte) (*Task, error) {
	var tj taskJSON
	if err := json.Unmarshal(body, &tj); err != nil {
		return nil, fmt.Errorf("task: stored task cannot be decoded: %w", err)
	}
	t := tj.Task
	t.Settings = nil
	if len(tj.Settings) > 0 && !bytes.Equal(tj.Settings, []byte("null")) {
		if reg := m.reg.lookup(t.Application, t.Type); reg != nil && reg.settingsType != nil {
			v, err := reg.decodeSettings(tj.Settings)
			if err != nil {
				return nil, fmt.Errorf("task %s: stored settings cannot be decoded: %w", t.ID, err)
			}
			t.Settings = v
		} else {
			t.Settings = rawSettings(bytes.Clone(tj.Settings))
		}
	}
	return &t, nil
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
