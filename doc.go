// Package taskfleet is an embeddable task-management library for products
// that manage a fleet of computers: the complete task model of an enterprise
// endpoint-management server (local, group, global and Administration Server
// tasks; scopes; schedules; restart policies; run-as credentials; KLT export
// and import), behind storage and transport interfaces that the host wires
// to its own persistence and device channel.
//
// This root package holds only documentation; the API lives in the packages
// below.
//
// # Package map
//
//   - schedule: every start kind (manual, once, immediately, every N
//     minutes/hours/days, days of week, monthly, N-th weekday, on updates
//     downloaded, on virus outbreak, on completion of another task) with
//     exact DST semantics, and the advanced settings (run missed tasks,
//     randomized delay, stop if longer than, wake-on-LAN, shut down after).
//   - scope: the device inventory contract, scope kinds, addresses and TXT
//     lists, CEL device selections; Resolve and Explain.
//   - restart: operating-system restart policies and the device-side prompt
//     timeline.
//   - credentials: run-as accounts with sealed passwords, key rotation, the
//     change-password wizard and the private-data scanner.
//   - task: the task model and the management API a host calls (Manager).
//   - task/transport: the contract of the channel between server and
//     devices; task/transport/inproc implements it in process.
//   - task/engine: the server runtime that schedules and dispatches.
//   - task/agent: the device runtime that runs tasks on device-local time.
//   - storage: the storage contract, with storage/memstore, storage/sqlstore
//     (SQLite embedded, PostgreSQL for scale-out) and the conformance suite
//     storage/storagetest.
//   - klt: export and import of a task as a KLT file.
//   - examples: runnable host programs.
//
// # Wiring a host
//
// A vendor's administration server creates a store, a registry of its task
// types, a task.Manager and the engine, and connects the engine to its
// device channel:
//
//	store, _ := sqlstore.OpenSQLite(ctx, "/var/lib/vendor/taskfleet.db")
//	reg := task.NewRegistry()
//	reg.Register(task.TaskType{Application: "Endpoint Security", Name: "virus_scan", Settings: ScanSettings{}})
//	srv := engine.New(...)                          // implements task.Dispatcher
//	m, _ := task.New(task.Config{Store: store, Registry: reg, Inventory: inv, Dispatcher: srv})
//
// The device channel implements task/transport's endpoints (the in-process
// implementation shows the contract); the device agent embeds task/agent
// with the vendor's Executor. Storage backends implement storage.Store and
// run storagetest; inventories implement scope.Inventory and run
// scope/inventorytest.
//
// # Errors
//
// Every package reports bad input as a *ValidationError (or a list of them)
// naming the field by its JSON path and the allowed range; all of them match
// ErrInvalid with errors.Is. Not found, conflict and permission errors match
// ErrNotFound, ErrConflict and ErrPermission. Each package re-exports these
// names, and they are the same values everywhere.
//
// # Time
//
// Library code never reads the wall clock: every component takes a
// clock.Clock (github.com/benbjohnson/clock), so tests and simulations run
// weeks in seconds. Times cross storage and transport in UTC; wall-clock
// schedule rules are evaluated in an explicit *time.Location: the device's
// zone for tasks the devices run, the Administration Server's for device
// selections and server tasks (schedule.Schedule.Location decides).
//
//	kind                              evaluated in
//	once, every N minutes/hours       absolute instants (no DST shift)
//	every N days, days of week,       local wall clock: the first instant of
//	monthly, N-th weekday             the day at or after the set time
//	manual, immediately, events       triggers, not clock rules
//
// # Secrets
//
// Passwords are sealed at rest (AES-256-GCM with key ids) and never appear
// in logs, errors, fmt output, JSON, KLT files or revision diffs.
package taskfleet
