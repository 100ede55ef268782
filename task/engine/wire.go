package engine

import (
	"bytes"
	"encoding/json"

	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

// The device boundary's conversions between the task model and the wire
// protocol (package task/transport) live in this file only: a device is
// sent a transport.TaskSpec, never a task.Task, and a device user's edit
// comes back as a TaskSpec of which only deviceEditable is taken.

// taskFieldsOnWire says, for every field of task.Task, whether a device
// is sent it (in a transport.TaskSpec) and why not when it is not. A test
// fails when task.Task gains a field this list does not name, so that a
// new field a device needs cannot be forgotten on the wire.
var taskFieldsOnWire = map[string]string{
	"ID":                 "",
	"Name":               "",
	"Description":        "",
	"Application":        "",
	"ApplicationVersion": "",
	"Type":               "",
	"Scope":              "only its kind: which groups, devices or selection it names stays on the server",
	"Schedule":           "",
	"Account":            "",
	"Restart":            "",
	"Notifications":      "only History and DeviceEventLog: retention and e-mail are the server's",
	"Security":           "not sent: the access list is the server's",
	"Settings":           "",
	"Suspended":          "",
	"Opaque":             "not sent: imported vendor fields are the server's",
	"Revision":           "",
	"SettingsRevision":   "",
	"CreatedAt":          "not sent: audit data of the server",
	"CreatedBy":          "not sent: audit data of the server",
	"UpdatedAt":          "not sent: audit data of the server",
	"UpdatedBy":          "not sent: audit data of the server",
}

// specOf is what a device is sent of t. Settings become their JSON form
// (the device does not know the registry); an error means they do not
// encode, which a stored task's settings always do.
func specOf(t *task.Task) (transport.TaskSpec, error) {
	sp := transport.TaskSpec{
		ID: t.ID, Name: t.Name, Description: t.Description,
		Application: t.Application, ApplicationVersion: t.ApplicationVersion, Type: t.Type,
		Scope:    transport.ScopeSpec{Kind: transport.ScopeKind(t.Scope.Kind)},
		Schedule: t.Schedule, Account: t.Account, Restart: t.Restart,
		Notifications: transport.NotificationsSpec{History: transport.HistoryLevel(t.Notifications.History),
			DeviceEventLog: t.Notifications.DeviceEventLog},
		Suspended: t.Suspended, Revision: t.Revision, SettingsRevision: t.SettingsRevision,
	}
	switch s := t.Settings.(type) {
	case nil:
	case json.RawMessage:
		sp.Settings = s
	default:
		b, err := json.Marshal(s)
		if err != nil {
			return sp, err
		}
		sp.Settings = b
	}
	return sp, nil
}

// deviceEditable are the fields of a local task its device's user may
// change (an edit's other fields are ignored): what the device is sent,
// less what identifies the task and its type.
var deviceEditable = []string{"Name", "Description", "Schedule", "Account", "Restart", "Notifications", "Settings", "Suspended"}

// editedTask is the task the device user's edit sp makes of cur: cur with
// the fields of deviceEditable taken from sp. The rest (the task's id,
// type, scope, access list, e-mail recipients, vendor fields, audit data)
// stays cur's, so the Manager's three-way merge sees no change of them by
// the user.
func editedTask(cur task.Task, sp transport.TaskSpec) task.Task {
	t := cur
	t.Name, t.Description = sp.Name, sp.Description
	t.Schedule, t.Account, t.Restart = sp.Schedule, sp.Account, sp.Restart
	t.Notifications.History = task.HistoryLevel(sp.Notifications.History)
	t.Notifications.DeviceEventLog = sp.Notifications.DeviceEventLog
	t.Suspended = sp.Suspended
	switch raw := bytes.TrimSpace(sp.Settings); {
	case len(raw) == 0 || bytes.Equal(raw, []byte("null")):
		t.Settings = nil
	default:
		t.Settings = json.RawMessage(raw)
	}
	return t
}
