package task

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
)

// Config configures a Manager. Store and Registry are required; every
// other field has a documented default.
type Config struct {
	// Store persists tasks, revisions, results and events.
	Store storage.Store
	// Registry holds the task types.
	Registry *Registry
	// Inventory, when set, is used to check scopes against the device
	// inventory on create and update (groups exist, excluded groups are
	// subgroups, names resolve) and to resolve scopes on Start. Without
	// it, Start fails for every scope but Local, Devices and Server.
	Inventory scope.Inventory
	// Clock is the time source (default: the wall clock).
	Clock clock.Clock
	// Location is the Administration Server's zone, used for defaults
	// such as "today" (default UTC).
	Location *time.Location
	// Logger receives structured logs (default: none). Secrets are never
	// logged.
	Logger zerolog.Logger
	// Authorizer decides who may do what (default: AllowAll, suitable
	// only for single-administrator hosts).
	Authorizer Authorizer
	// Notifier is told about results (default: none).
	Notifier Notifier
	// Dispatcher is the engine that delivers and runs tasks (default:
	// none; Start and Stop then only record states).
	Dispatcher Dispatcher
	// NewID returns a new task id (default: a random UUID).
	NewID func() string
	// CacheSize is how many decoded tasks the Manager keeps, so that
	// reads (Get, List, the engine's result intake) decode a task's
	// stored JSON once per revision instead of at every read (default
	// DefaultCacheSize; negative: no cache). Every read still reads the
	// stored record and uses the cached task only while the record has
	// the revision, update time and body it was decoded from, so replicas that
	// share a database never serve each other's stale settings. Callers
	// always get their own deep copy.
	CacheSize int
}

// Manager is the management API of tasks (the product documentation's task list, task
// properties, start and stop, results, history and revision history). It
// validates, authorizes and records revisions once; the Store only
// persists. A Manager is safe for concurrent use.
type Manager struct {
	store  storage.Store
	reg    *Registry
	inv    scope.Inventory
	clk    clock.Clock
	loc    *time.Location
	log    zerolog.Logger
	authz  Authorizer
	notify Notifier
	disp   Dispatcher
	newID  func() string
	cache  decodedCache
}

// New returns a Manager. It returns an error matching ErrInvalid when
// Store or Registry is missing.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errs.Invalid("Store", "", "is required")
	}
	if cfg.Registry == nil {
		return nil, errs.Invalid("Registry", "", "is required")
	}
	m := &Manager{
		store: cfg.Store, reg: cfg.Registry, inv: cfg.Inventory,
		clk: cfg.Clock, loc: cfg.Location, log: cfg.Logger,
		authz: cfg.Authorizer, notify: cfg.Notifier, disp: cfg.Dispatcher, newID: cfg.NewID,
	}
	if m.clk == nil {
		m.clk = clock.New()
	}
	if m.loc == nil {
		m.loc = time.UTC
	}
	if m.authz == nil {
		m.authz = AllowAll{}
	}
	if m.newID == nil {
		m.newID = randomID
	}
	m.cache.max = cfg.CacheSize
	if m.cache.max == 0 {
		m.cache.max = DefaultCacheSize
	}
	return m, nil
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// now returns the current time in the form stored: UTC, microseconds.
func (m *Manager) now() time.Time { return storage.UTC(m.clk.Now()) }

// Registry returns the manager's registry.
func (m *Manager) Registry() *Registry { return m.reg }

// applyDefaults fills the zero sub-settings with their documented
// defaults and stamps Immediately schedules with the save time.
func (m *Manager) applyDefaults(t *Task, reg *registered, now time.Time) error {
	if t.Schedule.Kind == "" && t.Schedule == (schedule.Schedule{}) {
		t.Schedule = schedule.Default(schedule.Manual, now, m.loc)
	}
	if t.Schedule.Kind == schedule.Immediately && t.Schedule.SavedAt.IsZero() {
		t.Schedule.SavedAt = now
	}
	if t.Restart == (restart.Policy{}) {
		t.Restart = restart.Default()
	}
	if t.Settings == nil && reg != nil {
		v, err := reg.newSettings()
		if err != nil {
			return err
		}
		t.Settings = v
	}
	return nil
}

// typeOf returns the registered type of t or a validation error.
func (m *Manager) typeOf(t *Task) (*registered, error) {
	reg := m.reg.lookup(t.Application, t.Type)
	if reg == nil {
		return nil, errs.Invalid("type", t.Type, fmt.Sprintf("no task type %q is registered for application %q", t.Type, t.Application))
	}
	return reg, nil
}

// checkScope validates the scope against the inventory when there is one.
func (m *Manager) checkScope(ctx context.Context, t *Task) error {
	if m.inv == nil {
		return nil
	}
	if err := t.Scope.ValidateWith(ctx, m.inv); err != nil {
		return errs.Prefix("scope", err)
	}
	return nil
}

// checkAll reports every validation error of t in one round: invalid is
// the result of validate, and op is authorized before the inventory
// checks, whose errors tell which groups and devices exist. An actor
// who may not do op gets invalid when it holds errors (they reveal
// nothing of the inventory), else the permission error. The inventory
// checks run only when the scope is well formed (a malformed scope is
// already in invalid); their errors are added to invalid's.
func (m *Manager) checkAll(ctx context.Context, actor Actor, op Operation, t *Task, invalid error) error {
	if invalid != nil && (m.inv == nil || t.Scope.Validate() != nil) {
		return invalid // no inventory check would run: nothing to add
	}
	if err := m.authorize(ctx, actor, op, t); err != nil {
		if invalid != nil {
			return invalid
		}
		return err
	}
	serr := m.checkScope(ctx, t)
	if serr == nil {
		return invalid
	}
	var bad ValidationErrors
	for _, err := range []error{invalid, serr} {
		switch e := err.(type) {
		case nil:
		case ValidationErrors:
			bad = append(bad, e...)
		case *ValidationError:
			bad = append(bad, e)
		default:
			return err // the inventory failed: not a validation error
		}
	}
	return bad.Err()
}

// Create validates and stores a new task (revision 1) and returns it. The
// ID, timestamps and revision numbers are assigned; zero sub-settings take
// their defaults.
//
// Errors: ErrInvalid (a *ValidationError or ValidationErrors naming each
// bad field), ErrPermission, ErrConflict (the name is taken).
func (m *Manager) Create(ctx context.Context, actor Actor, t Task) (*Task, error) {
	return m.create(ctx, actor, t, ActionCreate)
}

func (m *Manager) create(ctx context.Context, actor Actor, t Task, action RevisionAction) (*Task, error) {
	// An unregistered type is reported with the other errors (reg is nil).
	reg, typeErr := m.typeOf(&t)
	now := m.now()
	if err := m.applyDefaults(&t, reg, now); err != nil {
		return nil, err
	}
	if t.ApplicationVersion == "" && reg != nil {
		t.ApplicationVersion = reg.ApplicationVersion
	}
	if t.Schedule.Kind == schedule.Immediately {
		t.Schedule.SavedAt = now // saving the settings is what fires it
	}
	t.ID = m.newID()
	t.Revision, t.SettingsRevision = 1, 1
	t.CreatedAt, t.UpdatedAt = now, now
	t.CreatedBy, t.UpdatedBy = actor.ID, actor.ID
	// Every validation error in one round, the inventory checks' too;
	// authorization comes before those (see checkAll).
	if err := m.checkAll(ctx, actor, OpCreate, &t, m.validate(&t, reg, typeErr)); err != nil {
		return nil, err
	}
	body, err := encode(&t)
	if err != nil {
		return nil, err
	}
	// The first revision's body is the whole task: it needs no diff.
	diff := []byte(`{"changes":[]}`)
	rec := toRecord(&t, body)
	err = m.store.CreateTask(ctx, storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{
		TaskID: t.ID, Number: 1, Author: actor.ID, At: now, Action: string(action), Body: body, Diff: diff,
	}})
	if err != nil {
		return nil, m.storeErr(err, "create task %q", t.Name)
	}
	shared := m.warm(&rec)
	m.log.Info().Str("task", t.ID).Str("name", t.Name).Str("actor", actor.ID).Str("action", string(action)).Msg("task created")
	m.saved(ctx, shared, &t)
	return &t, nil
}

// storeErr wraps a store error, turning a name conflict into a clear
// message.
func (m *Manager) storeErr(err error, format string, args ...any) error {
	return fmt.Errorf("task: "+format+": %w", append(args, err)...)
}

// Get returns a task: the caller's own copy, which it may modify.
//
// Errors: ErrNotFound, ErrPermission, and a *DecodeError (matching
// ErrUndecodable) for a task whose stored settings cannot be decoded, once
// the actor passed the read check on what could be decoded.
func (m *Manager) Get(ctx context.Context, actor Actor, id string) (*Task, error) {
	t, err := m.load(ctx, id)
	if err != nil {
		return nil, m.undecodable(ctx, actor, OpRead, err)
	}
	if err := m.authorize(ctx, actor, OpRead, t); err != nil {
		return nil, err
	}
	return t, nil
}

// load returns the caller's copy of the current task.
func (m *Manager) load(ctx context.Context, id string) (*Task, error) {
	t, err := m.loadShared(ctx, id)
	if err != nil {
		return nil, err
	}
	return cloneTask(t), nil
}

// undecodedTask carries what can be read of an undecodable task through
// the error of load, so that permission checks can be made on it.
type undecodedTask struct {
	*DecodeError
	partial *Task
}

func (e *undecodedTask) Unwrap() error { return e.DecodeError }

// undecodable turns load's error for an undecodable task into ErrPermission
// when actor may not do op on what could be read of it, and into the
// *DecodeError otherwise; other errors pass unchanged.
func (m *Manager) undecodable(ctx context.Context, actor Actor, op Operation, err error) error {
	var u *undecodedTask
	if !errors.As(err, &u) {
		return err
	}
	if aerr := m.authorize(ctx, actor, op, u.partial); aerr != nil {
		return aerr
	}
	return u.DecodeError
}

// Update replaces a task's settings with t. t.ID names the task and
// t.Revision must be the revision the caller read (optimistic
// concurrency). The application, type and kind of a task cannot change.
// It returns the stored task with its new revision; to an actor who may
// modify but not read the task, only its bookkeeping (ID, Revision,
// SettingsRevision, UpdatedAt, UpdatedBy), which the next Update needs.
//
// Errors: ErrInvalid, ErrNotFound, ErrPermission, ErrConflict (the task
// changed since t.Revision, or the new name is taken).
func (m *Manager) Update(ctx context.Context, actor Actor, t Task) (*Task, error) {
	out, err := m.update(ctx, actor, t, ActionUpdate, nil)
	if err != nil {
		return nil, err
	}
	return m.readable(ctx, actor, out), nil
}

// readable returns t, or only its bookkeeping when actor may not read it.
func (m *Manager) readable(ctx context.Context, actor Actor, t *Task) *Task {
	if m.authz.Authorize(ctx, actor, OpRead, t) == nil {
		return t
	}
	return &Task{ID: t.ID, Revision: t.Revision, SettingsRevision: t.SettingsRevision, UpdatedAt: t.UpdatedAt, UpdatedBy: t.UpdatedBy}
}

// update is Update with a revision action and optional merge details.
func (m *Manager) update(ctx context.Context, actor Actor, t Task, action RevisionAction, extra *revisionDiff) (*Task, error) {
	cur, err := m.load(ctx, t.ID)
	if err != nil {
		return nil, m.undecodable(ctx, actor, OpModify, err)
	}
	if err := m.authorize(ctx, actor, OpModify, cur); err != nil {
		return nil, err
	}
	if t.Revision != cur.Revision {
		return nil, fmt.Errorf("task: task %q is at revision %d, the update was made from revision %d: %w", t.ID, cur.Revision, t.Revision, ErrConflict)
	}
	var bad ValidationErrors
	if t.Application != cur.Application {
		bad = append(bad, errs.Invalid("application", t.Application, "cannot change; create a new task"))
	}
	if t.Type != cur.Type {
		bad = append(bad, errs.Invalid("type", t.Type, "cannot change; create a new task"))
	}
	if t.Kind() != cur.Kind() && action != ActionStartForDevices {
		bad = append(bad, errs.Invalid("scope.kind", string(t.Scope.Kind), fmt.Sprintf("cannot change a %s task into a %s task", cur.Kind(), t.Kind())))
	}
	if t.Kind() == Local && t.Scope.Device != cur.Scope.Device {
		bad = append(bad, errs.Invalid("scope.device", string(t.Scope.Device), "a local task stays on its device"))
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	reg, typeErr := m.typeOf(&t) // reported with the other errors
	now := m.now()
	if err := m.applyDefaults(&t, reg, now); err != nil {
		return nil, err
	}
	t.CreatedAt, t.CreatedBy = cur.CreatedAt, cur.CreatedBy
	t.UpdatedAt, t.UpdatedBy = now, actor.ID
	t.Revision = cur.Revision + 1
	// The new settings must be allowed too (an ACL change must not lock
	// the author out or grant what the author lacks), before the
	// inventory checks, whose errors tell which groups exist; every
	// validation error is reported in one round (see checkAll).
	if err := m.checkAll(ctx, actor, OpModify, &t, m.validate(&t, reg, typeErr)); err != nil {
		return nil, err
	}
	oldBody, err := encode(cur)
	if err != nil {
		return nil, err
	}
	// Only a change of what the task does is a new settings revision (and
	// re-fires an Immediately schedule); suspend and resume are not.
	if t.Schedule.Kind == schedule.Immediately && cur.Schedule.Kind == schedule.Immediately {
		t.Schedule.SavedAt = cur.Schedule.SavedAt
	}
	body, err := encode(&t)
	if err != nil {
		return nil, err
	}
	of, err := flatten(oldBody)
	if err != nil {
		return nil, err
	}
	nf, err := flatten(body)
	if err != nil {
		return nil, err
	}
	t.SettingsRevision = cur.SettingsRevision
	restamped := false
	if changesSettings(of, nf) {
		t.SettingsRevision = t.Revision
		if t.Schedule.Kind == schedule.Immediately {
			t.Schedule.SavedAt = now
			restamped = true
		}
	}
	// The stored body carries the final settings revision (bookkeeping,
	// not part of the flattened form) and SavedAt (which is).
	if body, err = encode(&t); err != nil {
		return nil, err
	}
	if restamped {
		if nf, err = flatten(body); err != nil {
			return nil, err
		}
	}
	diff, err := m.revisionDiff(of, nf, m.secretPaths(cur.Settings, t.Settings), extra)
	if err != nil {
		return nil, err
	}
	rec := toRecord(&t, body)
	err = m.store.UpdateTask(ctx, storage.UpdateTaskParams{
		Task: rec, ExpectRevision: cur.Revision,
		Revision: storage.RevisionRecord{TaskID: t.ID, Number: t.Revision, Author: actor.ID, At: now, Action: string(action), Body: body, Diff: diff},
	})
	if err != nil {
		return nil, m.storeErr(err, "update task %q", t.ID)
	}
	shared := m.warm(&rec)
	m.log.Info().Str("task", t.ID).Int64("revision", t.Revision).Str("actor", actor.ID).Str("action", string(action)).Msg("task updated")
	m.saved(ctx, shared, &t)
	return &t, nil
}

// revisionDiff computes the stored diff between two flattened bodies.
func (m *Manager) revisionDiff(of, nf flat, secrets map[string]bool, extra *revisionDiff) ([]byte, error) {
	d := revisionDiff{Changes: diffFlat(of, nf, secrets)}
	if extra != nil {
		d.MergedUser = extra.MergedUser
		for _, c := range extra.Conflicts {
			if isSecretPath(c.Path, secrets) {
				if c.Admin != nil {
					c.Admin = json.RawMessage(redacted)
				}
				if c.User != nil {
					c.User = json.RawMessage(redacted)
				}
			}
			d.Conflicts = append(d.Conflicts, c)
		}
	}
	if d.Changes == nil {
		d.Changes = []Change{}
	}
	return json.Marshal(d)
}

// secretPaths returns the settings paths whose values look like secrets
// in any of the settings values (structs, or raw JSON), so diffs never
// show them.
func (m *Manager) secretPaths(settings ...any) map[string]bool {
	out := map[string]bool{}
	for _, v := range settings {
		if v == nil {
			continue
		}
		for _, f := range credentials.ScanSettings(v) {
			out["settings."+strings.TrimPrefix(f.Path, "$.")] = true
		}
	}
	return out
}

// bodySettings returns the raw settings of a stored body.
func bodySettings(b []byte) any {
	var tj struct {
		Settings json.RawMessage `json:"settings"`
	}
	if json.Unmarshal(b, &tj) != nil || len(tj.Settings) == 0 {
		return nil
	}
	return tj.Settings
}

// changesSettings reports whether two flattened bodies differ in anything
// but the suspended flag.
func changesSettings(of, nf flat) bool {
	for _, c := range diffFlat(of, nf, nil) {
		if c.Path != "suspended" {
			return true
		}
	}
	return false
}

// saved tells the dispatcher about a saved task: the cache's shared
// value when there is one (the dispatcher keeps it, and then keeps no
// copy of its own), otherwise a copy of t; never t itself, which the
// caller gets and may change.
func (m *Manager) saved(ctx context.Context, shared, t *Task) {
	if m.disp == nil {
		return
	}
	if shared != nil {
		t = shared
	} else {
		t = cloneTask(t)
	}
	if err := m.disp.TaskSaved(ctx, t); err != nil {
		m.log.Error().Err(err).Str("task", t.ID).Msg("dispatcher did not take the saved task")
	}
}

// Delete removes a task with its revisions, results and history.
// expectRevision 0 deletes whatever the revision. A task whose stored
// settings cannot be decoded (see DecodeError) can be deleted.
//
// Errors: ErrNotFound, ErrPermission, ErrConflict.
func (m *Manager) Delete(ctx context.Context, actor Actor, id string, expectRevision int64) error {
	cur, err := m.load(ctx, id)
	if err != nil {
		var u *undecodedTask
		if !errors.As(err, &u) {
			return err
		}
		cur = u.partial
	}
	if err := m.authorize(ctx, actor, OpDelete, cur); err != nil {
		return err
	}
	defer m.cache.drop(id)
	if err := m.store.DeleteTask(ctx, storage.DeleteTaskParams{ID: id, ExpectRevision: expectRevision}); err != nil {
		return m.storeErr(err, "delete task %q", id)
	}
	m.log.Info().Str("task", id).Str("actor", actor.ID).Msg("task deleted")
	if m.disp != nil {
		if err := m.disp.TaskDeleted(ctx, id); err != nil {
			m.log.Error().Err(err).Str("task", id).Msg("dispatcher did not take the deleted task")
		}
	}
	return nil
}

// MaxNameIndex bounds the " (n)" suffixes tried for a free name.
const MaxNameIndex = 10000

// freeName returns name if no task in its namespace uses it, or name with
// the next free " (n)" index (the import rule of the product
// documentation).
func (m *Manager) freeName(ctx context.Context, t *Task) (string, error) {
	base := t.Name
	for i := 0; i <= MaxNameIndex; i++ {
		cand := base
		if i > 0 {
			cand = fmt.Sprintf("%s (%d)", base, i)
		}
		probe := Task{Name: cand, Scope: t.Scope}
		taken, err := m.nameTaken(ctx, &probe)
		if err != nil {
			return "", err
		}
		if !taken {
			return cand, nil
		}
	}
	return "", fmt.Errorf("task: no free name for %q after %d tries: %w", base, MaxNameIndex, ErrConflict)
}

func (m *Manager) nameTaken(ctx context.Context, t *Task) (bool, error) {
	_, err := m.taskIDByName(ctx, t)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, err
}

// taskIDByName returns the ID of the task with t's unique name (its
// name, case-folded, and for a local task its device), or an error
// matching ErrNotFound.
func (m *Manager) taskIDByName(ctx context.Context, t *Task) (string, error) {
	want := uniqueName(t)
	if l, ok := m.store.(storage.UniqueNameLookup); ok {
		id, err := l.TaskIDByUniqueName(ctx, want)
		switch {
		case err == nil:
			return id, nil
		case errors.Is(err, ErrNotFound):
			return "", fmt.Errorf("task: no task is named %q: %w", t.Name, ErrNotFound)
		}
		return "", m.storeErr(err, "look up task name")
	}
	p := storage.ListTasksParams{NameContains: strings.ToLower(t.Name), Limit: storage.MaxListLimit}
	if t.Kind() == Local {
		p.DeviceID = string(t.Scope.Device)
	}
	for {
		page, err := m.store.ListTasks(ctx, p)
		if err != nil {
			return "", m.storeErr(err, "list tasks")
		}
		for _, r := range page.Tasks {
			if r.UniqueName == want {
				return r.ID, nil
			}
		}
		if page.Next == "" {
			return "", fmt.Errorf("task: no task is named %q: %w", t.Name, ErrNotFound)
		}
		p.After = page.Next
	}
}

// createWithFreeName creates t, adding the next free " (n)" index to its
// name when the name is taken, also when concurrent callers race for the
// same name. action is recorded in the first revision.
func (m *Manager) createWithFreeName(ctx context.Context, actor Actor, t Task, action RevisionAction) (*Task, error) {
	base := t.Name
	for attempt := 0; attempt < 100; attempt++ {
		name, err := m.freeName(ctx, &Task{Name: base, Scope: t.Scope})
		if err != nil {
			return nil, err
		}
		t.Name = name
		out, err := m.create(ctx, actor, t, action)
		if err == nil || !errors.Is(err, ErrConflict) {
			return out, err
		}
		// Someone took the name between the check and the insert.
	}
	return nil, fmt.Errorf("task: could not find a free name for %q: %w", base, ErrConflict)
}

// Copy creates a copy of a task named name, or, when name is empty, the
// original name with the next free " (n)" index. The copy has its own id
// and revision history.
//
// Errors: ErrNotFound, ErrPermission, ErrInvalid, ErrConflict.
func (m *Manager) Copy(ctx context.Context, actor Actor, id, name string) (*Task, error) {
	src, err := m.Get(ctx, actor, id)
	if err != nil {
		return nil, err
	}
	c := *src
	c.Suspended = false
	if name != "" {
		c.Name = name
		return m.create(ctx, actor, c, ActionCopy)
	}
	return m.createWithFreeName(ctx, actor, c, ActionCopy)
}

// ListParams filter, sort and page the task list. Zero fields do not
// filter.
type ListParams struct {
	// Application keeps the tasks of one application.
	Application string
	// Type keeps the tasks of one task type (with Application).
	Type string
	// Kind keeps local, group or global tasks (or server tasks).
	Kind Kind
	// Group keeps the group tasks of one administration group.
	Group scope.GroupID
	// Device keeps the local tasks of one device.
	Device scope.DeviceID
	// NameContains keeps tasks whose name contains it (case-insensitive).
	NameContains string
	// Order is storage.OrderByName (default), OrderByCreatedAt or
	// OrderByID.
	Order storage.TaskOrder
	// Descending reverses Order.
	Descending bool
	// After is the Next of the previous page.
	After string
	// Limit is the page size (default 100, at most 10,000).
	Limit int
}

// ApplicationTasks are the tasks of one application on a page of the
// task list.
type ApplicationTasks struct {
	// Application is the application name.
	Application string
	// Tasks are its tasks on the page, in the requested order.
	Tasks []*Task
}

// ListResult is one page of the task list grouped by application name
// (applications in name order; tasks in the requested order).
type ListResult struct {
	// Applications are the page's tasks grouped by application.
	Applications []ApplicationTasks
	// Undecodable are the tasks of the page whose stored settings cannot
	// be decoded (see DecodeError), in page order, that the actor may
	// read as far as they can be read. They are listed here rather than
	// failing the page; Delete removes them.
	Undecodable []*DecodeError
	// Next continues the listing; empty on the last page.
	Next string
}

// List returns a page of the task list, grouped by application. Tasks the
// actor may not read are left out (a page may then be shorter than Limit);
// tasks that cannot be decoded are listed in ListResult.Undecodable. The
// tasks are the caller's own copies.
//
// Errors: ErrInvalid (bad order or cursor or limit).
func (m *Manager) List(ctx context.Context, actor Actor, p ListParams) (ListResult, error) {
	if p.Limit < 0 || p.Limit > storage.MaxListLimit {
		return ListResult{}, errs.Range("limit", p.Limit, 0, storage.MaxListLimit)
	}
	if !storage.ValidOrder(p.Order) {
		return ListResult{}, errs.Invalid("order", string(p.Order), "must be one of: name, created_at, id")
	}
	page, err := m.store.ListTasks(ctx, storage.ListTasksParams{
		Application: p.Application, TaskType: p.Type, Kind: string(p.Kind),
		GroupID: string(p.Group), DeviceID: string(p.Device),
		NameContains: strings.ToLower(p.NameContains),
		Order:        p.Order, Descending: p.Descending, After: p.After, Limit: p.Limit,
	})
	if err != nil {
		if errors.Is(err, ErrInvalid) {
			return ListResult{}, errs.Invalid("after", p.After, "is not a cursor returned by List")
		}
		return ListResult{}, m.storeErr(err, "list tasks")
	}
	byApp := map[string]int{}
	var res ListResult
	for i := range page.Tasks {
		shared, err := m.decodeShared(&page.Tasks[i])
		if err != nil {
			var u *undecodedTask
			if !errors.As(err, &u) {
				return ListResult{}, err
			}
			if m.authz.Authorize(ctx, actor, OpRead, u.partial) == nil {
				res.Undecodable = append(res.Undecodable, u.DecodeError)
			}
			continue
		}
		t := cloneTask(shared)
		if m.authz.Authorize(ctx, actor, OpRead, t) != nil {
			continue
		}
		i, ok := byApp[t.Application]
		if !ok {
			i = len(res.Applications)
			byApp[t.Application] = i
			res.Applications = append(res.Applications, ApplicationTasks{Application: t.Application})
		}
		res.Applications[i].Tasks = append(res.Applications[i].Tasks, t)
	}
	sortApplications(res.Applications)
	res.Next = page.Next
	return res, nil
}

func sortApplications(a []ApplicationTasks) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j].Application < a[j-1].Application; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}
