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
	FormatVersion = "1.1"
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
	knownInfo = []string{keyDisplayName, keyAutoRandom, keyGroupID, keyExceptGroups, keyTFDescription, keyTFSuspended}
)

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
	// Extra are fields to write besides the task's own: the unknown
	// fields of an Import (Import.Extra), so a task imported from a newer
	// or foreign file keeps them. A path must be a header field
	// (one element), or a field of "task", "task.TASK_INFO_PARAMS" or
	// "task.TASK_ADDITIONAL_PARAMS" that this version does not write.
	// The task's own opaque fields (task.Task.Opaque, set by an import)
	// are written too; an Extra entry with the same path replaces one of
	// them. Password and secret fields (IsSecretField) are never written:
	// ExportReport.SecretsDropped names them.
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
	tp, settingsKeys, err := taskParams(t)
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
	if rep.SecretsDropped, err = addExtra(doc, tp, settingsKeys, extra, t.Schedule.Kind); err != nil {
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
func taskParams(t *task.Task) (*node, map[string]bool, error) {
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
	publicSchedule(tp, t.Schedule)

	info := newObject()
	info.set(keyDisplayName, strNode(t.Name))
	info.set(keyAutoRandom, boolNode(t.Schedule.RandomDelay.Mode == schedule.DelayAutomatic))
	if t.Scope.Kind != scope.Group {
		// The Open API's mark of a task for a set of devices.
		info.set(keyGroupID, numNode("-1"))
	} else {
		// The Open API's group ids are integers: a group id that is not
		// one is carried by TF_SCOPE alone, and the excluded groups are
		// written only when all of them are integers.
		if g, ok := groupNode(t.Scope.Group); ok {
			info.set(keyGroupID, g)
		}
		if len(t.Scope.ExcludedGroups) > 0 {
			arr := &node{kind: kArray}
			for _, g := range t.Scope.ExcludedGroups {
				if n, ok := groupNode(g); ok {
					arr.kids = append(arr.kids, n)
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
		{keyTFNotifications, t.Notifications},
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
func addExtra(doc, tp *node, settingsKeys map[string]bool, extra []Field, kind schedule.Kind) ([]string, error) {
	var bad ValidationErrors
	var dropped []string
	seen := map[string]bool{}
	info, _ := paramsObject(tp.get(keyInfo), "", false)
	add, _ := paramsObject(tp.get(keyAdditional), "", false)
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
			if tp.get(key) != nil && kind != schedule.Manual && kind != "" {
				continue // the task's own schedule replaced the server's
			}
			if v, err := decodeTree(bytes.NewReader(f.Value), defaultLimits()); err == nil {
				dst.set(key, v)
			} else {
				bad = append(bad, errs.Invalid(field+".value", "", "is not valid JSON"))
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
