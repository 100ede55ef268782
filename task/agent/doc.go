// Package agent is the device runtime of taskfleet: it keeps the task
// definitions delivered to its device, evaluates their schedules in the
// device's zone, runs them through the host's Executor (the security
// application), applies restart policies, and reports through a durable
// outbox.
//
// # Concepts
//
//	st, _ := agentsqlite.Open(ctx, "/var/lib/agent/tasks.db") // or agent.NewMemStore()
//	a, _ := agent.New(ctx, agent.Config{Device: id, Store: st, Executor: app, Location: zone})
//	a.Attach(channel.Device(id, a)) // a is the transport.Handler
//	go a.Run(ctx, time.Minute)      // or a.Tick(ctx) from a simulation
//
// The agent speaks only the wire protocol's types (package
// task/transport): it holds each task as the transport.TaskSpec the
// server sent, reports run states as transport.State values, and links
// neither the task model nor package scope (nor CEL, protobuf or
// validator), so a device program is small: examples/minimalagent, the
// agent with MemStore, is 2.9 MB stripped (go build -ldflags="-s -w"),
// 7.6 MB with agentsqlite (Go 1.26, linux/amd64), and a test holds it to
// 8 MB.
//
// Scheduled tasks run on device-local time whether or not the device is
// connected. Runs the server starts (manual starts, triggers,
// device-selection tasks) arrive as StartRun and run once per run id. A
// task starts only where its application runs (otherwise
// application_not_running); a run longer than the task's maximum time is
// stopped and ends failed_timeout.
//
// # Missed runs
//
// The product documentation's "run missed tasks" applies when the device
// is not visible at the scheduled time. The agent's reading:
//
//   - The device is visible from the agent's start (New) and from the end
//     of each sleep: a Tick more than Config.SleepGap after the previous
//     one (default three heartbeats, 15 minutes, as the server's
//     visibility timeout) means the device slept or the host stopped
//     ticking, and it was not visible in between. For a task it is
//     visible from when the server sent the task to it (the message's
//     SentAt: a definition pushed at the save and still in flight at the
//     start counts as visible) or, without that, from when it arrived.
//   - An activation due (with its randomized delay) before the device was
//     visible is missed. With "run missed tasks" off (the default) it is
//     recorded missed, with a message saying why (the agent was not
//     running or the device was asleep; the task reached the device only
//     after the start). Strict is the default: Config.MissedTolerance may
//     let activations due shortly before the device became visible run
//     (a slow boot), and is zero unless the host sets it.
//   - With "run missed tasks" on, the device runs one catch-up per gap,
//     not a burst: the latest missed activation runs at once (unless a
//     later activation is due already and runs anyway) and the earlier
//     ones are recorded missed. A gap of more than 64
//     activations records the newest 64, the oldest naming how many came
//     before.
//   - With "run missed tasks" on, a start that finds the task's
//     application not running waits for it ("the next time the
//     application is run"): it is reported pending, checked every
//     RetryInterval and at once after ApplicationStarted, and begins when
//     the application runs. A newer start of the task replaces a waiting
//     one, which is recorded missed (the application was not running).
//     Without the option the start ends application_not_running.
//   - A Once start at the instant of saving (or later) is the save's own
//     activation and runs; other schedules start with the first
//     activation after the save.
//
// # Clocks that jump
//
// The agent keeps a cursor per task: the last activation it handled
// (run, missed or skipped). When the device's clock steps back, the
// activations at or before the cursor are not handled again, so nothing
// repeats; the next activation after the cursor runs when the clock
// reaches it again; the heartbeat, the outbox retries and the checks for
// the application stay due within their intervals of the new time, so the
// device stays visible. When the clock steps forward by less than SleepGap
// the activations stepped over run at once, as late starts; by more,
// the step counts as a sleep and they are missed (one catch-up with "run
// missed tasks").
//
// # Time zones
//
// Config.Location is the device's zone, and the device's zone data governs
// its device-local schedules: the agent evaluates them with the
// *time.Location its host loaded on the device, from whatever zone
// database the device has. The server and the device may hold different
// versions of the zone database; where they differ, the device's answer
// is the activation, and what the server computes for that device's
// schedule (Wake-on-LAN wake-ups, previews) is an estimate.
//
// A Windows device or a container without zone files has no database for
// time.LoadLocation to read. Build the agent's host with
//
//	go build -tags taskfleet_tzdata
//
// to embed Go's zone database (package time/tzdata, about 450 KB) in the
// binary; the time package uses it when the device has no zone files, so
// such a device computes the times the product documentation describes.
// On a device with zone files those still govern. Importing time/tzdata in
// the host's main package is equivalent.
//
// # Suspend, resume and stop
//
// A suspended task holds its starts. When the administrator suspends a
// task while it runs, the server sends PauseRun and the agent pauses the
// run through the Executor's optional Pauser (a type assertion, like
// database/sql's optional driver interfaces); ResumeRun continues it. The
// orders carry the task revision (transport.Control.Order): the agent
// applies an order only if it is newer than the last one applied to the
// task, so a late, repeated or reordered order changes nothing, and the
// newer of that order and the held definition decides whether the task
// is suspended. Every order is acknowledged once it is applied and the
// run's new state (paused, running) is in the outbox. Without Pauser, or
// when Pause fails, the run continues and the agent reports that it
// cannot be paused: the running result's message and a warning event.
// A run that cannot be resumed is stopped and reported failed. The
// task's maximum run time counts execution only: time spent paused is
// added to the limit.
//
// StopRun (resent by the server until it learns the run's final state)
// is applied once per run: it stops the run in progress and drops the
// task's queued starts; a StopRun for a run that already ended changes
// nothing, and one for a run the device never received is answered
// "stopped before it started", and that run never starts (the agent keeps
// that in its Store, so a late StartRun after an agent restart does not
// start it either).
//
// "When new updates are downloaded" tasks run when the server's Sync
// reports a new repository generation, and every hour while no updates
// arrived for UpdatesOverdue (25 hours) or the distribution point is
// unreachable (SetDistributionPointReachable). Device-selection update
// tasks (held once the server started them on the device) run hourly here
// only while the distribution point is unreachable and updates are not
// yet overdue; when they are overdue the server fires them every hour.
//
// # Durability
//
// Every state change is written to the Store before it is acted on: a run
// is recorded as running before the executor starts it, so an agent
// restarted mid-run reports that run failed once and never reruns it. A
// run's end is queued in the outbox before the task is stored without the
// run, so an agent killed between the two writes still sends the end (its
// report of the run failed then has the same key and is ignored). Every
// result, event and report goes into the outbox with an idempotency key and
// stays there until the server acknowledges it; the agent resends
// unacknowledged messages every RetryInterval and whenever a heartbeat is
// answered. (On a MemStore, an acknowledgement that empties the outbox
// ends the retries at once; a Store that cannot tell that cheaply ends
// them at the next retry, which finds the outbox empty.) A scheduled
// activation's new cursor is written together with its run's start (one
// write, before the executor starts it): an agent killed in between
// restarts as if killed just before the activation, which is then missed
// (or caught up, with "run missed tasks"), never run twice. The store of
// subpackage agentsqlite (modernc.org/sqlite, driver
// "sqlite") keeps all of it across restarts; MemStore is for tests and
// simulations. The SQL driver lives in that subpackage so an agent built
// with another store links none; agenttest.RunStore is the conformance
// suite of a vendor's own Store.
//
// # Messages
//
// The agent speaks transport.ProtocolVersion. While its outbox is empty
// its heartbeats are Quiet (protocol 4): the server answers one with a
// Sync only when it has a newer updates generation, so a fleet's idle
// heartbeats cost one message each, not two. Its results and events
// name no device (the transport sets the sender) and their texts are
// clipped to transport.MaxText before they are queued (transport.Clip:
// a 5 KB stack trace from an executor is cut, never the reason a result
// is refused); results are merged into messages of at most 256 entries,
// well within transport.MaxItems and MaxMessageBytes. ReportEvent
// refuses an event of an unknown level or severity, and of a task the
// device does not hold, instead of queuing what the server would reject.
// A local user's edit (EditLocalTask) carries the user name, at most
// transport.MaxUserBytes, and the edited TaskSpec; the server records it
// as that user of this device and takes only what a device user may
// change (see package task/engine, "Device input"). An Error answer from
// the server is logged.
//
// # Restart policy
//
// A run whose outcome needs an operating-system restart follows the task's
// restart.Policy on the timeline of restart.Plan, driven by Tick: prompts
// through Config.Restarter, a forced restart when due (not for a locked
// session unless applications may be closed), AcceptRestart when the user
// agrees. Without a Restarter the result is restart_required.
//
// # Logs and metrics
//
// Config.Logger (zerolog; default none) gets the attach to the
// transport, runs started and ended and restart pending at info, tasks
// delivered and withdrawn at debug, storage and transport failures at
// error; run-as passwords never appear. Config.MeterProvider
// (OpenTelemetry metric API; nil: no metrics) gets the outbox depth
// (MetricOutboxDepth, read from the Store at each collection), runs
// started and results queued. The agent links only the metric API, never
// an SDK or exporter (a test keeps it so): a device binary pays for them
// only if its host chooses them.
//
// # Errors
//
// New returns ValidationErrors naming bad Config fields; store errors are
// wrapped. Secrets (run-as passwords) are handed to the Executor only.
package agent
