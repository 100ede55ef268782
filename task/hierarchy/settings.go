package hierarchy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/task"
)

// decodeSettings turns the settings of tasks that crossed a network Link
// as raw JSON (json.RawMessage) into values of their registered types on
// this server, rejecting unknown fields; other settings are kept. It
// returns a new slice when anything changed.
func (n *Node) decodeSettings(ts []task.Task) ([]task.Task, error) {
	var out []task.Task
	var bad errs.ValidationErrors
	for i, t := range ts {
		raw, ok := t.Settings.(json.RawMessage)
		if !ok {
			continue
		}
		if out == nil {
			out = append([]task.Task(nil), ts...)
		}
		field := fmt.Sprintf("tasks[%d].settings", i)
		tt, known := n.cfg.Manager.Registry().Lookup(t.Application, t.Type)
		switch {
		case !known:
			bad = append(bad, errs.Invalid(field, "", fmt.Sprintf("task type %q of %q is not registered on %q", t.Type, t.Application, n.cfg.ID)))
		case len(raw) == 0 || bytes.Equal(raw, []byte("null")):
			out[i].Settings = nil
		case tt.Settings == nil:
			bad = append(bad, errs.Invalid(field, "", "the task type has no settings"))
		default:
			typ := reflect.TypeOf(tt.Settings)
			ptr := typ.Kind() == reflect.Pointer
			if ptr {
				typ = typ.Elem()
			}
			v := reflect.New(typ)
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(v.Interface()); err != nil {
				bad = append(bad, errs.Invalid(field, "", "cannot be decoded as "+typ.String()+": "+err.Error()))
				continue
			}
			if ptr {
				out[i].Settings = v.Interface()
			} else {
				out[i].Settings = v.Elem().Interface()
			}
		}
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	if out == nil {
		return ts, nil
	}
	return out, nil
}
