// Package taskfleet is an embeddable task-management library for products
// that manage a fleet of computers: the complete task model of an enterprise
// endpoint-management server (local, group, global and Administration Server
// tasks; scopes; schedules; restart policies; run-as credentials; KLT export
// and import), behind storage and transport interfaces that the host wires
// to its own persistence and device channel.
//
// This root package holds only documentation; the API lives in the packages
// below. Start with the README's hello world (examples/hello).
//
// # The product documentation
//
// The requirements are the task chapters of two product manuals of an
// enterprise endpoint-management server: Kaspersky Security Center Cloud
// Console ("Tasks") and Open Single Management Platform ("Managing
// tasks"). Package documentation calls them "the product documentation";
// every option, default and range they give is implemented and tested.
//
// # Glossary
//
//   - Administration Server: the management server of the product; here,
//     the host's server process embedding task/engine and task.Manager.
//     Administration Server tasks run on it (task.ServerDevice) rather
//     than on devices.
//   - Network Agent: the product's agent on every managed device; here,
//     task/agent embedded in the vendor's device software. It keeps the
//     delivered tasks, runs them on device-local time, also offline, and
//     reports through a durable outbox.
//   - Managed device: a computer known to the inventory (scope.Device),
//     usually in one administration group.
//   - Administration group: a node of the tree of groups devices are
//     filed in (scope.AdminGroup); a group task applies to a group and,
//     by default, its subgroups.
//   - Device selection: a saved query over device facts (CEL here) that a
//     scope can name; its tasks run on the server's clock on the connected
//     devices.
//   - Scope: which devices a task applies to: a group, a device list, IP
//     ranges or a TXT list of addresses, or a device selection.
//   - Local, group and global tasks: a task of one device, of a group, or
//     of a set of devices (device list, addresses, selection).
//   - Application: the security application a task type belongs to (for
//     example "Endpoint Security"); task types are registered per
//     application (task.Registry).
//   - Run, result: one start of a task on one device, and the device's
//     latest state for the task (scheduled, running, completed, failed,
//     missed, ...).
//   - KLT: the product's file format for exporting a task and importing
//     it on another server (package klt).
//   - Randomized delay: a per-device offset added to a scheduled start so
//     that a fleet does not start at the same second.
//
// # Package map
//
//   - schedule: every start kind (manual, once, immediately, every N
//     minutes/hours/days, days of week, monthly, N-th weekday, on updates
//     downloaded, on virus outbreak, on completion of another task) with
//     exact DST semantics, and the advanced settings (run missed tasks,
//     randomized delay, stop if longer than, wake-on-LAN, shut down after).
//   - scope: the device inventory contract, scope kinds, addresses and TXT
//     lists, CEL device selections; Resolve and Explain. scope/inmem is an
//     in-memory inventory.
//   - restart: operating-system restart policies and the device-side prompt
//     timeline.
//   - credentials: run-as accounts with sealed passwords, key rotation, the
//     change-password wizard and the private-data scanner.
//   - task: the task model and the management API a host calls (Manager).
//   - task/transport: the contract of the channel between server and
//     devices; task/transport/inproc implements it in process.
//   - task/engine: the server runtime that schedules and dispatches;
//     task/engine/enginetest simulates a fleet on any store.
//   - task/agent: the device runtime that runs tasks on device-local time;
//     task/agent/agentsqlite is its durable store.
//   - storage: the storage contract, with storage/memstore, storage/sqlstore
//     (SQLite embedded, PostgreSQL for scale-out) and the conformance suite
//     storage/storagetest.
//   - klt: export and import of a task as a KLT file.
//   - examples: runnable host programs.
//
// # Wiring a host
//
// A host creates a store and an inventory, registers its task types, and
// connects the engine (the server runtime, which is also the Manager's
// Dispatcher) to its device channel; on each device an agent runs the
// vendor's Executor. From examples/hello:
//
//	store, inv := memstore.New(), inmem.New() // or SQLite, PostgreSQL: see the README
//	must(inv.PutGroups(ctx, scope.AdminGroup{ID: "office", Name: "Office"}))
//	reg := task.NewRegistry()
//	must(reg.Register(task.TaskType{Application: "Antivirus", Name: "scan"}))
//	srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk})
//	must(err)
//	m, err := task.New(task.Config{Store: store, Registry: reg, Inventory: inv, Dispatcher: srv, Clock: clk})
//	must(err)
//	net := inproc.New(inproc.Config{Clock: clk}) // the device channel; over a network: examples/httptransport
//	must(srv.Open(ctx, m, net.Server(srv)))
//	...
//	a, err := agent.New(ctx, agent.Config{Device: d.ID, Store: agent.NewMemStore(), Executor: scanner{}, Location: loc, Clock: clk})
//	must(err)
//	a.Attach(net.Device(d.ID, a)) // the agent is the channel's handler
//
// The device channel implements task/transport's endpoints (the in-process
// implementation shows the contract); the device agent embeds task/agent
// with the vendor's Executor. Storage backends implement storage.Store and
// run storagetest; inventories implement scope.Inventory (and
// scope.InventoryWriter) and run scope/inventorytest; agent stores
// implement agent.Store and run agenttest.
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
