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
// local tasks of each device. Copy and CreateWithFreeName add the next free
// " (n)" index, also when callers race for the same name (the product documentation's import
// rule).
//
// # Results, history and notifications
//
// Every device in scope has a result with one of the States, including
// missed and application-not-running. RecordResults takes updates from the
// engine or the device channel: each replaces the device's result only if
// its (RunID, Seq) is newer, so redelivered and reordered updates are
// harmless, and a Notifier hears of each final result once (all results,
// or errors only). History events are kept by the task's history level and
// purged after its own retention by PurgeHistory.
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
// Secrets never appear in revisions: account passwords are sealed
// (credentials.Sealed) and shown as "[redacted]" in diffs, as are settings
// values that credentials.ScanSettings flags.
//
// # Security
//
// Every method takes the acting Actor and asks the Authorizer. Group tasks
// have no access list: the host's Authorizer applies their group's
// security settings. ACLAuthorizer applies the access list of other tasks.
//
// # Errors
//
// Bad input is a *ValidationError or ValidationErrors naming JSON paths
// ("schedule.every", "settings.max_file_size_mb", "scope.excluded_groups[0]")
// and matching ErrInvalid; ErrNotFound, ErrConflict and ErrPermission
// cover the rest. The values are shared with every taskfleet package.
package task
