// Package storage is the persistence contract of taskfleet: the Store
// interface, its record types and its sentinel errors.
//
// # Concepts
//
// The task package does every validation, default, authorization and
// diff once, and hands a Store complete records: a TaskRecord carries the
// columns a backend indexes (ids, names, application, kind, group, device,
// revision) and the full task as JSON in Body. A Store only persists and
// queries; it never interprets Body. This keeps backends thin and lets the
// task model grow without schema migrations.
//
// Per-device results are one current row per (task, device), replaced
// only by a newer (RunID, Seq) pair, so retried and reordered deliveries
// are idempotent. Events carry an optional de-duplication Key.
//
// History events (EventStore) are what administrators read; the task's
// history settings decide what is written and history retention purges
// them. What the server runtime must remember (fired activations, stop
// orders) is engine state (EngineStateStore): its own records, written
// only by the engine, deleted with the task or by PurgeEngineState, never
// by history retention, and out of reach of device input.
//
// # Backends
//
//   - storage/memstore: in memory, safe for concurrent use; for tests,
//     simulations and single-process hosts.
//   - storage/sqlstore: SQLite (embedded default) and PostgreSQL.
//
// # Implementing a Store
//
// Implement Store (tasks, results, history events, engine state and the
// Leader lease), map your errors to ErrNotFound, ErrConflict and
// ErrRetryable in one function, and run the conformance suite from
// storage/storagetest in a test:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, storagetest.Harness{
//			New:      func(t *testing.T) storage.Store { return mystore.Open(t.TempDir()) },
//			Features: storagetest.Features{Claimer: true}, // if it implements Claimer
//		})
//	}
//
// A store copies what it keeps: callers reuse the slices they pass (the
// Manager refills one results buffer and one events buffer per batch),
// and a store may not hold on to them after the call returns
// (storagetest's CallerBuffersReused).
//
// Claimer is optional: without it the engine runs one replica per store
// (it refuses a second). Lease calls take Now (nil: your store's clock);
// a store must honour it, which is how the suite tests lease expiry
// without waiting.
//
// HierarchyStore is optional too: it keeps the Administration Server
// hierarchy's state (task/hierarchy) durable: the server tree, the
// inherited copies with their lineage, the last report version per child
// and the figures per (task, server below). Its Apply calls are
// conditional on a newer version (ErrConflict otherwise, nothing
// written), which is what makes each report count once across restarts.
// Set Features.Hierarchy to run its sections of the suite.
//
// DeviceKeyStore is optional as well: it keeps a device channel's
// enrollment keys (hashes only) durable, one per device, with a
// compare-and-set PutDeviceKey, so enrolled devices survive a server
// restart (task/transport/httptransport StoreKeys adapts it). Set
// Features.DeviceKeys to run its sections of the suite.
//
// # Errors
//
// Every method documents which sentinel its errors match: ErrNotFound,
// ErrConflict, ErrRetryable, ErrClosed, ErrInvalid. These are the same
// values as the task package's, so errors.Is works across layers.
//
// # Time
//
// Times are stored and returned in UTC with microsecond precision (UTC
// truncates them so); stores never read the clock for records: every
// time is in the records the core passes. The one exception is leases
// (Leader, Claimer): with a nil Now they are judged by the store's own
// clock, so replicas whose clocks differ agree on expiry.
package storage
