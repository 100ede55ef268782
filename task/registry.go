package task

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/go-playground/validator/v10"

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
}

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
			b, err := json.Marshal(tt.Settings)
			if err != nil {
				bad = append(bad, errs.Invalid("settings", t.String(), "cannot be encoded as JSON: "+err.Error()))
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
	return reg.decodeSettings(reg.defaults)
}

// decodeSettings decodes JSON into a value of the registered type,
// rejecting unknown fields.
func (reg *registered) decodeSettings(b []byte) (any, error) {
	p := reflect.New(reg.settingsType)
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p.Interface()); err != nil {
		return nil, errs.Invalid("settings", "", "cannot be decoded as "+reg.settingsType.String()+": "+err.Error())
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
	for _, fe := range verrs {
		path := fe.Namespace()
		if _, rest, ok := strings.Cut(path, "."); ok {
			path = rest
		}
		out = append(out, &ValidationError{Field: "settings." + path, Value: fmt.Sprint(fe.Value()), Reason: reasonFor(fe)})
	}
	return out.Err()
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
