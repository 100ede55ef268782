package klt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

// The shared error vocabulary of taskfleet (errors.Is works across
// packages).
var (
	ErrInvalid  = errs.ErrInvalid
	ErrConflict = errs.ErrConflict
)

// ValidationError and ValidationErrors report rejected input with the
// dotted path of the field in the document ("task.TF_SCHEDULE.every") and
// what is allowed.
type (
	ValidationError  = errs.ValidationError
	ValidationErrors = errs.ValidationErrors
)

// Format identification, written in every document's header.
const (
	// Format is the value of the header's "format" field.
	Format = "taskfleet-klt"
	// FormatVersion is the version of the format this package writes,
	// "MAJOR.MINOR". Parse refuses a newer major version and upgrades
	// older ones; a newer minor version only adds fields, which are kept
	// as unknown fields.
	FormatVersion = "1.2"
	// FormatMajor is the major part of FormatVersion.
	FormatMajor = 1
	// LibraryVersion is the taskfleet version written to the header's
	// "library_version".
	LibraryVersion = "0.1.0"
)

// Limits Parse applies by default (ParseOptions overrides them). Each is
// checked while reading, before the document is held in memory.
const (
	// DefaultMaxSize is the largest document accepted, in bytes (16 MiB).
	DefaultMaxSize = 16 << 20
	// DefaultMaxDepth is the deepest nesting of arrays and objects.
	DefaultMaxDepth = 64
	// DefaultMaxValues is the most JSON values (scalars, arrays and
	// objects) a document may hold: enough for a scope list of
	// scope.MaxListLength entries with room to spare.
	DefaultMaxValues = 250_000

	// MaxParseAlloc and MaxParseLive are the memory Parse costs at most
	// with the default limits, for any input: bytes allocated in total and
	// held at once (TestMemoryAndQuoteLimits measures the worst documents:
	// a 16 MiB document of 220,000 vendor strings costs about 153 MiB and
	// 100-115 MiB, 249,000 vendor numbers about 95 MiB and 63-78 MiB, a
	// 16 MiB string 48 MiB and 32-40 MiB; a number beyond 1024 characters is refused
	// before it costs anything).
	MaxParseAlloc = 160 << 20
	MaxParseLive  = 128 << 20
)

// MaxDisplayNameLength is the longest task name a KLT document carries,
// in characters: the Open API's limit on DisplayName ("100 characters
// max.", KSC Open API, "Task settings format"; also the limit on
// %KLCSAK_EVENT_TASK_DISPLAY_NAME% in the product's event notifications).
// Parse refuses a longer DisplayName and Export a longer task name, both
// with a *ValidationError, although task.MaxNameLength allows more: a
// server would refuse the task.
const MaxDisplayNameLength = 100

// Field names of the document. The public ones are the KSC Open API's
// "Task settings format"; the TF_ ones are taskfleet's own, for settings
// the public format has no name for (see the package documentation).
const (
	keyFormat         = "format"
	keyFormatVersion  = "format_version"
	keyLibraryVersion = "library_version"
	keyExportedAt     = "exported_at"
	keyTask           = "task"
	keyPxgRetVal      = "PxgRetVal"

	keyTaskName       = "TASK_NAME"
	keyProductName    = "TASKID_PRODUCT_NAME"
	keyProductVersion = "TASKID_VERSION"
	keyScheduleType   = "TASKSCH_TYPE"
	keyRunMissed      = "TASKSCH_RUN_MISSED_FLAG"
	keyAdditional     = "TASK_ADDITIONAL_PARAMS"
	keyInfo           = "TASK_INFO_PARAMS"
	keyDisplayName    = "DisplayName"
	// keyComponentName and keySubtype are required by the Open API for a
	// task it creates; a server's values are kept verbatim, other tasks
	// get ExportOptions' defaults.
	keyComponentName = "TASKID_COMPONENT_NAME"
	keySubtype       = "klprts-TaskScheduleSubtype"
	// keyDisplayNameV10 is the display name's older public name (KSC
	// Automation's "Task settings format"), read from attribute lists.
	keyDisplayNameV10  = "TASK_DISPLAY_NAME"
	keyAutoRandom      = "KLTSK_ALLOW_AUTO_RANDOMIZATION"
	keyGroupID         = "PRTS_TASK_GROUPID"
	keyExceptGroups    = "PRTS_EXCEPT_GROUPIDS"
	keyTFDescription   = "TF_DESCRIPTION"
	keyTFSuspended     = "TF_SUSPENDED"
	keyTFSchedule      = "TF_SCHEDULE"
	keyTFScope         = "TF_SCOPE"
	keyTFRestart       = "TF_RESTART"
	keyTFNotifications = "TF_NOTIFICATIONS"
	keyTFSecurity      = "TF_SECURITY"
	keyTFAccountName   = "TF_ACCOUNT_NAME"

	// keyV0Comment is where format 0.x kept the description.
	keyV0Comment = "TF_COMMENT"
)

// knownRoot, knownTask and knownInfo are the fields this version writes
// and reads; anything else is an unknown field, kept verbatim.
var (
	knownRoot = []string{keyExportedAt, keyFormat, keyFormatVersion, keyLibraryVersion, keyTask}
	knownTask = append([]string{keyAdditional, keyInfo, keyProductName, keyProductVersion, keyTaskName, keyScheduleType,
		keyRunMissed, keyTFAccountName, keyTFNotifications, keyTFRestart, keyTFSchedule, keyTFScope, keyTFSecurity, keyHostList}, publicScheduleKeys...)
	knownInfo = []string{keyDisplayName, keyAutoRandom, keyGroupID, keyExceptGroups, keyNotifications, keyTFDescription, keyTFSuspended}
)

// DefaultScheduleSubtype is the klprts-TaskScheduleSubtype Export writes
// for a task without one of its own (ExportOptions.ScheduleSubtype
// chooses another): 256 for every kind, the value of the public KlAkOAPI
// sample that creates a task with Tasks.AddTask. The public pages name the
// field as required but list no values; TASKSCH_TYPE and the TASKSCH_*
// fields describe the schedule.
func DefaultScheduleSubtype(schedule.Kind) int { return defaultSubtype }

const defaultSubtype = 256

// ErrNotExportable matches a *NotExportableError.
var ErrNotExportable = errors.New("klt: the task cannot be exported or imported")

// NotExportableError refuses an Administration Server task or a task type
// marked NotExportable (the product documentation: "Administration Server tasks are also
// unavailable for export"). It matches ErrNotExportable and ErrInvalid.
type NotExportableError struct {
	Application string
	Type        string
	Reason      string
}

func (e *NotExportableError) Error() string {
	return fmt.Sprintf("klt: task type %q of %q cannot be exported or imported: %s", e.Type, e.Application, e.Reason)
}

// Is matches ErrNotExportable and ErrInvalid.
func (e *NotExportableError) Is(target error) bool {
	return target == ErrNotExportable || target == ErrInvalid
}

// ErrUnsupportedVersion matches a *VersionError.
var ErrUnsupportedVersion = errors.New("klt: unsupported format version")

// VersionError refuses a document of a newer major format version (or a
// malformed version). It matches ErrUnsupportedVersion and ErrInvalid.
type VersionError struct {
	// Found is the document's format_version; Supported is FormatVersion.
	Found, Supported string
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("klt: format version %q is not supported: this library reads versions up to %d.x (it writes %s); upgrade taskfleet to import this file", e.Found, FormatMajor, e.Supported)
}

// Is matches ErrUnsupportedVersion and ErrInvalid.
func (e *VersionError) Is(target error) bool {
	return target == ErrUnsupportedVersion || target == ErrInvalid
}

// Field is one field of a document that this version does not know,
// kept verbatim so that exporting the imported task writes it back.
type Field struct {
	// Path names the field from the document's root, one element per
	// key, in export coordinates: ["task", "TASK_DEL_AFTER_RUN_FLAG"],
	// ["task", "TASK_INFO_PARAMS", "KLPRSS_EVPNotifications"],
	// ["task", "TASK_ADDITIONAL_PARAMS", "legacy_option"] or
	// ["signature"] for a header field.
	Path []string
	// Value is the field's value as it appears in the document
	// (canonical JSON: keys in byte order, no insignificant space).
	Value json.RawMessage
}

// PathString returns the dotted form of the path.
func (f Field) PathString() string { return strings.Join(f.Path, ".") }

// ExportOptions configure Export. The zero value exports at the time of
// the wall clock with no unknown fields.
type ExportOptions struct {
	// Time is the export time written to the header (UTC, whole seconds).
	// When zero, Clock is read.
	Time time.Time
	// Clock is read when Time is zero (default: the wall clock).
	Clock clock.Clock
	// ComponentName is written as TASKID_COMPONENT_NAME, which the Open
	// API requires of a task it creates (Tasks.AddTask), when the task has
	// none of its own from an import ("" means the task's application,
	// the value TASKID_PRODUCT_NAME has). A server's value, kept with an
	// imported task, is written back instead.
	ComponentName string
	// ScheduleSubtype gives klprts-TaskScheduleSubtype (required by the
	// Open API in TASK_INFO_PARAMS) for the task's schedule kind when the
	// task has no value of its own from an import. Nil means
	// DefaultScheduleSubtype. A server's value, kept with an imported
	// task, is written back instead.
	ScheduleSubtype func(schedule.Kind) int
	// GroupIDs maps a group id that is not an integer to the
	// administration server's integer group id for PRTS_TASK_GROUPID and
	// PRTS_EXCEPT_GROUPIDS (the Open API's group ids are integers; ids
	// that are non-negative 32-bit decimal integers are written as they
	// are). When it is set, a group it cannot map makes Export fail with a
	// *ValidationError at "scope.group" or "scope.excluded_groups[i]":
	// set it when the file is for a server. When nil, the fields are left
	// out for such ids (ExportReport.GroupIDsOmitted names them). TF_SCOPE
	// carries every id for taskfleet.
	GroupIDs func(scope.GroupID) (int32, bool)
	// Extra are fields to write besides the task's own: the unknown
	// fields of an Import (Import.Extra), so a task imported from a newer
	// or foreign file keeps them. A path must be a header field
	// (one element), or a field of "task", "task.TASK_INFO_PARAMS" or
	// "task.TASK_ADDITIONAL_PARAMS" that this version does not write.
	// The task's own opaque fields (task.Task.Opaque, set by an import)
	// are written too; an Extra entry with the same path replaces one of
	// them. Password and secret fields (IsSecretField) are never written:
	// ExportReport.SecretsDropped names them. A server's public schedule
	// fields and TASK_INFO_PARAMS.KLPRSS_EVPNotifications among them are
	// written only while they read as the task's schedule and
	// notifications (see the package documentation).
	Extra []Field
}

// ExportReport tells what Export left out or found.
type ExportReport struct {
	// AccountName is the run-as account name written to the file ("" for
	// the default account).
	AccountName string
	// PasswordDropped is true when the task had a password: it is never
	// exported, and whoever imports the file must enter it again.
	PasswordDropped bool
	// PrivateData lists the settings values that look like private data
	// (credentials.ScanSettings), with paths in document coordinates
	// ("task.TASK_ADDITIONAL_PARAMS.proxy_url"). They are exported as they
	// are: the product documentation asks administrators not to put private data in task
	// settings, and the report lets a console warn before saving.
	PrivateData []credentials.Finding
	// GroupIDsOmitted are the group ids (the scope's group and excluded
	// groups) that are not integers and were not mapped by
	// ExportOptions.GroupIDs: PRTS_TASK_GROUPID or PRTS_EXCEPT_GROUPIDS is
	// then left out, so a server would not see the group.
	GroupIDsOmitted []scope.GroupID
	// SecretsDropped are the paths of password and secret fields
	// (IsSecretField) in the opaque or extra fields that were not
	// written: no secret is ever exported, encrypted or not.
	SecretsDropped []string
}

// Export writes t as a KLT document. tt is t's registered type (the
// Registry's Lookup). The password of the run-as account is never
// written; the account name is.
//
// Errors: a *NotExportableError for Administration Server tasks and types
// marked NotExportable; ErrInvalid (*ValidationError or ValidationErrors)
// for a task whose type does not match tt, whose schedule, scope or restart
// policy is invalid, or for a bad ExportOptions.Extra entry.
func Export(t *task.Task, tt task.TaskType, opts ExportOptions) ([]byte, ExportReport, error) {
	var rep ExportReport
	if t == nil {
		return nil, rep, errs.Invalid("task", "", "is required")
	}
	if tt.Application != t.Application || tt.Name != t.Type {
		return nil, rep, errs.Invalid("type", t.Type, fmt.Sprintf("the task type %q of %q does not match the task's type %q of %q", tt.Name, tt.Application, t.Type, t.Application))
	}
	if tt.ServerTask || t.Scope.Kind == scope.Server {
		return nil, rep, &NotExportableError{Application: t.Application, Type: t.Type, Reason: "Administration Server tasks cannot be exported"}
	}
	if tt.NotExportable {
		return nil, rep, &NotExportableError{Application: t.Application, Type: t.Type, Reason: "the task type is marked not exportable"}
	}
	if n := utf8.RuneCountInString(t.Name); n > MaxDisplayNameLength {
		return nil, rep, errs.Invalid("name", short(t.Name), fmt.Sprintf("has %d characters: a KLT document carries at most %d (the Open API's DisplayName limit); rename the task to export it", n, MaxDisplayNameLength))
	}
	when := opts.Time
	if when.IsZero() {
		clk := opts.Clock
		if clk == nil {
			clk = clock.New()
		}
		when = clk.Now()
	}
	when = when.UTC().Truncate(time.Second)

	if t.Settings == nil && tt.Settings != nil {
		// Nil settings are the type's defaults (as in task.Manager).
		c := *t
		c.Settings = tt.Settings
		t = &c
	}
	tp, settingsKeys, err := taskParams(t, &opts, &rep)
	if err != nil {
		return nil, rep, err
	}
	if !t.Account.IsDefault() {
		rep.AccountName = t.Account.Name
		rep.PasswordDropped = !t.Account.Password.IsZero()
	}
	for _, f := range credentials.ScanSettings(settingsValue(t.Settings)) {
		f.Path = strings.TrimSuffix(keyTask+"."+keyAdditional+"."+strings.TrimPrefix(f.Path, "$."), ".")
		rep.PrivateData = append(rep.PrivateData, f)
	}

	doc := newObject()
	doc.set(keyFormat, strNode(Format))
	doc.set(keyFormatVersion, strNode(FormatVersion))
	doc.set(keyLibraryVersion, strNode(LibraryVersion))
	doc.set(keyExportedAt, strNode(when.Format(time.RFC3339)))
	doc.set(keyTask, paramsNode(tp))
	extra, err := mergeOpaque(t.Opaque, opts.Extra)
	if err != nil {
		return nil, rep, err
	}
	if rep.SecretsDropped, err = addExtra(doc, tp, settingsKeys, extra, t); err != nil {
		return nil, rep, err
	}
	var buf bytes.Buffer
	buf.Grow(2048)
	encodeTree(&buf, doc, 0, true)
	buf.WriteByte('\n')
	return buf.Bytes(), rep, nil
}

func settingsValue(s any) any {
	if s == nil {
		return struct{}{}
	}
	return s
}

// taskParams builds the task's params container. It returns the members
// and the set of TASK_ADDITIONAL_PARAMS keys the settings type owns.
func taskParams(t *task.Task, opts *ExportOptions, rep *ExportReport) (*node, map[string]bool, error) {
	var bad ValidationErrors
	add := func(prefix string, err error) {
		if err == nil {
			return
		}
		switch e := errs.Prefix(prefix, err).(type) {
		case *ValidationError:
			bad = append(bad, e)
		case ValidationErrors:
			bad = append(bad, e...)
		default:
			bad = append(bad, errs.Invalid(prefix, "", err.Error()))
		}
	}
	add("schedule", t.Schedule.Validate())
	add("scope", t.Scope.Validate())
	pol := t.Restart
	if pol.IsZero() {
		pol = restart.Default()
	}
	add("restart", pol.Validate())
	if err := bad.Err(); err != nil {
		return nil, nil, err
	}

	tp := newObject()
	tp.set(keyTaskName, strNode(t.Type))
	tp.set(keyProductName, strNode(t.Application))
	tp.set(keyProductVersion, strNode(t.ApplicationVersion))
	component := opts.ComponentName
	if component == "" {
		component = t.Application
	}
	tp.set(keyComponentName, strNode(component))
	publicSchedule(tp, t.Schedule)

	info := newObject()
	info.set(keyDisplayName, strNode(t.Name))
	info.set(keyAutoRandom, boolNode(t.Schedule.RandomDelay.Mode == schedule.DelayAutomatic))
	subtype := DefaultScheduleSubtype(t.Schedule.Kind)
	if opts.ScheduleSubtype != nil {
		subtype = opts.ScheduleSubtype(t.Schedule.Kind)
	}
	info.set(keySubtype, intNode(int64(subtype)))
	if t.Scope.Kind != scope.Group {
		// The Open API's mark of a task for a set of devices.
		info.set(keyGroupID, numNode("-1"))
	} else {
		// The Open API's group ids are integers: a group id that is not
		// one is mapped by GroupIDs, or else carried by TF_SCOPE alone;
		// the excluded groups are written only when all of them are.
		g, ok, err := serverGroupID(t.Scope.Group, opts.GroupIDs, "scope.group")
		if err != nil {
			return nil, nil, err
		}
		if ok {
			info.set(keyGroupID, g)
		} else {
			rep.GroupIDsOmitted = append(rep.GroupIDsOmitted, t.Scope.Group)
		}
		if len(t.Scope.ExcludedGroups) > 0 {
			arr := &node{kind: kArray}
			for i, g := range t.Scope.ExcludedGroups {
				n, ok, err := serverGroupID(g, opts.GroupIDs, fmt.Sprintf("scope.excluded_groups[%d]", i))
				if err != nil {
					return nil, nil, err
				}
				if ok {
					arr.kids = append(arr.kids, n)
				} else {
					rep.GroupIDsOmitted = append(rep.GroupIDsOmitted, g)
				}
			}
			if len(arr.kids) == len(t.Scope.ExcludedGroups) {
				info.set(keyExceptGroups, arr)
			}
		}
	}
	if t.Description != "" {
		info.set(keyTFDescription, strNode(t.Description))
	}
	if t.Suspended {
		info.set(keyTFSuspended, boolNode(true))
	}
	info.set(keyNotifications, notificationsNode(t.Notifications))
	tp.set(keyInfo, paramsNode(info))

	settings, err := settingsTree(t.Settings)
	if err != nil {
		return nil, nil, err
	}
	keys := make(map[string]bool, len(settings.keys))
	for _, k := range settings.keys {
		keys[k] = true
	}
	if t.Settings != nil {
		for k := range jsonFieldNames(reflect.TypeOf(t.Settings)) {
			keys[k] = true
		}
	}
	addNode := plainToParams(settings)
	if _, raw := t.Settings.(json.RawMessage); t.Settings != nil && !raw {
		// Declared settings keep their Open API types (typed.go).
		if addNode, err = toTyped(settings, reflect.TypeOf(t.Settings), "", "settings"); err != nil {
			return nil, nil, err
		}
	}
	addObj := addNode.get("value")
	publicRestart(addObj, pol)
	if !t.Account.IsDefault() {
		addObj.set(keyAccountUser, strNode(t.Account.Name))
	}
	for _, k := range publicAdditional {
		keys[k] = true
	}
	tp.set(keyAdditional, addNode)
	if t.Scope.Kind == scope.Devices {
		tp.set(keyHostList, hostListNode(t.Scope.Devices))
	}

	for _, part := range []struct {
		key string
		v   any
	}{
		{keyTFSchedule, t.Schedule},
		{keyTFScope, t.Scope},
		{keyTFRestart, pol},
		{keyTFSecurity, t.Security},
	} {
		b, err := json.Marshal(part.v)
		if err != nil {
			return nil, nil, fmt.Errorf("klt: encode %s: %w", part.key, err)
		}
		n, err := plainTree(b)
		if err != nil {
			return nil, nil, fmt.Errorf("klt: encode %s: %w", part.key, err)
		}
		pn := plainToParams(n)
		if part.key == keyTFSchedule {
			datetimes(pn.get("value"), "at", "saved_at", "start")
		}
		tp.set(part.key, pn)
	}
	return tp, keys, nil
}

// settingsTree returns the type-specific settings as a plain JSON object
// (empty for a type without settings).
func settingsTree(s any) (*node, error) {
	var b []byte
	switch v := s.(type) {
	case nil:
		return newObject(), nil
	case json.RawMessage:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, errs.Invalid("settings", fmt.Sprintf("%T", s), "cannot be encoded as JSON: "+err.Error())
		}
	}
	n, err := plainTree(b)
	if err != nil {
		return nil, errs.Invalid("settings", "", "is not valid JSON")
	}
	switch n.kind {
	case kNull:
		return newObject(), nil
	case kObject:
		return n, nil
	}
	return nil, errs.Invalid("settings", "", "must encode to a JSON object")
}

// groupNode writes a group id as paramInt when it is the canonical
// decimal form of a non-negative 32-bit integer (the Open API's group
// ids); it returns false for any other id, which the Open API cannot name.
func groupNode(g scope.GroupID) (*node, bool) {
	if v, err := strconv.ParseInt(string(g), 10, 32); err == nil && strconv.FormatInt(v, 10) == string(g) && v >= 0 {
		return numNode(string(g)), true
	}
	return nil, false
}

// serverGroupID writes a group id as the Open API's paramInt: the id
// itself when it is one (groupNode), else through mapping when it is set
// (an id it cannot map is refused at field).
func serverGroupID(g scope.GroupID, mapping func(scope.GroupID) (int32, bool), field string) (*node, bool, error) {
	if n, ok := groupNode(g); ok || mapping == nil {
		return n, ok, nil
	}
	v, ok := mapping(g)
	if !ok || v < 0 {
		return nil, false, errs.Invalid(field, short(string(g)), "has no integer group id of the administration server (ExportOptions.GroupIDs)")
	}
	return numNode(strconv.FormatInt(int64(v), 10)), true, nil
}

// mergeOpaque returns the fields to write: extra, then the task's opaque
// fields whose paths extra does not have.
func mergeOpaque(opaque json.RawMessage, extra []Field) ([]Field, error) {
	own, err := DecodeOpaque(opaque)
	if err != nil || len(own) == 0 {
		return extra, err
	}
	have := make(map[string]bool, len(extra))
	for _, f := range extra {
		have[f.PathString()] = true
	}
	out := slices.Clone(extra)
	for _, f := range own {
		if !have[f.PathString()] {
			out = append(out, f)
		}
	}
	return out, nil
}

// addExtra inserts the extra and opaque fields into the document and
// returns the paths of the secret fields it left out.
//
// The public schedule fields of a server schedule that Parse did not
// convert are opaque fields too: they replace the ones Export writes while
// the task still has the manual start it was imported with, and are left
// out once the task has a schedule of its own.
//
// A KLPRSS_EVPNotifications kept verbatim (a server's, with details
// task.Notifications does not hold) replaces the one Export writes while
// it still reads as the task's notifications.
func addExtra(doc, tp *node, settingsKeys map[string]bool, extra []Field, t *task.Task) ([]string, error) {
	kind := t.Schedule.Kind
	var bad ValidationErrors
	var dropped []string
	seen := map[string]bool{}
	info, _ := paramsObject(tp.get(keyInfo), "", false)
	add, _ := paramsObject(tp.get(keyAdditional), "", false)
	// A server's schedule kept verbatim (with its TASKSCH_TYPE: one this
	// version did not convert, or type 3) is written instead of the
	// task's own fields while it describes the task's schedule, and left
	// out once the task has another.
	serverSched, useServerSched := newObject(), false
	for _, k := range publicScheduleKeys[len(scheduleDetailKeys):] {
		if v := tp.get(k); v != nil {
			serverSched.set(k, v) // the task's own, unless the server's are kept
		}
	}
	for _, f := range extra {
		if len(f.Path) == 2 && f.Path[0] == keyTask && (f.Path[1] == keyScheduleType || slices.Contains(publicScheduleKeys, f.Path[1])) {
			if v, err := decodeTree(bytes.NewReader(f.Value), defaultLimits()); err == nil {
				serverSched.set(f.Path[1], v)
			}
		}
	}
	if serverSched.get(keyScheduleType) != nil {
		useServerSched = describesSchedule(serverSched, t.Schedule)
		if useServerSched {
			for _, k := range scheduleDetailKeys {
				tp.del(k)
			}
		}
	}
	for i, f := range extra {
		field := fmt.Sprintf("extra[%d]", i)
		var dst *node
		var known []string
		var ownKeys map[string]bool
		switch {
		case len(f.Path) == 1:
			dst, known = doc, knownRoot
		case len(f.Path) == 2 && f.Path[0] == keyTask:
			dst, known = tp, knownTask
		case len(f.Path) == 3 && f.Path[0] == keyTask && f.Path[1] == keyInfo:
			dst, known = info, knownInfo
		case len(f.Path) == 3 && f.Path[0] == keyTask && f.Path[1] == keyAdditional:
			dst, ownKeys = add, settingsKeys
		default:
			bad = append(bad, errs.Invalid(field+".path", f.PathString(), `must be a header field, or a field of "task", "task.TASK_INFO_PARAMS" or "task.TASK_ADDITIONAL_PARAMS"`))
			continue
		}
		key := f.Path[len(f.Path)-1]
		p := f.PathString()
		if IsSecretField(key) {
			dropped = append(dropped, p)
			continue
		}
		if dst == tp && (key == keyScheduleType || slices.Contains(publicScheduleKeys, key)) && !seen[p] {
			seen[p] = true
			if serverSched.get(keyScheduleType) != nil && !useServerSched {
				continue // the task's own schedule replaced the server's
			}
			if serverSched.get(keyScheduleType) == nil && tp.get(key) != nil && kind != schedule.Manual && kind != "" {
				continue // the task's own schedule replaced the server's
			}
			if v, err := decodeTree(bytes.NewReader(f.Value), defaultLimits()); err == nil {
				dst.set(key, v)
			} else {
				bad = append(bad, errs.Invalid(field+".value", "", "is not valid JSON"))
			}
			continue
		}
		if dst == info && key == keyNotifications && !seen[p] {
			seen[p] = true
			v, err := decodeTree(bytes.NewReader(f.Value), defaultLimits())
			if err != nil {
				bad = append(bad, errs.Invalid(field+".value", "", "is not valid JSON"))
				continue
			}
			dropped = append(dropped, stripSecrets(v, p)...)
			if notificationsOf(v, t.Notifications) {
				dst.set(key, v)
			}
			continue
		}
		switch {
		case slices.Contains(known, key) || ownKeys[key]:
			bad = append(bad, errs.Invalid(field+".path", p, "is a field taskfleet writes itself"))
			continue
		case seen[p]:
			bad = append(bad, errs.Invalid(field+".path", p, "is given twice"))
			continue
		}
		seen[p] = true
		v, err := decodeTree(bytes.NewReader(f.Value), limits{size: DefaultMaxSize, depth: DefaultMaxDepth, values: DefaultMaxValues})
		if err == nil {
			_, err = paramsToPlain(v, p)
		}
		if err != nil {
			bad = append(bad, errs.Invalid(field+".value", "", "is not a valid Open API params value: "+err.Error()))
			continue
		}
		dropped = append(dropped, stripSecrets(v, p)...)
		dst.set(key, v)
	}
	return dropped, bad.Err()
}

// jsonFieldNames returns the JSON names of a struct type's fields (through
// pointers and embedded structs), as encoding/json writes them.
func jsonFieldNames(t reflect.Type) map[string]bool {
	fs := structFields(t)
	out := make(map[string]bool, len(fs))
	for name := range fs {
		out[name] = true
	}
	return out
}

// Normalize returns the canonical form of a KLT document, used to compare
// documents: object keys in byte order, two-space indentation, the
// header's exported_at removed. It refuses what Parse refuses at the JSON
// level (size, UTF-8, duplicate keys, depth), with the default limits.
func Normalize(data []byte) ([]byte, error) {
	n, err := decodeTree(bytes.NewReader(data), defaultLimits())
	if err != nil {
		return nil, err
	}
	if n.kind == kObject {
		n.del(keyExportedAt)
	}
	var buf bytes.Buffer
	encodeTree(&buf, n, 0, true)
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

func defaultLimits() limits {
	return limits{size: DefaultMaxSize, depth: DefaultMaxDepth, values: DefaultMaxValues}
}

// datetimes rewrites the instants at keys of a params object as Open API
// datetime values when they are whole UTC seconds (the datetime format,
// "YYYY-MM-DDTHH:MM:SSZ"); instants with fractions of a second stay
// RFC 3339 strings, so nothing is lost.
func datetimes(obj *node, keys ...string) {
	for _, k := range keys {
		v := obj.get(k)
		if v == nil || v.kind != kString || len(v.s) != len("2006-01-02T15:04:05Z") || v.s[len(v.s)-1] != 'Z' {
			continue
		}
		if _, err := time.Parse(time.RFC3339, v.s); err == nil {
			obj.set(k, typed(typeDateTime, v))
		}
	}
}
