package klt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/mail"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

// ParseOptions bound what Parse accepts. Zero fields take the documented
// defaults; negative values are refused.
type ParseOptions struct {
	// MaxSize is the largest document in bytes (default DefaultMaxSize).
	MaxSize int64
	// MaxDepth is the deepest nesting (default DefaultMaxDepth).
	MaxDepth int
	// MaxValues is the most JSON values (default DefaultMaxValues).
	MaxValues int
	// AnyType accepts a task whose type reg does not have, so that a
	// console can show any task: its Settings stay nil and every field of
	// TASK_ADDITIONAL_PARAMS is kept as an opaque field (Import.Extra),
	// with a WarnUnregisteredType warning. Such an import cannot be
	// committed until the type is registered. Default: refused.
	AnyType bool
}

func (o ParseOptions) limits() (limits, error) {
	var bad ValidationErrors
	if o.MaxSize < 0 {
		bad = append(bad, errs.Invalid("MaxSize", fmt.Sprint(o.MaxSize), "must be 0 (the default) or positive"))
	}
	if o.MaxDepth < 0 {
		bad = append(bad, errs.Invalid("MaxDepth", fmt.Sprint(o.MaxDepth), "must be 0 (the default) or positive"))
	}
	if o.MaxValues < 0 {
		bad = append(bad, errs.Invalid("MaxValues", fmt.Sprint(o.MaxValues), "must be 0 (the default) or positive"))
	}
	l := defaultLimits()
	if o.MaxSize > 0 {
		l.size = o.MaxSize
	}
	if o.MaxDepth > 0 {
		l.depth = o.MaxDepth
	}
	if o.MaxValues > 0 {
		l.values = o.MaxValues
	}
	return l, bad.Err()
}

// Header is a document's header. A PxgRetVal object has none: its
// Format is "" and FromOpenAPI is set on the Import.
type Header struct {
	Format         string
	FormatVersion  string
	LibraryVersion string
	ExportedAt     time.Time
}

// WarningCode classifies a Warning.
type WarningCode string

// Warning codes.
const (
	// WarnCredentials: the task runs under a specified account whose
	// password was not exported; enter it again (set Import.Task.Account)
	// or the task runs under the default account.
	WarnCredentials WarningCode = "credentials_required"
	// WarnUnknownField: a field this version does not know; it is kept in
	// Import.Extra and written back by an export with those fields.
	WarnUnknownField WarningCode = "unknown_field"
	// WarnUpgraded: the document was written in an older format version
	// and was upgraded.
	WarnUpgraded WarningCode = "upgraded"
	// WarnNewerMinor: the document was written by a newer minor version;
	// the fields it adds are unknown fields.
	WarnNewerMinor WarningCode = "newer_minor_version"
	// WarnPrivateData: a settings value looks like private data
	// (credentials.ScanSettings).
	WarnPrivateData WarningCode = "private_data"
	// WarnScheduleNotConverted: a PxgRetVal's schedule (TASKSCH_TYPE and
	// the TASKSCH_* fields) has no TF_SCHEDULE; the task is imported with
	// a manual start, and the schedule fields are kept as unknown fields.
	WarnScheduleNotConverted WarningCode = "schedule_not_converted"
	// WarnIgnored: a field that is not kept: the other output values of
	// an Open API response, or a KLPRSS_EVPNotifications that disagrees
	// with the TF_NOTIFICATIONS of a file of an earlier version.
	WarnIgnored WarningCode = "ignored"
	// WarnUnregisteredType: ParseOptions.AnyType accepted a task type the
	// registry does not have; its settings are kept as opaque fields.
	WarnUnregisteredType WarningCode = "unregistered_type"
	// WarnNotificationsKept: a KLPRSS_EVPNotifications container has
	// details task.Notifications does not hold (another channel, event
	// type or severity, storage in the server's OS event log, or settings
	// that differ between severities); the task gets the nearest
	// notification settings, and the container is kept verbatim
	// (Import.Extra) and exported again while the task's notifications
	// still read the same.
	WarnNotificationsKept WarningCode = "notifications_kept_verbatim"
)

// Warning is something the administrator should know before committing
// an import. Path is the dotted path in the document; Message never holds
// a secret.
type Warning struct {
	Path    string
	Code    WarningCode
	Message string
}

func (w Warning) String() string {
	if w.Path == "" {
		return string(w.Code) + ": " + w.Message
	}
	return string(w.Code) + " at " + w.Path + ": " + w.Message
}

// Import is a parsed and validated document: what will be imported. It
// is step 1 of the product documentation's import; Commit is step 2.
type Import struct {
	// Task is the task to create: every setting of the file, with no ID,
	// scope, timestamps or revisions, and the default account (set
	// Account to re-enter the credentials of AccountName before Commit).
	// A caller may change it before Commit.
	Task task.Task
	// SourceScope is the scope recorded in the file (TF_SCOPE, or the
	// group of PRTS_TASK_GROUPID), for a console to propose; nil when the
	// file has none. Commit uses the scope the caller chooses.
	SourceScope *scope.Scope
	// AccountName is the run-as account the exported task used ("" for
	// the default account). Its password is never in a file.
	AccountName string
	// Header is the document's header.
	Header Header
	// FromOpenAPI is set for a PxgRetVal object (an Open API task read).
	FromOpenAPI bool
	// Extra are the fields this version does not map, kept verbatim,
	// ordered by path; Task.Opaque holds the same fields (EncodeOpaque),
	// so the stored task writes them back on export without the caller
	// passing them. Password and secret fields (IsSecretField) are never
	// among them.
	Extra []Field
	// Warnings are what the administrator should see before Commit.
	Warnings []Warning
}

// Parse reads a KLT document (or a PxgRetVal object returned by the Open
// API's task-reading calls) and validates it against reg: step 1 of an
// import. Nothing is stored.
//
// The input is read as a stream and refused, before it is held in memory,
// when it is larger than MaxSize, is not UTF-8, repeats a key in an
// object, nests deeper than MaxDepth or holds more than MaxValues values.
//
// Errors: ErrInvalid (*ValidationError or ValidationErrors) naming the
// dotted path in the document ("task.TF_SCHEDULE.every",
// "task.TASK_INFO_PARAMS.DisplayName", "task.TASK_ADDITIONAL_PARAMS.max_file_size_mb");
// a *VersionError for a newer major format version; a *NotExportableError
// for an Administration Server task type.
func Parse(r io.Reader, reg *task.Registry, opts ParseOptions) (*Import, error) {
	if reg == nil {
		return nil, errs.Invalid("registry", "", "is required")
	}
	lim, err := opts.limits()
	if err != nil {
		return nil, err
	}
	root, err := decodeTree(r, lim)
	if err != nil {
		return nil, err
	}
	if root.kind != kObject {
		return nil, errs.Invalid("", "", "must be a JSON object")
	}
	imp := &Import{}
	p := &parser{imp: imp, reg: reg, anyType: opts.AnyType}
	var tp *node
	var base string
	if root.get(keyFormat) == nil && root.get(keyPxgRetVal) != nil {
		imp.FromOpenAPI = true
		base = keyPxgRetVal
		if tp, err = paramsObject(root.get(keyPxgRetVal), base, true); err != nil {
			return nil, err
		}
		if tp.kind != kObject {
			return nil, errs.Invalid(base, "", "must be a params object")
		}
		for _, k := range root.keys {
			if k != keyPxgRetVal {
				p.warn(k, WarnIgnored, "not part of the task; not kept")
			}
		}
	} else {
		base = keyTask
		if tp, err = p.header(root); err != nil {
			return nil, err
		}
	}
	p.base = base
	if err := p.task(tp); err != nil {
		return nil, err
	}
	if n := p.unknown - maxUnknownWarnings; n > 0 {
		p.warn(base, WarnUnknownField, fmt.Sprintf("and %d more fields not known to this version; kept verbatim (see Import.Extra)", n))
	}
	slices.SortFunc(imp.Extra, func(a, b Field) int { return slices.Compare(a.Path, b.Path) })
	imp.Task.Opaque = EncodeOpaque(imp.Extra)
	return imp, nil
}

type parser struct {
	imp   *Import
	reg   *task.Registry
	base  string
	bad   ValidationErrors
	fatal error // a refusal that is not about a field
	// unknown counts the unknown fields kept.
	unknown int
	// flat is set for an Open API attribute list (no TASK_INFO_PARAMS).
	flat    bool
	anyType bool
}

func (p *parser) warn(path string, code WarningCode, msg string) {
	p.imp.Warnings = append(p.imp.Warnings, Warning{Path: path, Code: code, Message: msg})
}

func (p *parser) fail(err error) {
	switch e := err.(type) {
	case nil:
	case *ValidationError:
		p.bad = append(p.bad, e)
	case ValidationErrors:
		p.bad = append(p.bad, e...)
	default:
		p.bad = append(p.bad, errs.Invalid("", "", err.Error()))
	}
}

func (p *parser) extra(srcPath string, path []string, v *node) {
	p.keep(srcPath, path, v, true)
}

// keep keeps v verbatim as an opaque field (its secrets dropped); unknown
// says it is a field this version does not know (counted and warned of).
func (p *parser) keep(srcPath string, path []string, v *node, unknown bool) {
	if IsSecretField(path[len(path)-1]) {
		p.dropSecret(srcPath)
		return
	}
	for _, sp := range stripSecrets(v, srcPath) {
		p.dropSecret(sp)
	}
	// An opaque value must be one Export can write again: a valid Open
	// API typed value all the way down.
	if _, err := paramsToPlain(v, srcPath); err != nil {
		p.fail(err)
		return
	}
	p.imp.Extra = append(grow(p.imp.Extra), Field{Path: path, Value: compact(v)})
	if !unknown {
		return
	}
	p.unknown++
	if p.unknown <= maxUnknownWarnings {
		p.warn(srcPath, WarnUnknownField, "not known to this version; kept verbatim")
	}
}

// maxUnknownWarnings is how many unknown fields get a warning each; the
// rest are counted in one more WarnUnknownField warning (all are kept in
// Import.Extra), so a document of many vendor fields costs one warning
// per field at most this many times.
const maxUnknownWarnings = 100

// dropSecret reports a password or secret field that is not imported.
func (p *parser) dropSecret(srcPath string) {
	p.warn(srcPath, WarnCredentials, "a password or secret field: never imported or exported, encrypted or not; enter it again on this side")
}

// header checks the header and upgrades older versions; it returns the
// task's params.
func (p *parser) header(root *node) (*node, error) {
	h := &p.imp.Header
	var bad ValidationErrors
	str := func(key string) string {
		n := root.get(key)
		if n == nil {
			bad = append(bad, errs.Invalid(key, "", "is required"))
			return ""
		}
		if n.kind != kString {
			bad = append(bad, errs.Invalid(key, "", "must be a string"))
			return ""
		}
		return n.s
	}
	h.Format = str(keyFormat)
	if err := bad.Err(); err != nil {
		return nil, errs.Invalid(keyFormat, "", `is required: the document is neither a taskfleet KLT file nor an Open API {"PxgRetVal": …} object`)
	}
	if h.Format != Format {
		return nil, errs.Invalid(keyFormat, short(h.Format), fmt.Sprintf("must be %q", Format))
	}
	h.FormatVersion = str(keyFormatVersion)
	if err := bad.Err(); err != nil {
		return nil, err
	}
	major, minor, ok := splitVersion(h.FormatVersion)
	if !ok {
		return nil, errs.Invalid(keyFormatVersion, short(h.FormatVersion), `must be "MAJOR.MINOR", for example "1.0"`)
	}
	if major > FormatMajor {
		return nil, &VersionError{Found: short(h.FormatVersion), Supported: FormatVersion}
	}
	_, ourMinor, _ := splitVersion(FormatVersion)
	if major == FormatMajor && minor > ourMinor {
		p.warn(keyFormatVersion, WarnNewerMinor, fmt.Sprintf("written by a newer version (%s); fields it added are kept as unknown fields", h.FormatVersion))
	}
	h.LibraryVersion = str(keyLibraryVersion)
	at := str(keyExportedAt)
	if at != "" {
		t, err := time.Parse(time.RFC3339, at)
		if err != nil || !strings.HasSuffix(at, "Z") {
			bad = append(bad, errs.Invalid(keyExportedAt, short(at), `must be a UTC time "YYYY-MM-DDTHH:MM:SSZ"`))
		}
		h.ExportedAt = t.UTC()
	}
	tn := root.get(keyTask)
	if tn == nil {
		bad = append(bad, errs.Invalid(keyTask, "", "is required"))
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	tp, err := paramsObject(tn, keyTask, false)
	if err != nil {
		return nil, err
	}
	if major < FormatMajor {
		upgradeV0(tp)
		p.warn(keyFormatVersion, WarnUpgraded, fmt.Sprintf("written in format %s; upgraded to %s", h.FormatVersion, FormatVersion))
	}
	for i, k := range root.keys {
		if !contains(knownRoot, k) {
			p.extra(k, []string{k}, root.kids[i])
		}
	}
	return tp, nil
}

// upgradeV0 rewrites a format 0.x task: 0.x kept the description in a
// top-level TF_COMMENT string instead of TASK_INFO_PARAMS.TF_DESCRIPTION.
func upgradeV0(tp *node) {
	c := tp.get(keyV0Comment)
	if c == nil {
		return
	}
	tp.del(keyV0Comment)
	info, err := paramsObject(tp.get(keyInfo), "", false)
	if err != nil || info == nil {
		info = newObject()
		tp.set(keyInfo, paramsNode(info))
	}
	if info.get(keyTFDescription) == nil {
		info.set(keyTFDescription, c)
	}
}

func splitVersion(v string) (int, int, bool) {
	a, b, ok := strings.Cut(v, ".")
	if !ok {
		return 0, 0, false
	}
	major, err1 := strconv.ParseUint(a, 10, 16)
	minor, err2 := strconv.ParseUint(b, 10, 16)
	if err1 != nil || err2 != nil || strconv.FormatUint(major, 10) != a || strconv.FormatUint(minor, 10) != b {
		return 0, 0, false
	}
	return int(major), int(minor), true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// infoPath names a member of TASK_INFO_PARAMS (of the task itself in an
// attribute list).
func (p *parser) infoPath(keys ...string) string {
	if p.flat {
		return p.path(keys...)
	}
	return p.path(append([]string{keyInfo}, keys...)...)
}

func (p *parser) path(keys ...string) string {
	return strings.Join(append([]string{p.base}, keys...), ".")
}

// str reads an optional string member.
func (p *parser) str(obj *node, key string, path string, required bool) (string, bool) {
	n := obj.get(key)
	if n == nil {
		if required {
			p.fail(errs.Invalid(path, "", "is required"))
		}
		return "", false
	}
	if n.kind != kString {
		p.fail(errs.Invalid(path, "", "must be a string"))
		return "", false
	}
	return n.s, true
}

func (p *parser) boolean(obj *node, key, path string) (bool, bool) {
	n := obj.get(key)
	if n == nil {
		return false, false
	}
	if n.kind != kBool {
		p.fail(errs.Invalid(path, "", "must be a boolean"))
		return false, false
	}
	return n.b, true
}

// part decodes a TF_ container holding one of our packages' JSON
// encodings into v, strictly.
func (p *parser) part(obj *node, key string, v any) bool {
	n := obj.get(key)
	if n == nil {
		return false
	}
	path := p.path(key)
	if _, err := paramsObject(n, path, false); err != nil {
		p.fail(err)
		return false
	}
	plain, err := paramsToPlain(n, path)
	if err != nil {
		p.fail(err)
		return false
	}
	if err := unmarshalPlain(plain, v, true); err != nil {
		var ve *ValidationError
		var ves ValidationErrors
		switch {
		case errors.As(err, &ves):
			p.fail(errs.Prefix(path, ves))
		case errors.As(err, &ve):
			p.fail(errs.Prefix(path, ve))
		default:
			p.fail(errs.Invalid(path, "", "cannot be decoded: "+err.Error()))
		}
		return false
	}
	return true
}

func (p *parser) task(tp *node) error {
	imp := p.imp
	t := &imp.Task
	flat := p.imp.FromOpenAPI && tp.get(keyInfo) == nil
	for i, k := range tp.keys {
		if contains(knownTask, k) || k == keyComponentName {
			continue
		}
		if flat && (contains(knownInfo, k) || k == keyDisplayNameV10 || k == keySubtype) {
			continue // an attribute of the task-independent settings
		}
		p.extra(p.path(k), []string{keyTask, k}, tp.kids[i])
	}
	var hasType, hasApp bool
	t.Type, hasType = p.str(tp, keyTaskName, p.path(keyTaskName), true)
	t.Application, hasApp = p.str(tp, keyProductName, p.path(keyProductName), true)
	if hasType && t.Type == "" {
		p.fail(errs.Invalid(p.path(keyTaskName), "", "is required"))
	}
	if hasApp && t.Application == "" {
		p.fail(errs.Invalid(p.path(keyProductName), "", "is required"))
	}
	t.ApplicationVersion, _ = p.str(tp, keyProductVersion, p.path(keyProductVersion), false)
	// The component name: mapped when it is the default Export writes
	// (the application), else a server's, kept verbatim.
	if c, ok := p.str(tp, keyComponentName, p.path(keyComponentName), false); ok && c != t.Application {
		p.keep(p.path(keyComponentName), []string{keyTask, keyComponentName}, tp.get(keyComponentName), false)
	}

	// An Open API attribute list (Tasks.GetTask) has no TASK_INFO_PARAMS:
	// its task-independent attributes are members of the task itself.
	p.flat = p.imp.FromOpenAPI && tp.get(keyInfo) == nil
	if p.flat {
		if tp.get(keyDisplayName) == nil {
			if n := tp.get(keyDisplayNameV10); n != nil {
				tp.set(keyDisplayName, n)
				tp.del(keyDisplayNameV10)
			}
		}
	}
	info, err := paramsObject(tp.get(keyInfo), p.path(keyInfo), false)
	if p.flat {
		info, err = tp, nil
	}
	if err != nil {
		p.fail(err)
	}
	if info == nil {
		info = newObject()
		if err == nil {
			p.fail(errs.Invalid(p.path(keyInfo), "", "is required"))
		}
	}
	for i, k := range info.keys {
		if !contains(knownInfo, k) && !p.flat && k != keySubtype {
			p.extra(p.infoPath(k), []string{keyTask, keyInfo, k}, info.kids[i])
		}
	}
	namePath := p.infoPath(keyDisplayName)
	if name, ok := p.str(info, keyDisplayName, namePath, true); ok {
		t.Name = name
		p.fail(checkText(namePath, name, MaxDisplayNameLength, true))
	}
	// The schedule subtype: mapped when it is DefaultScheduleSubtype, else
	// a server's, kept verbatim.
	subPath := p.infoPath(keySubtype)
	if v, ok := p.pubIntIn(info, keySubtype, subPath, math.MinInt32, math.MaxInt32, defaultSubtype); ok && v != defaultSubtype {
		p.keep(subPath, []string{keyTask, keyInfo, keySubtype}, info.get(keySubtype), false)
	}
	descPath := p.infoPath(keyTFDescription)
	if d, ok := p.str(info, keyTFDescription, descPath, false); ok {
		t.Description = d
		p.fail(checkText(descPath, d, task.MaxDescriptionLength, false))
	}
	t.Suspended, _ = p.boolean(info, keyTFSuspended, p.infoPath(keyTFSuspended))

	p.schedule(tp, info)
	p.scope(tp, info)

	addPath := p.path(keyAdditional)
	addObj, _ := paramsObject(tp.get(keyAdditional), addPath, false) // refused by settings when bad
	if addObj == nil {
		addObj = newObject()
	}
	if p.part(tp, keyTFRestart, &t.Restart) {
		// Decoded strictly and validated by restart.Policy; the public
		// restart options must agree with it.
		want := newObject()
		publicRestart(want, t.Restart)
		p.checkMirror(addObj, want, addPath, p.path(keyTFRestart))
	} else if tp.get(keyTFRestart) == nil {
		if pol, ok := p.restartFromPublic(addObj, addPath); ok {
			t.Restart = pol
		} else {
			t.Restart = restart.Default()
		}
	}
	// Notifications: KLPRSS_EVPNotifications, or TF_NOTIFICATIONS of a
	// file written by an earlier version (authoritative when both are
	// there: the public container is then a server's, kept verbatim).
	notifyPath := p.infoPath(keyNotifications)
	pubNotify := info.get(keyNotifications)
	if p.part(tp, keyTFNotifications, &t.Notifications) {
		p.fail(errs.Prefix(p.path(keyTFNotifications), checkNotifications(t.Notifications)))
		if pubNotify != nil {
			// A server's container an earlier version kept verbatim: kept
			// while it reads as TF_NOTIFICATIONS, else the task's own
			// notifications replace it.
			q := &parser{imp: &Import{}}
			if n, ok := q.notificationsFromPublic(pubNotify, notifyPath); ok && equalNotifications(n, t.Notifications) {
				p.keep(notifyPath, []string{keyTask, keyInfo, keyNotifications}, pubNotify, false)
			} else {
				p.warn(notifyPath, WarnIgnored, "disagrees with "+p.path(keyTFNotifications)+", which a file of an earlier version holds authoritatively; not kept: an export writes the task's notifications")
			}
		}
	} else if pubNotify != nil && tp.get(keyTFNotifications) == nil {
		if n, ok := p.notificationsFromPublic(pubNotify, notifyPath); ok {
			t.Notifications = n
			if string(compact(notificationsNode(n))) != string(compact(pubNotify)) {
				p.keep(notifyPath, []string{keyTask, keyInfo, keyNotifications}, pubNotify, false)
				p.warn(notifyPath, WarnNotificationsKept, "has details taskfleet's notification settings do not hold (other channels, event types or storage); the task uses the nearest settings, and the container is written back verbatim while they are unchanged")
			}
		}
	}
	if p.part(tp, keyTFSecurity, &t.Security) {
		p.fail(errs.Prefix(p.path(keyTFSecurity), checkSecurity(t.Security)))
	}

	// The account name: klprts-TaskAccountUser, or TF_ACCOUNT_NAME of a
	// format 1.0 file.
	accObj, accKey, accPath := addObj, keyAccountUser, p.path(keyAdditional, keyAccountUser)
	if addObj.get(keyAccountUser) == nil {
		accObj, accKey, accPath = tp, keyTFAccountName, p.path(keyTFAccountName)
	}
	if name, ok := p.str(accObj, accKey, accPath, false); ok {
		if err := checkText(accPath, name, credentials.MaxAccountNameLength, true); err != nil {
			p.fail(err)
		} else {
			imp.AccountName = name
			p.warn(accPath, WarnCredentials, "the task runs under a specified account whose password is not exported; enter the password again, or the task runs under the default account")
		}
	}

	if t.Type != "" && t.Application != "" {
		p.settings(tp)
	}
	if p.fatal != nil {
		return p.fatal
	}
	return p.bad.Err()
}

func (p *parser) schedule(tp, info *node) {
	t := &p.imp.Task
	runMissed, hasRunMissed := p.boolean(tp, keyRunMissed, p.path(keyRunMissed))
	autoRand, hasAutoRand := p.boolean(info, keyAutoRandom, p.infoPath(keyAutoRandom))
	schType, hasSchType := int64(0), false
	if n := tp.get(keyScheduleType); n != nil {
		v, ok, isInt := integer(n.s)
		if n.kind != kNumber || !ok || !isInt {
			p.fail(errs.Invalid(p.path(keyScheduleType), "", "must be an integer schedule type id"))
		} else {
			schType, hasSchType = v, true
		}
	}
	if tp.get(keyTFSchedule) == nil {
		if !hasSchType && tp.get(keyEventType) == nil {
			s := schedule.Default(schedule.Manual, time.Time{}, nil)
			s.RunMissed = runMissed
			if autoRand {
				s.RandomDelay.Mode = schedule.DelayAutomatic
			}
			t.Schedule = s
			return
		}
		s, converted, ok := p.scheduleFromPublic(tp, schType, runMissed, autoRand)
		if !converted {
			// Not converted: a manual start, and the server's schedule
			// fields travel on as opaque fields.
			s = schedule.Default(schedule.Manual, time.Time{}, nil)
			s.RunMissed = runMissed
			if autoRand {
				s.RandomDelay.Mode = schedule.DelayAutomatic
			}
		}
		if ok {
			t.Schedule = s
		}
		// Type 3 (once a week) reads as days of the week: its fields are
		// kept verbatim, to be written back while they describe the
		// task's schedule.
		p.keepSchedule(tp, s, !converted || schType == schOnceWeek)
		return
	}
	if !p.part(tp, keyTFSchedule, &t.Schedule) {
		return
	}
	s := t.Schedule
	if hasAutoRand && autoRand != (s.RandomDelay.Mode == schedule.DelayAutomatic) {
		p.fail(errs.Invalid(p.infoPath(keyAutoRandom), "", "disagrees with "+p.path(keyTFSchedule)+": random_delay.mode is "+string(s.RandomDelay.Mode)))
	}
	if hasRunMissed && runMissed != s.RunMissed {
		p.fail(errs.Invalid(p.path(keyRunMissed), "", "disagrees with "+p.path(keyTFSchedule)+": run_missed is "+strconv.FormatBool(s.RunMissed)))
	}
	// Public fields of another type that describe the same schedule (a
	// server's type 3, written back) are kept verbatim; others must agree.
	p.keepSchedule(tp, s, describesSchedule(tp, s))
}

// keepSchedule sorts the public schedule fields of a document once its
// schedule s is known: a field Export writes for s with the same value is
// mapped; a field s does not use is kept as an opaque field, as is every
// field of a schedule that was not converted (all set) or of a manual
// TF_SCHEDULE (a server schedule an earlier import did not convert); a
// field that disagrees with a TF_SCHEDULE of another kind is refused.
func (p *parser) keepSchedule(tp *node, s schedule.Schedule, all bool) {
	written := newObject()
	publicSchedule(written, s)
	for _, k := range append([]string{keyScheduleType}, publicScheduleKeys...) {
		n := tp.get(k)
		if n == nil {
			continue
		}
		w := written.get(k)
		switch {
		case w != nil && string(compact(w)) == string(compact(n)):
			// mapped (also for a schedule that was not converted: the
			// value is the one the manual start writes)
		case all || w == nil || s.Kind == schedule.Manual:
			p.extra(p.path(k), []string{keyTask, k}, n)
		default:
			p.fail(errs.Invalid(p.path(k), short(string(compact(n))), fmt.Sprintf("disagrees with %s: a %s schedule has %s", p.path(keyTFSchedule), s.Kind, short(string(compact(w))))))
		}
	}
}

func (p *parser) scope(tp, info *node) {
	var group *scope.GroupID
	var except []scope.GroupID
	gpath := p.infoPath(keyGroupID)
	if n := info.get(keyGroupID); n != nil {
		if g, ok := p.groupID(n, gpath); ok && g != "-1" {
			group = &g
		}
	}
	epath := p.infoPath(keyExceptGroups)
	if n := info.get(keyExceptGroups); n != nil {
		if n.kind != kArray {
			p.fail(errs.Invalid(epath, "", "must be an array of group ids"))
		} else {
			for i, k := range n.kids {
				if g, ok := p.groupID(k, fmt.Sprintf("%s[%d]", epath, i)); ok {
					except = append(except, g)
				}
			}
		}
	}
	hosts, hasHosts := p.hostList(tp)
	var sc scope.Scope
	if p.part(tp, keyTFScope, &sc) {
		if err := sc.Validate(); err != nil {
			p.fail(errs.Prefix(p.path(keyTFScope), err))
			return
		}
		if tp.get(keyHostList) != nil && (sc.Kind != scope.Devices || !slices.Equal(hosts, sc.Devices)) {
			p.fail(errs.Invalid(p.path(keyHostList), "", "disagrees with "+p.path(keyTFScope, "devices")))
		}
		// The public ids mirror TF_SCOPE's where those are integers;
		// others are the server's numbers for them (ExportOptions.GroupIDs).
		if group != nil && (sc.Kind != scope.Group || !mirrorsGroup(*group, sc.Group)) {
			p.fail(errs.Invalid(gpath, short(string(*group)), "disagrees with "+p.path(keyTFScope)))
		}
		if info.get(keyExceptGroups) != nil && !mirrorsGroups(except, sc.ExcludedGroups) {
			p.fail(errs.Invalid(epath, "", "disagrees with "+p.path(keyTFScope, "excluded_groups")))
		}
		p.imp.SourceScope = &sc
		return
	}
	if tp.get(keyTFScope) == nil && hasHosts {
		if group != nil {
			p.fail(errs.Invalid(p.path(keyHostList), "", "a task for specific devices has no group: "+gpath+" must be -1 or absent"))
			return
		}
		sc = scope.Scope{Kind: scope.Devices, Devices: hosts}
		if err := sc.Validate(); err != nil {
			p.fail(errs.Prefix(p.path(keyHostList), err))
			return
		}
		p.imp.SourceScope = &sc
		return
	}
	if tp.get(keyTFScope) == nil && group != nil {
		sc = scope.Scope{Kind: scope.Group, Group: *group, ExcludedGroups: except}
		if err := sc.Validate(); err != nil {
			p.fail(errs.Prefix(p.path(keyInfo), err))
			return
		}
		p.imp.SourceScope = &sc
	}
}

// mirrorsGroup reports whether the public group id pub can stand for
// TF_SCOPE's id own: the same id when own is an integer (Export writes it
// as it is), else any integer (the server's number for it).
func mirrorsGroup(pub, own scope.GroupID) bool {
	if _, ok := groupNode(own); ok || pub == own {
		return pub == own // (format 0.x wrote string ids as strings)
	}
	_, ok := groupNode(pub)
	return ok
}

func mirrorsGroups(pub, own []scope.GroupID) bool {
	if len(pub) != len(own) {
		return false
	}
	for i := range pub {
		if !mirrorsGroup(pub[i], own[i]) {
			return false
		}
	}
	return true
}

// groupID reads a group id written as paramInt or as a string.
func (p *parser) groupID(n *node, path string) (scope.GroupID, bool) {
	switch n.kind {
	case kString:
		return scope.GroupID(n.s), true
	case kNumber:
		if v, ok, isInt := integer(n.s); ok && isInt {
			return scope.GroupID(strconv.FormatInt(v, 10)), true
		}
	}
	p.fail(errs.Invalid(path, "", "must be a group id (an integer or a string)"))
	return "", false
}

// settings decodes TASK_ADDITIONAL_PARAMS into the registered type.
func (p *parser) settings(tp *node) {
	t := &p.imp.Task
	tt, ok := p.reg.Lookup(t.Application, t.Type)
	if !ok && p.anyType {
		p.warn(p.path(keyTaskName), WarnUnregisteredType, fmt.Sprintf("no task type %q is registered for application %q; its settings are kept as opaque fields and shown as they are", short(t.Type), short(t.Application)))
		tt, ok = task.TaskType{Application: t.Application, Name: t.Type}, true
	}
	if !ok {
		p.fail(errs.Invalid(p.path(keyTaskName), short(t.Type), fmt.Sprintf("no task type %q is registered for application %q", short(t.Type), short(t.Application))))
		return
	}
	if tt.ServerTask || tt.NotExportable {
		p.fatal = &NotExportableError{Application: tt.Application, Type: tt.Name, Reason: "Administration Server tasks and non-exportable types cannot be imported"}
		return
	}
	path := p.path(keyAdditional)
	var known map[string]bool
	if tt.Settings != nil {
		known = jsonFieldNames(reflect.TypeOf(tt.Settings))
	}
	own := newObject()
	if n := tp.get(keyAdditional); n != nil {
		if _, err := paramsObject(n, path, false); err != nil {
			p.fail(err)
			return
		}
		obj := n.get("value")
		typeErrs := 0
		defer func() {
			if typeErrs > 0 {
				t.Settings = nil
			}
		}()
		var fields map[string]field
		if tt.Settings != nil {
			fields = structFields(reflect.TypeOf(tt.Settings))
		}
		for i, k := range obj.keys {
			raw := obj.kids[i]
			if known[k] {
				// Declared settings are checked against their Open API
				// types (typed.go) as they are converted.
				f := fields[k]
				plain, err := fromTyped(raw, f.typ, f.tag, join(path, k))
				if err != nil {
					p.fail(err)
					typeErrs++
					continue
				}
				own.set(k, plain)
				continue
			}
			if isPublicAdditional(k) {
				continue // mapped: the restart options and the account
			}
			p.extra(p.path(keyAdditional, k), []string{keyTask, keyAdditional, k}, raw)
		}
		if typeErrs > 0 {
			return // the settings are not decoded with values missing
		}
	} else if tt.Settings != nil {
		// No settings in the file: the type's defaults, as a task created
		// without settings gets.
		var err error
		if own, err = settingsTree(tt.Settings); err != nil {
			p.fail(errs.Prefix(path, err))
			return
		}
	}
	if tt.Settings == nil {
		return
	}
	st := reflect.TypeOf(tt.Settings)
	ptr := st.Kind() == reflect.Pointer
	if ptr {
		st = st.Elem()
	}
	v := reflect.New(st)
	if err := unmarshalPlain(own, v.Interface(), true); err != nil {
		p.fail(errs.Invalid(path, "", "cannot be decoded as "+st.String()+": "+err.Error()))
		return
	}
	if ptr {
		t.Settings = v.Interface()
	} else {
		t.Settings = v.Elem().Interface()
	}
	// The task package's own check, so an import reports exactly what
	// Create would; its "settings." paths become the document's path.
	if err := p.reg.ValidateSettings(t.Application, t.Type, t.Settings); err != nil {
		p.fail(reroot(err, "settings", path))
		t.Settings = nil
		return
	}
	for _, f := range credentials.ScanSettings(t.Settings) {
		fp := strings.TrimSuffix(path+"."+strings.TrimPrefix(f.Path, "$."), ".")
		p.warn(fp, WarnPrivateData, "looks like private data ("+string(f.Reason)+"); the product documentation advises against private data in task settings")
	}
}

// reroot renames the leading path element from of each field in a
// validation error to to ("settings.max_file_size_mb" ->
// "task.TASK_ADDITIONAL_PARAMS.max_file_size_mb").
func reroot(err error, from, to string) error {
	move := func(e *ValidationError) *ValidationError {
		c := *e
		switch {
		case c.Field == from:
			c.Field = to
		case strings.HasPrefix(c.Field, from+"."), strings.HasPrefix(c.Field, from+"["):
			c.Field = to + c.Field[len(from):]
		}
		return &c
	}
	switch e := err.(type) {
	case *ValidationError:
		return move(e)
	case ValidationErrors:
		out := make(ValidationErrors, len(e))
		for i, v := range e {
			out[i] = move(v)
		}
		return out
	}
	return err
}

// checkText applies the task package's rules for names and descriptions.
func checkText(field, v string, max int, required bool) error {
	switch {
	case required && strings.TrimSpace(v) == "":
		return errs.Invalid(field, "", "is required")
	case utf8.RuneCountInString(v) > max:
		return errs.Invalid(field, "", fmt.Sprintf("must be at most %d characters", max))
	case required && v != strings.TrimSpace(v):
		return errs.Invalid(field, short(v), "must not begin or end with spaces")
	}
	for _, r := range v {
		if unicode.IsControl(r) && (required || (r != '\n' && r != '\r' && r != '\t')) {
			return errs.Invalid(field, "", fmt.Sprintf("must not contain the control character %U", r))
		}
	}
	return nil
}

func checkNotifications(n task.Notifications) error {
	var bad ValidationErrors
	switch n.History {
	case "", task.HistoryAll, task.HistoryProgress, task.HistoryResults:
	default:
		bad = append(bad, errs.Invalid("history", string(n.History), "must be one of: all, progress, results"))
	}
	if n.RetentionDays != 0 && (n.RetentionDays < task.MinRetentionDays || n.RetentionDays > task.MaxRetentionDays) {
		bad = append(bad, errs.Range("retention_days", n.RetentionDays, task.MinRetentionDays, task.MaxRetentionDays))
	}
	if n.NoServerHistory && n.RetentionDays != 0 {
		bad = append(bad, errs.Invalid("retention_days", fmt.Sprint(n.RetentionDays), "must be 0 when server history is off"))
	}
	if len(n.Email) > task.MaxEmailRecipients {
		bad = append(bad, errs.Invalid("email", "", fmt.Sprintf("must have at most %d recipients", task.MaxEmailRecipients)))
	}
	for i, a := range n.Email {
		if addr, err := mail.ParseAddress(a); err != nil || addr.Address != a {
			bad = append(bad, errs.Invalid(fmt.Sprintf("email[%d]", i), short(a), "must be a plain e-mail address"))
		}
	}
	return bad.Err()
}

// checkSecurity applies the task package's rules for access lists (a
// group scope, which allows none, is checked by Commit).
func checkSecurity(s task.Security) error {
	var bad ValidationErrors
	if len(s.ACL) > task.MaxACLEntries {
		bad = append(bad, errs.Invalid("acl", "", fmt.Sprintf("must have at most %d entries", task.MaxACLEntries)))
	}
	valid := func(p task.Permission) bool {
		switch p {
		case task.PermRead, task.PermModify, task.PermExecute, task.PermDelete:
			return true
		}
		return false
	}
	for i, e := range s.ACL {
		f := fmt.Sprintf("acl[%d]", i)
		if strings.TrimSpace(e.Principal) == "" {
			bad = append(bad, errs.Invalid(f+".principal", "", "is required"))
		}
		if len(e.Allow) == 0 && len(e.Deny) == 0 {
			bad = append(bad, errs.Invalid(f, "", "must allow or deny at least one permission"))
		}
		for j, p := range e.Allow {
			if !valid(p) {
				bad = append(bad, errs.Invalid(fmt.Sprintf("%s.allow[%d]", f, j), short(string(p)), "must be one of: read, modify, execute, delete"))
			}
		}
		for j, p := range e.Deny {
			if !valid(p) {
				bad = append(bad, errs.Invalid(fmt.Sprintf("%s.deny[%d]", f, j), short(string(p)), "must be one of: read, modify, execute, delete"))
			}
		}
	}
	return bad.Err()
}

// Commit creates the imported task in the scope the caller chose (a
// group, device addresses, devices, or a device selection): step 2 of the
// product documentation's import. A name that is taken gets the next free " (n)" index,
// also when several imports of the same name race (task.Runtime's
// CreateWithFreeName). The task starts by its schedule. Commit may be
// called again (each call creates a task).
//
// Errors: ErrInvalid for a local or server scope and for everything
// task.Manager.Create refuses (paths of the task model: "scope.group",
// "settings.max_file_size_mb"); ErrPermission, ErrConflict as Create.
func (imp *Import) Commit(ctx context.Context, m *task.Manager, actor task.Actor, sc scope.Scope) (*task.Task, error) {
	if imp == nil {
		return nil, errs.Invalid("import", "", "is required")
	}
	if m == nil {
		return nil, errs.Invalid("manager", "", "is required")
	}
	switch sc.Kind {
	case scope.Group, scope.Devices, scope.Addresses, scope.Selection:
	default:
		return nil, errs.Invalid("scope.kind", string(sc.Kind), "an imported task is assigned to a group, devices, addresses or a device selection")
	}
	t := imp.Task
	t.Scope = sc
	t.ID, t.Revision, t.SettingsRevision = "", 0, 0
	t.CreatedAt, t.UpdatedAt = time.Time{}, time.Time{}
	t.CreatedBy, t.UpdatedBy = "", ""
	return createWithFreeName(ctx, m, actor, t)
}

// createWithFreeName is the one place klt reaches the Manager's free-name
// creation (the " (n)" index of a taken name, also under races), so that
// it can be pointed at another surface in one edit.
func createWithFreeName(ctx context.Context, m *task.Manager, actor task.Actor, t task.Task) (*task.Task, error) {
	return m.Runtime().CreateWithFreeName(ctx, actor, t, task.ActionImport)
}

// maxErrorValue bounds the document text quoted in an error.
const maxErrorValue = 64

// short truncates document text for an error message.
func short(s string) string {
	if len(s) <= maxErrorValue {
		return s
	}
	i := maxErrorValue
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
