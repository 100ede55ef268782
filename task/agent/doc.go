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
// Scheduled tasks run on device-local time whether or not the device is
// connected. An activation whose start fell while the agent was not running
// (the device was off) is missed: with "run missed tasks" the latest one
// runs once when the agent starts, otherwise it is recorded missed. Runs
// the server starts (manual starts, triggers, device-selection tasks) arrive
// as StartRun and run once per run id. A task starts only where its
// application runs (otherwise application_not_running); a run longer than
// the task's maximum time is stopped and ends failed_timeout.
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
// unreachable (SetDistributionPointReachable).
//
// # Durability
//
// Every state change is written to the Store before it is acted on: a run
// is recorded as running before the executor starts it, so an agent
// restarted mid-run reports that run failed once and never reruns it. Every
// result, event and report goes into the outbox with an idempotency key and
// stays there until the server acknowledges it; the agent resends
// unacknowledged messages every RetryInterval and whenever a heartbeat is
// answered. The store of subpackage agentsqlite (modernc.org/sqlite, driver
// "sqlite") keeps all of it across restarts; MemStore is for tests and
// simulations. The SQL driver lives in that subpackage so an agent built
// with another store links none; agenttest.RunStore is the conformance
// suite of a vendor's own Store.
//
// # Restart policy
//
// A run whose outcome needs an operating-system restart follows the task's
// restart.Policy on the timeline of restart.Plan, driven by Tick: prompts
// through Config.Restarter, a forced restart when due (not for a locked
// session unless applications may be closed), AcceptRestart when the user
// agrees. Without a Restarter the result is restart_required.
//
// # Errors
//
// New returns ValidationErrors naming bad Config fields; store errors are
// wrapped. Secrets (run-as passwords) are handed to the Executor only.
package agent
