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
//	defer srv.Close(ctx)
//
// The server's own lifecycle is Open and Close: Close records the
// results still buffered, releases the leader lease (another replica
// takes over at once) and stops sending; every call after it returns an
// error wrapping ErrClosed. StartRun and StopRun (task.Dispatcher) start
// and stop a task's run, not the server.
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
// "When new updates are downloaded" tasks for device selections (and
// Administration Server tasks) fire when the repository receives updates,
// and, as the agent does for device tasks, every hour while the
// repository got no new updates for UpdatesOverdue (25 hours, counted
// from the last download or from Open). A device whose distribution point
// is unreachable runs the selection's update task every hour itself (it
// holds the task once the server started it there), except while the
// server's 25-hour fallback runs it anyway.
//
// A group task distributed to secondary and virtual Administration
// Servers runs here only on the devices this server manages: the devices
// of those servers run it through their own server's inherited copy
// (package task/hierarchy), so each device runs each activation once
// and is counted once. A manual start leaves them out too.
//
// Manual starts, starts for selected devices, "on completing another task",
// "on virus outbreak" and "when new updates are downloaded" are started by
// the server; Wake-on-LAN requests go out the chosen minutes before each
// start. Randomized delays are deterministic per task, device and settings
// revision (the run id for manual starts, so a manual start moves the
// offsets): schedule.RandomOffset for "within an interval", and for the
// automatic delay transport.Offset, which gives each device its own part
// of the window (its place in the task's delay layout, sent with the
// definition as a transport.Slot) so no second exceeds the start budget.
//
// The automatic delay's calculated start times stay put, as the product
// documentation says, until the task's settings are edited or it is
// started manually. A device's start depends only on its place (a tenth
// of a second each), and a device task keeps a layout of places: a new
// one (devices in id order) when the task is created or its settings are
// edited, a new one that moves every device when it is started manually;
// when devices join or leave the scope, the devices that stay keep their
// places, new devices take the places that leaving ones freed (lowest
// first) or new places after the others. The layout is kept in memory;
// after a restart it is rebuilt from the places the devices report in
// their heartbeats (a device keeps the place it holds unless another
// device confirmed it first; until all devices reported, new devices get
// new places rather than free ones).
//
// # Time semantics
//
// Everything runs on Config.Clock. Tick does what is due at the clock's
// current time and returns: simulations advance a clock.Mock and call
// Tick (see package enginetest); hosts call Run, which ticks on a ticker.
// Run ids are derived from the activation instant (transport.RunID), so the
// same activation has the same id in every process.
//
// When the server's clock steps (the rule of package schedule, "Clocks
// that jump"): back, server-run activations already fired are not fired
// again (their fire markers exist and the cursor is past them) and the
// schedule goes on after the last fired one; forward, the activations
// stepped over fire at once, each once, and each device runs the latest
// of them (a device's newer start replaces its older one not yet sent).
// A step back also brings the periodic duties forward: resends of
// unanswered starts and orders, scope refreshes and purges are due within
// their intervals of the new time, and starts not yet answered are due
// the length of the step earlier (their due times were computed on the
// old clock), so nothing waits for the clock to catch up.
// A manual start's run id is always after the task's newest run id
// (ManualRunID), so a manual run after the clock was set back is the
// task's latest and its results replace the older run's. Device tasks
// follow the device's clock (package agent, "Clocks that jump").
//
// # Exactly once
//
// Before a server-run activation is dispatched it is recorded twice: a fire
// marker (a history event keyed by the run id; a second fire of the same
// activation stores nothing and is skipped) and a scheduled result per
// device. Open re-dispatches every scheduled or pending result it finds
// and fires server activations of the last RecoveryWindow that have no
// marker, so a server that stops mid-dispatch loses and duplicates
// nothing. StartRun is resent until the device reports the run: after
// RetryInterval, then twice as long after each resend, at most
// MaxRetryInterval (default 8 x RetryInterval) apart, and at once when
// the device becomes visible again (its first heartbeat after
// VisibilityTimeout or after a server restart), which starts the back-off
// over. So a device that missed a start gets it, and a fleet whose answers
// are only slow does not get every start every RetryInterval. A send the
// transport refused as unreachable (the device is not connected: after a
// restart, the fleet is still reconnecting) sent nothing, and is tried
// again within 5 seconds. Agents run
// each (task, run id) once; storage keeps each (task, device, run, seq)
// once.
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
// StopRun records the starts not yet sent as stopped and sends StopRun to
// the devices running the task (or paused, or sent a start). StopRun is
// resent every RetryInterval until the device reports a final state of
// that run (stopped, or whatever the run ended with); agents apply it
// once per run, and answer a StopRun for a run they never received with
// "stopped" (that run then never starts). Stopping a paused run stops it;
// a later resume does not bring it back. StopRun also writes a durable stop
// order into the engine's own state (storage.EngineStateStop; not
// history, so history settings and retention never touch it, and only the
// latest order of a task is kept), so a server that restarts before every device
// reported the stop sends StopRun again to the runs still in progress
// that were due by then.
//
// # History and engine state
//
// The engine writes task history only as the task's history settings
// allow (task.Notifications.Stores): with "store task history in the
// server database" off nothing of the task's history is written, with
// "save only task execution results" only results. What the engine must
// remember for itself (fire markers, stop orders) is engine state in the
// store (storage.EngineStateStore), not history.
//
// # Replicas
//
// Several Servers may share one store that offers storage.Claimer. On a
// store without it (memstore, or a host's store that does not implement
// it) the engine never degrades silently: a Server dispatches only while
// it holds the leader lease (storage.Leader, part of every store), and a
// second replica gets a *ReplicaError matching ErrOtherReplica from Open
// (or from Tick, if it lost the lease while stalled) instead of
// dispatching the same starts from its own memory. Such a server should
// have a stable ReplicaID, so a restart takes its own lease back at once
// rather than waiting LeaseTTL. SingleReplica turns all of this off for
// hosts that guarantee one server.
//
// When the store offers storage.Claimer (sqlstore does, on PostgreSQL and SQLite) the scheduled
// starts are not kept in memory: every Tick dispatches the due ones from
// the store in batches of ClaimBatch (by default growing, while they
// come back full, up to storage.MaxListLimit), each batch in one atomic store call
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
// every RetryInterval, also while the start's resends back off. A replica that dies or stalls loses the lease;
// every LeaseTTL the leader replica takes over expired ones
// (storage.Claimer ClaimStale, Stats.TakenOver) and resends them under the same
// idempotency key, which devices de-duplicate. A stalled replica that
// wakes up finds its renewal rejected by the epoch and stops resending
// (Stats.Fenced). A leader whose own Tick lagged past its leases (a long
// fan-out under load) finds its own starts in that sweep: it keeps them
// under the new lease without sending them again (Stats.Reclaimed), so
// its lag costs no resends. The start of a device that was offline when a "run
// missed tasks" run began is scheduled like any other (with the message
// "waiting for the device to become visible"), so it too is dispatched by
// one replica, resent until the device answers and taken over if that
// replica dies.
//
// Singleton duties take a leader lease (storage.Leader) on every Tick:
// only the leader fires server-run schedules and purges history; a
// follower keeps its schedule cursors within RecoveryWindow, so a new
// leader fires what a dead one left. The lease is an optimization, not
// the guarantee: fire markers (storage.EngineStateFire records,
// unique per task and run id, kept FireMarkerRetention or RecoveryWindow,
// whichever is longer, and deleted with the task) and time-derived run
// ids already make a second fire of the same activation store nothing. Manual starts, triggers, virus outbreaks and update
// events are handled by the replica that receives them; the result rows
// they write are idempotent upserts keyed by the time-derived run id.
//
// Clocks: lease expiry is judged by the database's clock (now() in
// PostgreSQL; memstore's Config.Clock), never a replica's, unless
// EngineClockLeases is set (then the engine passes its Clock's time as
// Now in every lease call: for tests with a mock clock, which then never
// wait for a lease, and replicas that share one clock). With the store's
// clock, so replicas whose clocks differ (±2 s
// or more) never both hold a lease, and a late write is stopped by the
// epoch whatever the clocks say (a dispatch needs no clock at all: it is
// one transaction). A replica's clock only decides when a
// start is due (DueAt <= its now), which can move a start by the skew but
// not dispatch it twice. The assumption is that the database's clock does
// not jump backwards by more than LeaseTTL while leases are held.
//
// # What a device is sent
//
// A device gets a transport.TaskSpec of each of its tasks, built from the
// task in one place (wire.go): what the agent needs to run it, and
// nothing of the server's (the access list, the scope's groups, devices
// and selection, e-mail recipients, imported vendor fields, who created
// or changed it). A test fails when task.Task gains a field until the
// field is declared sent to devices or not.
//
// # Device input
//
// Everything a device sends takes one path through the server, the
// intake (Handle): decode (the transport) → check every item against the
// authenticated sender (Message.Device, set by the transport) and what
// the server knows → record → acknowledge. Nothing is stored or acted on
// before its item passed the checks:
//
//   - an item names no device but the sender (protocol 1 results and
//     events name their device: it must be the sender);
//   - its task exists, and the sender is in the task's scope (holds the
//     device task, or is a device of the server-run task), or the run
//     was issued to it while it was (its stored result has that run);
//   - a result's state is one a device reports (never scheduled, which
//     is the server's; pending only for a start of its own that waits
//     for its application to run), its Seq is within SeqDevice to
//     transport.MaxSeq, its progress 0 to 100, its times no later than
//     MaxDeviceTimeAhead after the server's clock, its texts within
//     transport.MaxText;
//   - a run id is one the server issued to the sender (its dispatch, its
//     stored result, the task's last manual start), or one the sender's
//     own schedule produces: a scheduled run id (a triggered one for
//     "when new updates are downloaded") of a task the device runs
//     itself whose activation lies within DeviceRunWindow (31 days)
//     before and MaxClockSkew (1 hour) after the server's clock, or the
//     task's Once or Immediately activation, or, for a device-selection
//     "when new updates are downloaded" task, the hourly run of a device
//     whose distribution point is unreachable. A result of an older run
//     than the stored one is acknowledged and not stored (storage would
//     ignore it anyway). An event about a run (RunID set) is checked the
//     same way;
//   - a device event's key is stored in the device's own key space
//     ("device/<device>/<key>"), which the engine's own records never
//     use;
//   - a virus outbreak or an updates-downloaded report counts only from
//     a device the inventory knows (or the server's own agent); an outbreak needs
//     a valid application type; it is dated by the server's clock
//     when it arrives (to the minute, so reports of the same outbreak
//     from several devices start each task once), the device's time is
//     logged only; a resent report (same key) starts nothing;
//   - a local edit is taken only from the device whose local task it is;
//     its actor is DeviceActor(device, user) ("device:<device>/<user>"),
//     which the revision shows, never a name the payload chooses; and
//     only what a device user may change of a local task is taken from
//     it: the name, description, schedule, run-as account, restart
//     policy, history level and device event log setting, settings and
//     suspension. The task's id, type, scope, access list, e-mail
//     recipients and retention stay the server's, whatever the edited
//     document says (a protocol 2 agent sends the whole task);
//   - a heartbeat lists at most transport.MaxHeld tasks; the answer is
//     bounded by what the device holds or should hold: Deliver for its
//     tasks, Withdraw for held tasks of the server's that are not its,
//     and for at most MaxUnknownWithdraws ids the server does not know,
//     then a Sync with the updates generation, unless the heartbeat is
//     Quiet (protocol 4: the agent has nothing waiting to send) and the
//     device already acted on the latest generation; a heartbeat of an
//     agent of protocol 1 to 3 is always answered with a Sync.
//
// An item that fails a check is dropped, counted (Stats.Rejected,
// Stats.RejectedBy by RejectReason) and logged with the device and the
// reason; the other items of the message are recorded and acknowledged,
// and the rejected ones are acknowledged too (resending cannot help). A store
// error while checking an item is no rejection: the item is skipped and
// its message left unacknowledged, so the device resends it. A
// message of an unknown kind or unsupported version gets a
// transport.Error answer. The checks cost less than 10% of the intake's
// throughput (BenchmarkIntake).
//
// # Results
//
// Checked results are buffered and recorded through task.Runtime
// RecordResults in batches (group commit): one call, one store
// transaction, per Tick or per IntakeBatch (10,000) results, whichever
// comes first, then acknowledged (every key of a merged message). A batch
// is written with the server's lock released, so the device messages
// arriving meanwhile are checked and buffered for the next batch (at
// most twice IntakeBatch results wait; further messages wait for the
// write to end); Handle is safe for concurrent use and a transport may
// call it from every device request at once. One batch is written at a
// time, in arrival order. Storage failures, including a failed write of
// their history events, acknowledge no message of the batch, so every
// device of it resends. "On completing another task"
// starts are planned from the recorded results and written in one batch.
// Notifications go through the Manager's Notifier; history is purged by
// calling task.Runtime PurgeHistory every PurgeEvery.
//
// A task whose stored settings cannot be decoded (task.DecodeError, after
// the host changed its settings type without a migration) does not stop
// Open: it is skipped with a logged error and counted in
// Stats.Undecodable, and every other task runs.
//
// # The server's OS event log
//
// The product documentation saves task results "in the operating system
// event log on the Administration Server". Config.ResultSink (off by
// default) receives every final result the server records, each once: the
// devices' results and the ones the server writes itself (missed,
// stopped before it started). Package task/engine/syslogsink implements
// it on log/syslog for Unix hosts; ResultSink documents the shape of a
// Windows Event Log sink.
//
// # Scale
//
// Scopes are resolved when a task is saved, when a server-run activation
// fires, and every ScopeRefresh; the per-device task index behind heartbeat
// synchronization is rebuilt lazily. Each device gets a dense number the
// first time the server hears from it or finds it in a device task's
// scope; its last heartbeat and its task list (with its place in each
// task's device list, so its delay slot is read without a search) are
// kept in slices indexed by that number, so a heartbeat costs one map
// lookup by device id. The package benchmark simulates 10,000
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
//   - A device's delay slot is its place in the layout it last received.
//     After an edit or a manual start the connected devices get their new
//     places at once; an offline device gets its place with its next
//     heartbeat (which reports the places it holds), and until then it
//     may share a part of the window with another device. Devices that
//     join a scope make the window longer (their places come after the
//     others') until places free up; a layout that lost devices keeps its
//     length. A server-run task (a device selection) keeps a layout over
//     the selection's devices, connected or not, and uses it at each
//     fire; its devices hold no slot, so after a restart its layout is
//     rebuilt in id order (start times may move once).
//   - With replicas, starts of devices that were offline (pending, "run
//     missed tasks") and resends stay with the replica that planned or
//     dispatched them; if it dies they are resent when a replica opens.
//   - Replicas learn of tasks created on other replicas when they claim
//     one of their starts (or on Open); device task delivery and
//     heartbeats are per replica (the transport decides which replica a
//     device talks to).
//   - The 25-hour updates fallback counts from the last download this
//     server saw, or from Open: a server restarted after a day without
//     updates waits 25 hours again.
//   - Fire markers are history events: a task whose history is purged
//     within RecoveryWindow of an activation could fire it twice after a
//     restart (retention is at least one day).
//
// # Parts of the runtime
//
// A Server is made of parts with one job each, each with its own state
// struct and file: the catalog of tasks (catalog.go), scheduling
// activations (activations.go), dispatching runs (dispatch.go; with
// replicas through the store's claims, replicas.go), control orders
// (control.go), device sync (devices.go), the intake (intake.go),
// follow-ups of recorded results (followups.go), recovery after a restart
// (recovery.go, called from Open) and leadership (replicas.go). Tick
// (tick.go) calls them in a fixed order. One mutex guards every part: a
// device result settles a dispatch, ends a control order and fires a
// dependent task in one step, so the parts share the lock rather than
// take several in an order every path would have to respect. A device
// message travels one way: Handle → intake checks → flushResults records
// (at the next Tick, or Close) → follow-ups.
//
// # Logs and metrics
//
// Config.Logger (zerolog; default none) gets lifecycle at info (server
// opened with its task count and recovered starts, closed, leader lease
// taken, lost or released, starts taken over from a dead replica),
// decisions at info and debug (task loaded, "run dispatched" with the
// number of devices started, waiting and missed, catch-up run of an
// activation fired late, restart pending), rejected device items at
// warn with the device and the reason, and undecodable tasks at error.
// Secrets never appear: settings and credentials are not logged.
//
// Config.MeterProvider (OpenTelemetry metric API; nil: no metrics) gets
// the instruments named by the Metric* constants: runs dispatched
// (first sends and resends) and fired, results recorded and rejected (by
// taskfleet.reject.reason), dispatch lag and store call duration
// (histograms, seconds, by db.operation.name), connected devices, claim
// takeovers and undecodable tasks. The engine imports only the API; the
// host picks the SDK and exporter (examples/metrics uses Prometheus).
//
// # Memory and scale
//
// The engine keeps per task about 300 bytes of its own state
// (BenchmarkServerMemoryPerTask) and shares the task value with the
// Manager's cache of decoded tasks (TaskSaved gets the cached value),
// and per device in a task's scope about 25 bytes (45 with the automatic
// randomized delay, whose layout gives each device a place;
// BenchmarkServerMemoryPerDevice): its sorted resolved device list and
// its entry in the device's task list. Work per device message does not
// grow with the fleet: a device that becomes visible finds its own
// waiting starts through a per-device index. The simulated week at
// 1,000, 10,000 and 100,000 devices (BenchmarkSimulation) grows with
// exponent about 1.04 in devices × runs (bench/README.md).
//
// # Errors
//
// New returns ValidationErrors naming bad Config fields. Open returns
// storage errors wrapped. Dispatcher methods log and continue where a
// device is unreachable: the heartbeat and the retries repair it.
package engine
