// Package hierarchy models the product documentation's hierarchy of Administration
// Servers: a primary server with secondary and virtual servers deployed in
// its administration groups, which can have secondary and virtual servers
// of their own, to any depth.
//
// # Concepts
//
// Every server runs a Node over its own task.Manager. A Node knows its
// Parent ("" for the primary) and its Children, each deployed in one of
// its administration groups. Nodes talk only to their parent and
// children, through a Link.
//
//	primary ── s-de ── s-ber
//	   │         └──── v-de
//	   └────── v-eu
//
// # Inheritance
//
// A group task whose scope has "Distribute to secondary and virtual
// Administration Servers" (scope.Scope.DistributeToServers) is inherited
// by every secondary or virtual server deployed in the task's group (or in
// a subgroup, unless the task is for the group only). Node.Distribute
// sends each child the complete set of tasks it inherits; the child keeps
// one copy of each in its own Manager, scoped to its root group, and
// distributes its copies (and its own distributed tasks) on to its own
// children in the same call, so one Distribute on the primary reaches the
// whole tree. A task of the same type that already exists on a server is
// left alone: both run, as the product documentation says. Copies are read-only at every
// level: wrap each Manager's Authorizer with ReadOnly so only the Node may
// modify or delete them. Node.Tasks shows them as inherited, with their
// Lineage: the task on every server above, up to its origin.
//
// A copy's CreatedBy holds its lineage, for example
// "inherited:s-de/t2<primary/t1@3" for the copy of s-de's task t2 (at
// revision 3), itself a copy of the primary's t1, so it survives restarts and travels with the task to the next level. A change on the
// origin updates every copy below it; a task no longer inherited is
// deleted at every level; copies inherited from a former parent are
// deleted when the new parent's tasks arrive. Task sets carry the
// sender's Version, so a set repeated or delivered after a newer one
// (concurrent Distribute calls, a retrying Link) changes nothing.
//
// # Who runs a distributed task
//
// With "Distribute to secondary and virtual Administration Servers" on,
// the task's scope on the primary includes the devices those servers
// manage (scope.Resolve, Explain), but each device runs the task through
// its own server: the servers below run their inherited copies on their
// devices, and the engine (package task/engine) of the server that owns
// the task runs it only on the devices it manages itself (Server.Role
// primary, or empty) — scheduled activations and manual starts alike. So
// each device runs each activation once, and the roll-up counts it once:
// in the statistics of the server that manages it, relayed up.
//
// # Roll-up
//
// Node.Report sends the parent, for every copy inherited from it, the
// server's own statistics and the latest figures of every server below
// it, keyed by the parent's task ids. Figures are relayed unchanged, with
// the Version of the report of the server that read them, so every server
// keeps one entry per (task, server below it): a relayed figure replaces
// that server's previous one and is never added twice, however often it
// is relayed, and an older figure or report arriving late is ignored.
//
// Each level offers "Statistics from secondary Servers" of everything
// below it: Node.StatisticsFromSecondaries (one entry per server, with
// its Path from this server down), Node.SecondaryStatistics (one server),
// Node.SubtreeStatistics (a server and everything below it) and
// Node.RolledUp (this server plus everything below). A secondary's own
// distributed tasks roll up to it, not to its parent.
//
// # Unreachable servers
//
// Every message is a complete state, so nothing is queued or replayed.
// While a server cannot be reached, Distribute still serves the other
// children and returns ErrUnreachable for it; the servers above keep the
// last figures of its subtree. When it is back, the next Distribute
// brings its subtree up to date and its next Report delivers the figures
// its subtree reported meanwhile, each counted once.
//
// A report says whether it is Complete: every child of the sender has
// reported since the sender's Node was created. A complete report drops
// the figures of servers no longer below the sender; an incomplete one
// (the sender restarted and has not heard from its whole subtree) keeps
// them, so a restart never makes the primary under-count.
//
// # Durable state
//
// Open (instead of New) keeps the Node's state in a storage.HierarchyStore
// (Config.Store; storage/memstore and storage/sqlstore implement it): its
// place in the server tree, the inherited copies with their lineage, the
// last task set applied, the last report applied from each child and the
// figures of every (task, server below). Every change is written through
// before it is applied in memory, and the store applies a report only if
// it is newer than the last one from that child, so a report counts once
// even when it is delivered again after a restart on either side. A
// restarted server serves the same figures at once, and its first report
// is complete when its children's reports were, so the servers above it
// keep its subtree. Servers sharing one store (a physical server and its
// virtual servers) keep apart by their ID: no call on one returns or
// changes another's state.
//
// # Sync loop
//
// Node.Start runs the hierarchy with one call: each round it pulls its
// task set from its parent when the Link is a TaskPuller (a secondary that
// connects out), distributes to its children and reports to its parent
// (Node.Round), then waits SyncConfig.Interval (default one minute). A
// failed round is retried after a backoff that doubles from MinBackoff
// (1 s) up to MaxBackoff (5 min), each wait drawn in [w/2, w] so servers
// cut off together do not return in step. Sync.Stop (or the context)
// stops it.
//
// # Per-device results
//
// Only counts roll up. Node.DeviceResults pages through the per-device
// results of a task on any server below, filtered by state, on demand:
// the query travels down the figure's Path through the Link (a
// ResultsFetcher), each server in between relaying it to the next, and
// the server itself answers from its own store (Node.ServeResults). A
// server answers only its parent and only about its copies of the
// parent's tasks.
//
// # Time semantics
//
// Reports are stamped with the injected clock (Config.Clock). A Node's
// reports are ordered by its epoch, the clock reading when it was
// created, and a counter; with a Store the epoch is also later than the
// one stored for its previous start, so a clock that went back does not
// make its reports stale. Versions are only compared between reports of
// one server, so clock skew between servers does not matter. Without a
// Store the figures are held in memory: a restarted server knows the
// figures of the servers below it again after they next report.
//
// # Link
//
// Servers talk through the Link interface: SendTasks delivers a TaskSet
// to Node.ReceiveTasks, SendReport a Report to Node.ReceiveReport on the
// other side; the optional TaskPuller and ResultsFetcher add pulled task
// sets and per-device results. InProc connects Nodes in one process
// (tests, simulations) and can take a link down and up; package
// hierarchyhttp is the link over HTTPS with mutual TLS, on which every
// connection is opened by the child. Task settings that crossed a
// network as JSON are decoded into the type registered on the receiving
// server, unknown fields refused. Each TaskSet carries the servers it
// passed through and each relayed figure its Path, so servers configured
// in a ring stop after one round with a *CycleError; chains longer than
// MaxDepth are refused.
//
// # Errors
//
// Configuration errors are ValidationErrors naming the field; a server
// that is its own parent, or whose parent is also its child, is a
// *CycleError (ErrInvalid). Messages from a server that is not the
// receiver's parent (tasks) or child (reports), or to a server a Link
// has no route to, fail with an *UnknownServerError (ErrNotFound). A Link
// that cannot reach the other side returns ErrUnreachable, which matches
// ErrRetryable. An edit of an inherited copy through a ReadOnly-wrapped
// Manager fails with task.ErrPermission.
package hierarchy
