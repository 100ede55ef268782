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
// Who runs a task follows the product documentation: tasks for device selections and
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
// Open also restores what the previous server kept in memory, from the
// stored results: the pause orders of suspended tasks' running devices
// and the resume orders of resumed tasks' paused ones, and the last start
// of server-run Manually/Once/Immediately tasks and the last manual start
// of device tasks with those schedules, when they run missed tasks (the
// newest run id among the task's results; run ids are time-derived, so
// the start is rebuilt exactly). Devices that joined such a server-run task's scope while no
// server ran get that start at Open, the others when they join (at the
// next scope refresh), each once: a device with a result of that run (or
// a newer one) is not started again.
//
// # Suspend, resume and stop
//
// Suspending a task (task.Manager Suspend) holds its scheduled starts and
// pauses its runs in progress: the devices whose result is running get
// transport.PauseRun, and their agents pause the run through the host's
// optional agent.Pauser (the result becomes paused). Resume sends
// ResumeRun to the devices whose run is paused, and the runs continue
// (running again). The orders carry the task revision that suspended or
// resumed the task, so a late or repeated order never undoes a newer one;
// each is resent every RetryInterval, and at once when the device becomes
// visible, until the device acknowledges its key or the run ends, so a
// device that is offline when the task is suspended is paused when it
// comes back. A run reported running while its task is suspended (it
// started from a start sent just before the suspend) is paused the same
// way, and a run reported paused while its task is not is resumed. An
// executor without Pauser keeps the run going, and the device says so:
// the running result's message and a warning event in the history.
// "Stop the task if it runs longer than" counts execution time: time
// spent paused is not counted.
//
// Stop records the starts not yet sent as stopped and sends StopRun to
// the devices running the task (or paused, or sent a start). StopRun is
// resent every RetryInterval until the device reports a final state of
// that run (stopped, or whatever the run ended with); agents apply it
// once per run, and answer a StopRun for a run they never received with
// "stopped" (that run then never starts). Stopping a paused run stops it;
// a later resume does not bring it back. Stop also writes a durable stop
// marker (a history event keyed "stop/<time>", kept whatever the task's
// history settings), so a server that restarts before every device
// reported the stop sends StopRun again to the runs still in progress
// that were due by then.
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
// every LeaseTTL the leader replica takes over expired ones
// (storage.Claimer ClaimStale, Stats.TakenOver) and resends them under the same
// idempotency key, which devices de-duplicate. A stalled replica that
// wakes up finds its renewal rejected by the epoch and stops resending
// (Stats.Fenced). The start of a device that was offline when a "run
// missed tasks" run began is scheduled like any other (with the message
// "waiting for the device to become visible"), so it too is dispatched by
// one replica, resent until the device answers and taken over if that
// replica dies.
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
//   - Unanswered StopRun, PauseRun and ResumeRun resends are kept in
//     memory by the server (or replica) that sent them. After a restart
//     the pause and resume orders are rebuilt from the results' states
//     and the stops from the stop markers; with several replicas the
//     leader rebuilds them the same way every ScopeRefresh, so an order
//     whose replica died reaches its devices within ScopeRefresh. History retention purges stop markers like other
//     events, so a run still in progress longer than the task's history
//     retention after a stop is not stopped again after a restart.
//   - The last start recovered on Open is the newest run among the
//     task's results: a start that reached no device (an empty scope) is
//     not recovered, and device tasks with other schedules do not get
//     their last manual start back (a device joining their scope after a
//     restart does not run it).
//   - "On completing another task" is decided by the server when the
//     trigger's result arrives, so on an offline device the dependent
//     task starts after the device reconnects.
//   - A device's delay slot is its place in the scope it last received.
//     When devices join or leave a scope, the connected devices whose slot
//     moved get the new one at once on a save and at the next scope
//     refresh (ScopeRefresh) after an inventory change; an offline device
//     gets it with its next heartbeat (which reports the slots it holds).
//     Until then, and while a device is offline (it keeps running its
//     tasks on the slot it has), two devices may share a part of the
//     window.
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
