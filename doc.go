// Package taskfleet is an embeddable task-management library for products
// that manage a fleet of computers: the complete task model of an enterprise
// endpoint-management server (local, group, global and Administration Server
// tasks; scopes; schedules; restart policies; run-as credentials; KLT export
// and import), behind storage and transport interfaces that the host wires
// to its own persistence and device channel.
//
// # Package map
//
//   - schedule: every start kind (manual, once, immediately, every N
//     minutes/hours/days, days of week, monthly, N-th weekday, on updates
//     downloaded, on virus outbreak, on completion of another task) with
//     exact DST semantics, and the advanced settings (run missed tasks,
//     randomized delay, stop if longer than, wake-on-LAN, shut down after).
//   - scope: devices, administration groups, addresses and TXT lists, CEL
//     device selections; resolution and explanation of a task's scope.
//   - restart: operating-system restart policies and the device-side prompt
//     timeline.
//   - credentials: run-as accounts with sealed passwords and the
//     change-password wizard.
//   - task: the task model and the management API a host calls.
//   - storage: the storage contract, with an in-memory and a SQL store
//     (SQLite embedded, PostgreSQL for scale-out) and a conformance suite.
//   - klt: export and import of a task as a KLT file.
//   - examples: runnable host programs.
//
// # Errors
//
// Every package reports bad input as a *ValidationError (or a list of them)
// naming the field and the allowed range; all of them match ErrInvalid with
// errors.Is. Not found, conflict and permission errors match ErrNotFound,
// ErrConflict and ErrPermission. Each package re-exports these names.
//
// # Time
//
// Library code never reads the wall clock: every component takes a
// clock.Clock (github.com/benbjohnson/clock), so tests and simulations run
// weeks in seconds. Times cross storage and transport in UTC; wall-clock
// schedule rules are evaluated in an explicit *time.Location (the device's
// zone, or the server's for tasks the server runs).
package taskfleet
