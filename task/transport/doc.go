// Package transport is the contract of the channel between the
// Administration Server runtime (package task/engine) and the device agents
// (package task/agent). A host implements it for its own device channel;
// package task/transport/inproc implements it in process, with fault
// injection, for tests, simulations and single-binary hosts.
//
// # Messages
//
// Server to device: Deliver and Withdraw task definitions, StartRun,
// StopRun, PauseRun and ResumeRun (a task suspended and resumed while it
// runs), Wake (Wake-on-LAN), Shutdown, Sync (the answer to a heartbeat),
// Ack. Device to server: Heartbeat (visibility, held revisions, update
// state), Results, Events, UpdatesDownloaded, VirusOutbreak, LocalEdit, Ack.
//
// # Delivery and retries
//
// A transport delivers at least once at best: it may lose, duplicate,
// delay and reorder messages. Correctness comes from the two runtimes:
//
//   - Device to server: every Results, Events, UpdatesDownloaded,
//     VirusOutbreak and LocalEdit message has a Key and sits in the agent's
//     durable outbox until the server acknowledges the key. The AGENT
//     retries unacknowledged messages (every retry interval, and at once
//     after a heartbeat gets an answer). The server de-duplicates: results
//     by (task, device, run, seq) in storage, events by key in storage,
//     triggers by deterministic run ids.
//   - Server to device: definitions are state, not events. The agent's
//     Heartbeat lists the revisions (and automatic-delay slots) it holds
//     and the SERVER answers with the Deliver and Withdraw messages that
//     bring it up to date, so a lost definition, or a slot the scope has
//     moved, is repaired by the next heartbeat. Runs started by the
//     server (manual starts, triggers, device-selection tasks) are stored
//     as scheduled or pending per-device results first; the SERVER resends
//     StartRun for pending results until the device reports the run
//     (every retry interval and when the device becomes visible). The agent
//     de-duplicates by (task, run id).
//   - StopRun, PauseRun and ResumeRun have a Key and a Control naming the
//     run. The SERVER resends them every retry interval (and when the
//     device becomes visible) until answered: StopRun until the device
//     reports a final state of that run, PauseRun and ResumeRun until the
//     device acknowledges the key (it does so after applying the order
//     and queuing the run's new state) or the run ends. The agent applies
//     StopRun once per run and a pause or resume only if its
//     Control.Order is newer than the last one it applied.
//   - An agent may merge queued Results into one message; Message.Merged
//     lists their keys and the server acknowledges each of them.
//   - Heartbeat, Sync, Wake and Ack carry no key and are never retried
//     individually: they are periodic or repeated by the retries above.
//
// Run ids are derived from time (RunID), so that re-firing the same
// activation after a server restart yields the same run.
package transport
