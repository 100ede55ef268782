package task

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-playground/validator/v10"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/schedule"
)

// TaskType is a kind of task an application offers ("Virus scan" of
// "Endpoint Security"). Hosts register one per task type their management
// plug-ins provide.
type TaskType struct {
	// Application is the application the type belongs to; the task list
	// is grouped by it.
	Application string
	// ApplicationVersion is the version of the application that offers
	// the type; tasks created without one take it.
	ApplicationVersion string
	// Name identifies the type within its application.

	Name string
	// DisplayName is shown to administrators (default Name).
	DisplayName string
	// Settings is the default type-specific settings: a struct or a
	// pointer to a struct, with `json` tags and `validate` tags
	// (github.com/go-playground/validator/v10). Tasks of the type carry a
	// value of the same type. Nil means the type has no settings.
	Settings any
	// Schedules are the schedule kinds the type allows; empty allows all.
	Schedules []schedule.Kind
	// ServerTask marks an Administration Server task type: its tasks must
	// have a server scope, and other types' tasks must not.
	ServerTask bool
	// NotExportable forbids KLT export (Administration Server tasks are
	// never exportable).
	NotExportable bool
	// Migrate, when set, converts stored settings saved by another
	// application version (the task's ApplicationVersion differs from
	// the type's) into JSON of the current Settings type before they are
	// decoded. It gets the stored version ("" for tasks saved without
	// one) and a copy of the stored JSON it may modify. Without it, and
	// after it, fields the type no longer has are ignored; a value that
	// still does not fit makes the task undecodable (see DecodeError). It
	// must be safe for concurrent use. The migrated settings are stored
	// at the task's next update.
	Migrate func(fromVersion string, settings json.RawMessage) (json.RawMessage, error)
}

// Exportable reports whether tasks of the type can be exported.
func (tt *TaskType) Exportable() bool { return !tt.ServerTask && !tt.NotExportable }

// AllowsSchedule reports whether the type allows schedule kind k.
func (tt *TaskType) AllowsSchedule(k schedule.Kind) bool {
	return len(tt.Schedules) == 0 || slices.Contains(tt.Schedules, k)
}

// Registry holds the registered task types. It is safe for concurrent use.
type Registry struct {
	mu    sync.RWMutex
	types map[typeKey]*registered
	valid *validator.Validate
	gen   atomic.Uint64 // bumped by Register: decoded tasks cached before are stale
}

// generation identifies the set of registered types.
func (r *Registry) generation() uint64 { return r.gen.Load() }

type typeKey struct{ app, name string }

type registered struct {
	TaskType
	settingsType reflect.Type // the struct type (not the pointer)
	pointer      bool         // tasks carry *T rather than T
	defaults     []byte       // JSON of the default settings
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			return ""
		case "":
			return f.Name
		}
		return name
	})
	return &Registry{types: map[typeKey]*registered{}, valid: v}
}

// Register adds a task type. It returns an error matching ErrInvalid for
// an incomplete type or settings that are not a struct, and ErrConflict
// when the application already has a type of that name.
func (r *Registry) Register(tt TaskType) error {
	var bad ValidationErrors
	if strings.TrimSpace(tt.Application) == "" {
		bad = append(bad, errs.Invalid("application", "", "is required"))
	}
	if strings.TrimSpace(tt.Name) == "" {
		bad = append(bad, errs.Invalid("name", "", "is required"))
	}
	for i, k := range tt.Schedules {
		if !k.Known() {
			bad = append(bad, errs.Invalid(fmt.Sprintf("schedules[%d]", i), string(k), "is not a schedule kind"))
		}
	}
	reg := &registered{TaskType: tt}
	if tt.Settings != nil {
		t := reflect.TypeOf(tt.Settings)
		if t.Kind() == reflect.Pointer {
			reg.pointer = true
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			bad = append(bad, errs.Invalid("settings", t.String(), "must be a struct or a pointer to a struct"))
		} else {
			reg.settingsType = t
			if err := roundTrips(t, "settings", 0); err != nil {
				bad = append(bad, err)
			}
			b, err := json.Marshal(tt.Settings)
			if err != nil {
				bad = append(bad, errs.Invalid("settings", t.String(), "cannot be encoded as JSON: "+err.Error()))
			} else if err := reg.checkRoundTrip(b); err != nil {
				bad = append(bad, err)
			}
			reg.defaults = b
		}
	}
	if err := bad.Err(); err != nil {
		return fmt.Errorf("task: register type %q of %q: %w", tt.Name, tt.Application, err)
	}
	if reg.settingsType != nil {
		if err := r.validateSettings(reg, tt.Settings); err != nil {
			return fmt.Errorf("task: register type %q of %q: default settings are invalid: %w", tt.Name, tt.Application, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	k := typeKey{tt.Application, tt.Name}
	if _, ok := r.types[k]; ok {
		return fmt.Errorf("task: type %q of %q is already registered: %w", tt.Name, tt.Application, ErrConflict)
	}
	r.types[k] = reg
	r.gen.Add(1)
	return nil
}

var (
	typeSecret    = reflect.TypeFor[credentials.Secret]()
	typeMarshaler = reflect.TypeFor[json.Marshaler]()
	typeTextMarsh = reflect.TypeFor[encoding.TextMarshaler]()
)

// roundTrips checks that values of t survive being stored as JSON and read
// back: no plaintext credentials.Secret (it is stored as "[REDACTED]" and
// the password is lost: put passwords in the task's Account, or seal them
// with a credentials.Sealer into a credentials.Sealed field), no
// interfaces (they come back as maps), and nothing encoding/json cannot
// encode (channels, functions, complex numbers, maps with keys that are
// not strings, integers or text marshalers).
func roundTrips(t reflect.Type, path string, depth int) *ValidationError {
	if depth > 32 {
		return nil
	}
	if t == typeSecret {
		return errs.Invalid(path, t.String(), "a plaintext credentials.Secret cannot be stored (it is saved as [REDACTED]); use the task's Account or a credentials.Sealed value")
	}
	if t.Implements(typeMarshaler) || reflect.PointerTo(t).Implements(typeMarshaler) {
		return nil // the type's own encoding; checked by the defaults' round trip
	}
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return errs.Invalid(path, t.String(), "cannot be encoded as JSON")
	case reflect.Interface:
		return errs.Invalid(path, t.String(), "an interface does not decode back into its type; use a concrete type")
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return roundTrips(t.Elem(), path+"[]", depth+1)
	case reflect.Map:
		switch k := t.Key(); {
		case k.Kind() == reflect.String, k.Kind() >= reflect.Int && k.Kind() <= reflect.Uintptr, k.Implements(typeTextMarsh):
		default:
			return errs.Invalid(path, t.String(), "map keys must be strings, integers or text marshalers")
		}
		return roundTrips(t.Elem(), path+"[]", depth+1)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || (!f.IsExported() && !f.Anonymous) {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if err := roundTrips(f.Type, path+"."+name, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkRoundTrip decodes the encoded default settings and encodes them
// again: a type whose own JSON encoding loses data is refused.
func (reg *registered) checkRoundTrip(b []byte) *ValidationError {
	v, err := reg.decodeSettings(b, true)
	if err != nil {
		return errs.Invalid("settings", reg.settingsType.String(), "the encoded defaults do not decode again: "+jsonReason(err))
	}
	b2, err := json.Marshal(v)
	if err != nil || !bytes.Equal(b, b2) {
		return errs.Invalid("settings", reg.settingsType.String(), "the defaults do not survive being stored as JSON and read back")
	}
	return nil
}

// Lookup returns a registered type.
func (r *Registry) Lookup(application, name string) (TaskType, bool) {
	reg := r.lookup(application, name)
	if reg == nil {
		return TaskType{}, false
	}
	return reg.TaskType, true
}

func (r *Registry) lookup(application, name string) *registered {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.types[typeKey{application, name}]
}

// Types returns the registered types ordered by application and name.
func (r *Registry) Types() []TaskType {
	r.mu.RLock()
	out := make([]TaskType, 0, len(r.types))
	for _, t := range r.types {
		out = append(out, t.TaskType)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b TaskType) int {
		if c := strings.Compare(a.Application, b.Application); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// ValidateSettings checks v, a settings value of the registered type,
// against the type and its `validate` tags: the same check Create and
// Update make. Errors are ValidationErrors whose fields are JSON paths
// under "settings." (KLT import and hosts' own forms use it to report
// errors before anything is stored). An unregistered type is ErrInvalid
// naming "type".
func (r *Registry) ValidateSettings(application, name string, v any) error {
	reg := r.lookup(application, name)
	if reg == nil {
		return errs.Invalid("type", name, fmt.Sprintf("no task type %q is registered for application %q", name, application))
	}
	if err := reg.checkSettingsType(v); err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	return r.validateSettings(reg, v)
}

// newSettings returns a fresh copy of the type's default settings.
func (reg *registered) newSettings() (any, error) {
	if reg.settingsType == nil {
		return nil, nil
	}
	return reg.decodeSettings(reg.defaults, true)
}

// decodeSettings decodes JSON into a value of the registered type. strict
// rejects unknown fields (for input); stored settings are decoded with
// strict false, so a field a newer version removed does not make them
// unreadable.
func (reg *registered) decodeSettings(b []byte, strict bool) (any, error) {
	p := reflect.New(reg.settingsType)
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(p.Interface()); err != nil {
		return nil, err
	}
	if reg.pointer {
		return p.Interface(), nil
	}
	return p.Elem().Interface(), nil
}

// checkSettingsType verifies that v is a value of the registered type.
func (reg *registered) checkSettingsType(v any) error {
	if reg.settingsType == nil {
		if v != nil {
			return errs.Invalid("settings", fmt.Sprintf("%T", v), "the task type has no settings")
		}
		return nil
	}
	t := reflect.TypeOf(v)
	want := reg.settingsType
	if reg.pointer {
		want = reflect.PointerTo(want)
	}
	if t != want {
		return errs.Invalid("settings", fmt.Sprintf("%T", v), "must be a "+want.String())
	}
	if reg.pointer && reflect.ValueOf(v).IsNil() {
		return errs.Invalid("settings", "", "must not be a nil pointer")
	}
	return nil
}

// validateSettings runs the validate tags and translates the errors.
func (r *Registry) validateSettings(reg *registered, v any) error {
	err := r.valid.Struct(v)
	if err == nil {
		return nil
	}
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		return errs.Invalid("settings", "", err.Error())
	}
	out := make(ValidationErrors, 0, len(verrs))
	var secrets []string // paths of secret values, found on the first error
	for _, fe := range verrs {
		path := fe.Namespace()
		if _, rest, ok := strings.Cut(path, "."); ok {
			path = rest
		}
		if secrets == nil {
			secrets = []string{}
			for _, f := range credentials.ScanSettings(v) {
				secrets = append(secrets, f.Path)
			}
		}
		value := fmt.Sprint(fe.Value())
		if secretValue(reg.settingsType, fe, path, secrets) {
			value = "" // a secret is never quoted, not even in an error
		}
		out = append(out, &ValidationError{Field: "settings." + path, Value: value, Reason: reasonFor(fe)})
	}
	return out.Err()
}

// secretValue reports whether the value of a failed settings field may be
// a secret: a field (or a field containing it) marked
// `taskfleet:"secret"` or of a credentials type, a path where
// credentials.ScanSettings found a secret, or a value that looks like one
// under its field name.
func secretValue(t reflect.Type, fe validator.FieldError, path string, secrets []string) bool {
	for _, p := range secrets {
		if p == path || p == "" || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return true
		}
	}
	if markedPath(t, fe.StructNamespace()) {
		return true
	}
	return len(credentials.ScanSettings(map[string]any{fe.Field(): fe.Value()})) > 0
}

var (
	typeSealed  = reflect.TypeFor[credentials.Sealed]()
	typeAccount = reflect.TypeFor[credentials.Account]()
)

// markedPath walks a validator struct namespace ("Settings.Hosts[0].Key")
// through t and reports whether any field on it is marked secret or has a
// credentials type.
func markedPath(t reflect.Type, ns string) bool {
	parts := strings.Split(ns, ".")
	if len(parts) > 0 {
		parts = parts[1:] // the settings type's own name
	}
	for _, part := range parts {
		name, _, _ := strings.Cut(part, "[")
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return false
		}
		f, ok := t.FieldByName(name)
		if !ok {
			return false
		}
		if strings.Contains(f.Tag.Get("taskfleet"), credentials.SecretTag) {
			return true
		}
		t = f.Type
		for strings.Contains(part, "[") && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map || t.Kind() == reflect.Pointer) {
			t = t.Elem()
			part = part[strings.Index(part, "[")+1:]
		}
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t == typeSecret || t == typeSealed || t == typeAccount {
			return true
		}
	}
	return false
}

func reasonFor(fe validator.FieldError) string {
	p := fe.Param()
	switch fe.Tag() {
	case "required":
		return "is required"
	case "min", "gte":
		if fe.Kind() == reflect.String || fe.Kind() == reflect.Slice || fe.Kind() == reflect.Map {
			return "must have at least " + p + " elements or characters"
		}
		return "must be at least " + p
	case "max", "lte":
		if fe.Kind() == reflect.String || fe.Kind() == reflect.Slice || fe.Kind() == reflect.Map {
			return "must have at most " + p + " elements or characters"
		}
		return "must be at most " + p
	case "gt":
		return "must be greater than " + p
	case "lt":
		return "must be less than " + p
	case "oneof":
		return "must be one of: " + strings.ReplaceAll(p, " ", ", ")
	case "len":
		return "must have length " + p
	}
	if p != "" {
		return fmt.Sprintf("fails the %q check (%s)", fe.Tag(), p)
	}
	return fmt.Sprintf("fails the %q check", fe.Tag())
}
