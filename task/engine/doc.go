// Package engine is the Administration Server runtime of taskfleet: it
// schedules and dispatches tasks, takes device results into storage and
// keeps the built-in duties (history purge). Its counterpart on devices is
// package task/agent; they talk through package task/transport.
//
// # Concepts
//
// A Server implements task.Dispatcher: pass it in task.Config.Dispatcher,
// then Open it with the Manager and the transport endpoint:
//
//	srv, _ := engine.New(engine.Config{Store: store, Inventory: inv, Location: serverZone})
//	m, _ := task.New(task.Config{Store: store, Registry: reg, Inventory: inv, Dispatcher: srv})
//	_ = srv.Open(ctx, m, network.Server(srv))
//	go srv.Run(ctx, time.Minute) // or call srv.Tick(ctx) from a simulation
//
// Who runs a task follows the seeds: tasks for device selections and
// Administration Server tasks are run by the server, on the server's local
// time (Config.Location); the selection is resolved when the activation
// fires and only devices connected then get the run (the others are
// recorded missed, or get it when they become visible if the task runs
// missed tasks). Server tasks run on the agent registered as device
// task.ServerDevice. Every other task is delivered to the devices of its
// scope and run by their agents on device-local time, also while they are
// offline; their results arrive later through the agent's outbox.
//
// Manual starts, starts for selected devices, "on completing another task",
// "on virus outbreak" and "when new updates are downloaded" are started by
// the server; Wake-on-LAN requests go out the chosen minutes before each
// start. Randomized delays are deterministic per task, device and settings
// revision (the run id for manual starts, so a manual start moves the
// offsets): schedule.RandomOffset for "within an interval", and for the
// automatic delay transport.Offset, which gives each device its own part
// of the window (its place in the scope, sent with the definition as a
// transport.Slot) so no second exceeds the start budget.
//
// # Time semantics
//
// Everything runs on Config.Clock. Tick does what is due at the clock's
// current time and returns: simulations advance a clock.Mock and call
// Tick (see package enginetest); hosts call Run, which ticks on a ticker.
// Run ids are derived from the activation instant (transport.RunID), so the
// same activation has the same id in every process.
//
// # Exactly once
//
// Before a server-run activation is dispatched it is recorded twice: a fire
// marker (a history event keyed by the run id; a second fire of the same
// activation stores nothing and is skipped) and a scheduled result per
// device. Open re-dispatches every scheduled or pending result it finds
// and fires server activations of the last RecoveryWindow that have no
// marker, so a server that stops mid-dispatch loses and duplicates
// nothing. StartRun is resent every RetryInterval until the device reports
// the run; agents run each (task, run id) once; storage keeps each
// (task, device, run, seq) once.
//
// # Replicas
//
// Several Servers may share one store. When the store offers
// storage.Claimer (sqlstore does, on PostgreSQL and SQLite) the scheduled
// starts are not kept in memory: every Tick dispatches the due ones from
// the store in batches of ClaimBatch, each batch in one atomic store call
// (on PostgreSQL one statement: SELECT ... FOR UPDATE SKIP LOCKED, so
// replicas never wait for or take each other's rows; the rows move to
// pending/dispatched, are leased to this replica (ReplicaID) with a new
// fencing epoch, and get one dispatch ledger row each), and only then
// sends them. There is no claimed-but-not-dispatched window: a replica
// that dies before the commit changed nothing, and a start leaves the
// scheduled state once, so each (task, device, run) is dispatched once
// and written once. Starts of suspended or deleted tasks are not taken
// (the store checks the task row), and a claim carries the task's
// revision, so a replica whose copy of the task is older reloads it.
//
// A dispatched start stays leased to its replica until the device
// answers; the replica renews the lease (for RetryInterval + LeaseTTL)
// each time it resends. A replica that dies or stalls loses the lease;
// every LeaseTTL each replica takes over expired ones (storage.Claimer
// ClaimStale, Stats.TakenOver) and resends them under the same
// idempotency key, which devices de-duplicate. A stalled replica that
// wakes up finds its renewal rejected by the epoch and stops resending
// (Stats.Fenced). Starts waiting for an offline device (pending, not yet
// dispatched) stay with the replica that planned them and with any
// replica that opens later.
//
// Singleton duties take a leader lease (storage.Leader) on every Tick:
// only the leader fires server-run schedules and purges history; a
// follower keeps its schedule cursors within RecoveryWindow, so a new
// leader fires what a dead one left. The lease is an optimization, not
// the guarantee: fire markers (history events with a unique key) and
// time-derived run ids already make a second fire of the same activation
// store nothing. Manual starts, triggers, virus outbreaks and update
// events are handled by the replica that receives them; the result rows
// they write are idempotent upserts keyed by the time-derived run id.
//
// Clocks: lease expiry is judged by the database's clock (now() in
// PostgreSQL), never a replica's, so replicas whose clocks differ (±2 s
// or more) never both hold a lease, and a late write is stopped by the
// epoch whatever the clocks say (a dispatch needs no clock at all: it is
// one transaction). A replica's clock only decides when a
// start is due (DueAt <= its now), which can move a start by the skew but
// not dispatch it twice. The assumption is that the database's clock does
// not jump backwards by more than LeaseTTL while leases are held.
//
// # Results
//
// Results messages are buffered and recorded through task.Manager
// RecordResults in one call per Tick (or every 10,000 results), then
// acknowledged (every key of a merged message); storage failures
// acknowledge nothing, so devices resend. "On completing another task"
// starts are planned from the recorded results and written in one batch.
// Notifications go through the Manager's Notifier; history is purged by
// calling Manager.PurgeHistory every PurgeEvery.
//
// # Scale
//
// Scopes are resolved when a task is saved, when a server-run activation
// fires, and every ScopeRefresh; the per-device task index behind heartbeat
// synchronization is rebuilt lazily. The package benchmark simulates 10,000
// devices in 12 zones with 50 tasks for 7 days and verifies every run count
// against schedule.Between.
//
// # Limitations
//
//   - StopRun is sent once per running device and not retried; a device
//     that misses it finishes the run.
//   - Suspending a task holds its scheduled starts; runs already in
//     progress are not paused.
//   - "On completing another task" is decided by the server when the
//     trigger's result arrives, so on an offline device the dependent
//     task starts after the device reconnects.
//   - A device's delay slot is its place in the scope when the definition
//     was delivered; after devices join or leave, slots are refreshed with
//     the next delivery (a settings change), so meanwhile two devices may
//     share a part of the window.
//   - With replicas, starts of devices that were offline (pending, "run
//     missed tasks") and resends stay with the replica that planned or
//     dispatched them; if it dies they are resent when a replica opens.
//   - Replicas learn of tasks created on other replicas when they claim
//     one of their starts (or on Open); device task delivery and
//     heartbeats are per replica (the transport decides which replica a
//     device talks to).
//   - Fire markers are history events: a task whose history is purged
//     within RecoveryWindow of an activation could fire it twice after a
//     restart (retention is at least one day).
//
// # Errors
//
// New returns ValidationErrors naming bad Config fields. Open returns
// storage errors wrapped. Dispatcher methods log and continue where a
// device is unreachable: the heartbeat and the retries repair it.
package engine
