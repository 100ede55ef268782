// Package task is the task model and the management API of taskfleet:
// everything an administration console does with tasks (the product documentation's "About
// tasks", "Creating a task", "Viewing the task list", "Starting a task",
// "General task settings", "Viewing task run results", revision history).
//
// # Concepts
//
// A Task belongs to an application and has a registered TaskType, which
// brings its type-specific settings (a struct checked with `validate` tags
// of github.com/go-playground/validator/v10), the schedule kinds it allows
// and whether it is an Administration Server task. Its Scope decides its
// Kind: local (one device), group (an administration group with its
// subgroups by default, minus exclusions), global (a device list,
// addresses, or a device selection) or server.
//
// The Manager validates, defaults, authorizes and records a numbered
// revision with a field-level diff for every change, then hands complete
// records to a storage.Store:
//
//	m, _ := task.New(task.Config{Store: memstore.New(), Registry: reg, Inventory: inv})
//	t, err := m.Create(ctx, admin, task.Task{Name: "Friday scan", Application: "Endpoint Security",
//		Type: "virus_scan", Scope: scope.Scope{Kind: scope.Group, Group: "office"},
//		Schedule: schedule.Default(schedule.Weekly, now, loc)})
//	run, err := m.Start(ctx, admin, t.ID)
//	st, err := m.Statistics(ctx, admin, t.ID)
//
// Zero sub-settings mean their documented defaults: a zero Schedule is
// Manually, a zero restart.Policy prompts the user (5/30 minutes), a zero
// credentials.Account is the application's default account, zero
// Notifications store progress events on the server for 30 days, nil
// Settings are the type's defaults.
//
// # Names
//
// Names are unique case-insensitively among non-local tasks, and among the
// local tasks of each device. Copy and Runtime.CreateWithFreeName add the next free
// " (n)" index, also when callers race for the same name (the import rule of
// the product documentation).
//
// Ensure is create-or-get by name, for setup code that runs again against
// the same database: it returns the task already holding the name
// (read-authorized, not modified; created false) or creates it (created
// true). Callers racing on one name all get the same task.
//
// # Two surfaces: Manager and Runtime
//
// Every Manager method takes the acting Actor and is authorized. What only
// a server runtime or an importer may do — record device results and
// events, purge history, find free names for imported tasks — is on
// Runtime, obtained with (*Manager).Runtime: the engine (task/engine) and
// KLT import (klt) use it; a host's console never should. Revisions record
// what made them as a RevisionAction (ActionCreate, ActionImport,
// ActionChangePassword...).
//
// # Results, history and notifications
//
// Every device in scope has a result with one of the States, including
// missed and application-not-running. Runtime.RecordResults takes updates
// from the engine or the device channel: each replaces the device's result
// only if its (RunID, Seq) is newer, so redelivered and reordered updates
// are harmless, and a Notifier hears of each final result once (all
// results, or errors only). History events are kept by the task's history
// level and purged after its own retention by Runtime.PurgeHistory.
//
// Nothing is lost silently: the history events of result updates are
// written before the results, and a failed write fails the whole call, so
// the engine does not acknowledge it and the device sends it again (the
// events are keyed, so the retry adds no duplicate).
//
// Devices of unknown membership (scope.Resolve's Unknown: a selection
// over a fact the device has not reported, a device whose group, IP
// addresses or server role are not known) run nothing, but they are not
// hidden: Statistics counts those without a result in Unknown (and in
// ByState under UnknownMembership, and in Total), and Results and Result
// list them in state UnknownMembership with scope.Explain's reason as the
// message. They are computed at read time from the scope's resolution,
// never stored, so they change as soon as the inventory learns the
// missing fact; the price is one resolution of a group, address or
// selection scope per Statistics or Results call (see Statistics).
//
// # Settings across versions
//
// A task type's settings must survive being stored as JSON and read back:
// Register refuses a plaintext credentials.Secret field (put passwords in
// the task's Account, or seal them into a credentials.Sealed field),
// interfaces, functions, channels, and defaults whose JSON does not
// round-trip. Settings from callers are checked strictly; stored settings
// are decoded leniently, so a field a newer version of the host removed is
// ignored, and TaskType.Migrate converts settings saved by another
// ApplicationVersion before they are decoded. A task that still cannot be
// decoded is isolated: Get returns a *DecodeError (ErrUndecodable) after
// the read check, List reports it in ListResult.Undecodable and lists every
// other task, Delete removes it, PurgeHistory and the change-password
// wizard skip it, and the engine skips it with a logged error and a
// counter while running every other task.
//
// # Reads
//
// A Manager decodes a task's stored JSON once per revision and serves Get,
// List and the engine's result intake from the decoded task
// (Config.CacheSize tasks, default DefaultCacheSize). Every read still
// reads the stored record and uses the decoded task only while the record
// has the revision, update time and body it was decoded from, so Managers of
// several replicas on one database never serve each other's stale
// settings. Every caller gets its own deep copy, which it may modify.
//
// # Revisions and concurrency
//
// Every change is a revision with author, time, action and the changed JSON
// paths with old and new values; Compare diffs any two, Rollback restores
// one as a new revision. Update takes the revision the caller read and
// returns ErrConflict when another change came first, so no write is lost.
// Local tasks edited on the device are merged with MergeDeviceEdit: fields
// only the user changed are kept, the administrator's value wins where both
// changed a field, and the revision records the user and the conflicts.
//
// Secrets never appear in revisions, errors or logs: account passwords
// are sealed (credentials.Sealed) and shown as "[redacted]" in diffs, as
// are settings values that credentials.ScanSettings flags, including every
// field tagged `taskfleet:"secret"`; a validation error names such a field
// but never quotes its value.
//
// # Security
//
// Every method takes the acting Actor and asks the Authorizer, before any
// check against the inventory (whose errors would tell which groups
// exist). Group tasks have no access list: the host's Authorizer applies
// their group's security settings. ACLAuthorizer applies the access list
// of other tasks and, for global tasks, the group check of every targeted
// device's group when the task is created, modified or started. Update
// returns only the bookkeeping (ID, revisions, update time and author) to
// an actor who may modify but not read the task. The change-password
// wizard (Manager.Accounts) sees only the tasks the actor may modify, and
// logs an opaque reference of its run instead of the account name.
//
// Access lists hold at most MaxACLEntries entries, principals at most
// MaxPrincipalLength bytes; notifications at most MaxEmailRecipients
// addresses of at most MaxEmailLength bytes. Longer input is refused
// before it is parsed.
//
// # Errors
//
// Bad input is a *ValidationError or ValidationErrors naming JSON paths
// ("schedule.every", "settings.max_file_size_mb", "scope.excluded_groups[0]")
// and matching ErrInvalid. Create and Update report every error in one
// round: the struct, schedule and settings checks and the scope's checks
// against the inventory together (the latter only for an actor the
// Authorizer allows; others get the rest, or ErrPermission); ErrNotFound, ErrConflict and ErrPermission
// cover the rest, and a *DecodeError (ErrUndecodable) a stored task that
// cannot be decoded. The values are shared with every taskfleet package.
package task
