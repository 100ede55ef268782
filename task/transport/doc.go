// Package transport is the contract of the channel between the
// Administration Server runtime (package task/engine) and the device agents
// (package task/agent). Package task/transport/httptransport implements
// it over HTTPS with authenticated devices; package
// task/transport/inproc implements it in process, with fault injection,
// for tests, simulations and single-binary hosts; a host may implement it
// for its own device channel.
//
// # Messages
//
// Server to device: Deliver and Withdraw task definitions, StartRun,
// StopRun, PauseRun and ResumeRun (a task suspended and resumed while it
// runs), Wake (Wake-on-LAN), Shutdown, Sync (the answer to a heartbeat),
// Ack, Error. Device to server: Heartbeat (visibility, held revisions,
// update state), Results, Events, UpdatesDownloaded, VirusOutbreak,
// LocalEdit, Ack, Error.
//
// # Wire protocol
//
// Message and its payloads are the protocol: JSON-tagged types of this
// package. The task a Deliver or StartRun carries is a TaskSpec, what a
// device needs of a task, not the task model's task.Task: a change to the
// task model does not change the wire (package task/engine converts, and
// a test there fails when the task model gains a field nobody decided
// about). TaskSpec's schedule, run-as account and restart policy are the
// types of packages schedule, credentials and restart, whose logic the
// device runs; their JSON forms are part of the protocol. Encode and
// Decode are the codec; testdata/golden holds one file per message kind
// of the current ProtocolVersion, with every TaskSpec field set, and a
// test fails when the encoding of any of them changes (also through a
// change of the schedule, credentials or restart JSON), so the wire never
// changes by accident. testdata/v3, testdata/v2 and testdata/v1 hold
// messages of the older versions, which a test decodes to their meaning
// today.
//
// This package links neither the task model (package task) nor package
// scope, nor what they link (CEL, protobuf, validator): a device binary
// built on it and package task/agent stays small. DeviceID is the same
// type as scope.DeviceID.
//
// Versions: protocol 4 adds HeartbeatInfo.Quiet: an agent whose outbox is
// empty says so, and the server answers its heartbeat with a Sync only
// when it has a newer updates generation (a fleet's heartbeats were
// answered one Sync each, most of them telling the device nothing); a
// heartbeat without it, from an agent of protocol 1 to 3 or one with
// messages waiting, is answered with a Sync as before, and a server of
// protocol 3 ignores the field. Protocol 3 sends a TaskSpec where
// protocol 2 sent the whole task (the same JSON names, so a protocol 2 agent reads a TaskSpec as
// the task it used to get, and a protocol 2 agent's task decodes as a
// TaskSpec); a LocalEdit carries a TaskSpec, and the server takes only
// the fields a device user may change. Protocol 2 added the version
// field and named results' and events' devices by the sender only.
//
// Compatibility rule: a server speaks ProtocolVersion and accepts every
// version from MinProtocolVersion on, so an agent one version older than
// the server keeps working (protocol 1 had no version field: the field
// names are still protocol 1's, which encoding/json matches
// case-insensitively, and results may still name their device). Unknown
// fields are ignored, so a newer sender may add fields. A message of a
// kind the receiver does not know, or of a version older than
// MinProtocolVersion, is not processed and gets an Error answer
// (ErrorInfo: ErrUnknownKind or ErrVersion, with the kind and key); an
// Error is never answered. A change that an older peer would misread is
// a new ProtocolVersion, and the server keeps reading the previous one.
//
// # Identity and limits
//
// The transport authenticates each device and sets Message.Device (see
// ServerEndpoint); the server takes that as the only identity of a
// message. It reads at most MaxMessageBytes of one message before
// decoding it. The server then checks every item of a device message
// (see package task/engine, "Device input"): at most MaxItems results,
// events or acknowledged keys and MaxHeld held tasks per message, texts
// of at most MaxText bytes, keys and task ids of at most MaxKeyBytes,
// user names of at most MaxUserBytes, edited tasks of at most
// MaxEditBytes, Seq from SeqDevice to MaxSeq. Items over a limit are
// rejected one by one, never the whole message; agents clip texts (Clip)
// before they queue them, so an honest agent never sends one.
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
