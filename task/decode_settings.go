package task

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// DecodeSettings decodes raw, the JSON settings of a task of the type
// application/name as they arrive from a host's UI or API, into a value of
// the registered settings type (a T or a *T, as registered), ready for
// Task.Settings. Fields missing from raw keep the type's default settings;
// raw that is empty or JSON null yields the defaults. The value is then
// checked like Create and Update check it (ValidateSettings).
//
// Every error matches ErrInvalid: an unregistered type names "type"; raw
// over MaxSettingsBytes (checked before decoding), malformed JSON, trailing
// data or settings for a type that has none name "settings"; an unknown
// field or a value of the wrong JSON type names its JSON path under
// "settings." (for example "settings.max_file_mb"); failed `validate` tags
// are reported as by ValidateSettings, all of them at once.
func (r *Registry) DecodeSettings(application, name string, raw []byte) (any, error) {
	reg := r.lookup(application, name)
	if reg == nil {
		return nil, errs.Invalid("type", name, fmt.Sprintf("no task type %q is registered for application %q", name, application))
	}
	if len(raw) > MaxSettingsBytes {
		return nil, errs.Invalid("settings", "", fmt.Sprintf("must be at most %d bytes of JSON", MaxSettingsBytes))
	}
	trimmed := bytes.TrimSpace(raw)
	empty := len(trimmed) == 0 || string(trimmed) == "null"
	if reg.settingsType == nil {
		if !empty {
			return nil, errs.Invalid("settings", "", "the task type has no settings")
		}
		return nil, nil
	}
	p := reflect.New(reg.settingsType)
	if err := json.Unmarshal(reg.defaults, p.Interface()); err != nil {
		return nil, fmt.Errorf("task: decode default settings of %q: %w", name, err)
	}
	if !empty {
		if err := decodeStrict(trimmed, p.Interface()); err != nil {
			return nil, err
		}
	}
	v := p.Elem().Interface()
	if reg.pointer {
		v = p.Interface()
	}
	if err := r.validateSettings(reg, v); err != nil {
		return nil, err
	}
	return v, nil
}

// decodeStrict decodes one JSON value into dst, refusing unknown fields
// and trailing data, and turns the decoder's errors into ValidationErrors.
func decodeStrict(b []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			field := "settings"
			if te.Field != "" {
				field += "." + te.Field
			}
			return errs.Invalid(field, te.Value, "must be a JSON "+jsonKind(te.Type))
		case errors.As(err, &se):
			return errs.Invalid("settings", "", fmt.Sprintf("is not valid JSON (offset %d): %v", se.Offset, se))
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return errs.Invalid("settings."+strings.Trim(f, `"`), "", "is not a field of the task type's settings")
		}
		return errs.Invalid("settings", "", "is not valid JSON: "+err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return errs.Invalid("settings", "", "must be one JSON object with nothing after it")
	}
	return nil
}

// jsonKind names the JSON kind a Go type decodes from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "integer (" + t.String() + ")"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "value of " + t.String()
}
