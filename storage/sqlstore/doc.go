// Package sqlstore is the SQL storage.Store of taskfleet, on
// github.com/jmoiron/sqlx with two dialects: SQLite through
// modernc.org/sqlite (pure Go, no cgo) as the embedded default, and
// PostgreSQL through github.com/jackc/pgx/v5/stdlib for scale-out.
//
//	s, err := sqlstore.OpenSQLite(ctx, "/var/lib/taskfleet/taskfleet.db")
//	// or
//	s, err := sqlstore.Open(ctx, sqlstore.Config{
//		Dialect: sqlstore.Postgres,
//		DSN:     "postgres://taskfleet@db:5432/taskfleet?sslmode=verify-full",
//	})
//	defer s.Close()
//
// Both pass the conformance suite in storage/storagetest, so everything
// the storage package documents holds here; this page lists what is
// specific to SQL.
//
// # Schema and migrations
//
// The schema is embedded (migrations/<dialect>/<version>_<name>.sql) and
// applied by Open inside one transaction: on PostgreSQL under a
// transaction-scoped advisory lock (keyed by the current schema), on
// SQLite under the write lock that BEGIN IMMEDIATE takes. Several
// processes may open one database at once; one migrates, the others find
// the schema current. The applied versions are in the table
// taskfleet_schema. A database migrated by a newer taskfleet is refused
// with *SchemaTooNewError. Migrations are additive, so the schema can
// grow (lease and epoch columns for multi-replica dispatch) without
// rewriting data.
//
// Tables: tasks (indexed columns plus the JSON body, and the run counter
// of AllocateRunID), revisions (task, number), results (one row per task
// and device; indexes for listing and statistics on (task, state), and on
// SQLite for the due-run query on (state, due_at)), events (indexes on (task, id)
// for listing and (task, at) for retention purges) and event_keys (the
// de-duplication keys, kept after a purge so a late duplicate stays
// refused). Deleting a task removes all of them in one transaction
// (foreign keys with ON DELETE CASCADE, and an explicit delete for
// results, the hot table, which has no foreign key to keep ingest cheap).
// On PostgreSQL, result_deltas holds per-task counters (below); SQLite
// counts a task's results when asked. Schema version 6 adds saved device
// selections (scope.SelectionStore on Inventory): selections, the current
// revision of each, and selection_revisions, their history, kept after a
// deletion. Schema
// version 2 adds the device inventory: admin_groups (the group tree) and
// devices (indexed columns plus the other facts as JSON), read and written
// through Store.Inventory and Store.Devices (see Inventory). Schema
// version 3 adds dispatch claims for several engine replicas on one
// database (storage.Claimer and storage.Leader): lease_owner, lease_epoch
// and lease_until on results (on PostgreSQL in result_leases since
// version 11, below), dispatch_log (one row per dispatched run,
// deliberately without a unique key so an audit would see a duplicate)
// and leaders (named leader leases). Lease expiry is judged by the
// database's clock unless the caller passes Now in the lease params
// (then by that instant). DispatchDue claims, dispatches and logs a batch
// in one statement (PostgreSQL) or transaction (SQLite), so a run is
// written once when it is dispatched; SQLite writes the batch's ledger
// rows with multi-row statements prepared at Open and reads each task's
// revision once per batch (BenchmarkDispatchDueSQLite). Schema version 4 makes that write
// cheaper: the due index holds scheduled results only (a result leaves it
// for good when it is dispatched), and the append-only ledger has no
// index (audits read it whole). Schema version 5 adds engine_state (the
// engine's fire markers and stop orders, storage.EngineStateStore),
// unique per (task, kind, key) and deleted with the task (ON DELETE
// CASCADE); history retention never touches it.
// Schema version 9 adds results_leased, a partial index of the pending
// results (the starts in flight), which ClaimStale reads: the leader's
// sweep for dispatched starts whose replica's lease expired no longer
// scans the whole results table every LeaseTTL.
//
// Schema version 11 (PostgreSQL; SQLite keeps dispatching on results)
// moves dispatch out of the results table, which it rewrote whole for
// every dispatched run at about half the claim rate of a bare queue:
//
//   - result_queue holds a row (key, run, seq, due time) for each result
//     in state "scheduled" that no replica has dispatched. DispatchDue
//     claims by deleting queue rows (a delete marks the row and writes
//     no index entry), so DispatchParams.FromState must be "scheduled"
//     on PostgreSQL (another state is ErrInvalid).
//   - result_leases holds a row for each dispatched result no device has
//     answered: the state and seq DispatchDue gave it, its update time,
//     the result's own seq underneath (base_seq) and the lease (owner,
//     epoch, until). ClaimStale and RenewClaims write only here. The
//     leader's sweep (ClaimStale) reads the table whole: it holds only
//     the starts in flight, and without an index on until a dispatch
//     writes one index entry less and a renewal is a HOT update. A lease's epoch starts at 1 for each
//     dispatch.
//   - The result row stays as it was scheduled until the device answers.
//     GetResult, ListResults and DueResults read a leased result through
//     its lease row: its state, seq and update time are the lease's.
//     TaskStatistics counts it in the lease's state: DispatchDue writes
//     the counter deltas itself (no trigger on the two tables).
//   - UpsertResults keeps both tables in step in its transaction: a record
//     competes with the lease's (run, seq) when the result is leased; a
//     result it leaves in state "scheduled" gets its queue row; and after
//     each round, one statement deletes the round's queue rows that no
//     longer match their result and, on its own snapshot taken after any
//     replica dispatching those rows has committed, another deletes the
//     leases that no longer match (counting their results back). The
//     COPY path of new devices adds their queue rows by COPY too.
//   - DeleteTask deletes the task's queue rows, then its leases, then its
//     results.
//   - Both tables churn: every dispatched run deletes a queue row and
//     inserts a lease, every answer deletes a lease. Autovacuum cleans
//     them up within its naptime (a minute by default). Until it has, the
//     dead index entries of earlier fan-outs lie in front of the due scan:
//     ten fan-outs of 20,000 runs two seconds apart, with no vacuum
//     between them, dispatch at about 0.75x the rate of freshly vacuumed
//     tables (bench/README.md). A host that fans out many times a minute
//     can lower autovacuum_naptime, or the tables' autovacuum thresholds.
//
// The migration moves the in-flight dispatches over (a pending result
// with a lease owner becomes a lease row over its result, set back to
// "scheduled"), queues the scheduled results, drops results_due and
// results_leased and the three lease columns of results.
//
// The hierarchy migration (hierarchy_nodes, hierarchy_children,
// hierarchy_copies, hierarchy_reports, hierarchy_figures) keeps the
// Administration Server hierarchy's state (storage.HierarchyStore): every
// row belongs to one node (a physical or virtual server sharing the
// database); ApplyHierarchyReport and ApplyHierarchyTaskSet check the
// stored version in the same transaction (on PostgreSQL under a row lock
// on the node), so a report is applied once even by racing processes.
//
// Schema version 10 adds device_keys (storage.DeviceKeyStore): the device
// channel's enrollment keys, one row per device with the SHA-256 of the
// current and the rotated-out key (never a key), their times and the
// revoked and used flags; PutDeviceKey is a single conditional INSERT ...
// ON CONFLICT DO NOTHING or UPDATE ... WHERE hash = expected, so racing
// enrollments of one device leave exactly one winner.
// httptransport.StoreKeys serves it to the channel.
//
// PostgreSQL text keys use COLLATE "C": listings are in byte order, the
// same as every other backend, whatever the database's locale.
//
// PostgreSQL 12 or later is required: the result upsert sets
// plan_cache_mode for its transaction (version 12), and the schema uses
// EXECUTE FUNCTION triggers (version 11). CI runs PostgreSQL 15.
//
// # Time semantics
//
// The store never reads the clock: every time comes in the records. Times
// are stored in UTC with microsecond precision — timestamptz on
// PostgreSQL, INTEGER microseconds since the Unix epoch on SQLite — and
// come back as UTC time.Time values; the zero time.Time is stored as its
// own instant and comes back zero.
//
// # Result ingest
//
// UpsertResults writes one batch atomically. A result replaces the stored
// one only when its (RunID, Seq) is greater, so retried and reordered
// deliveries never duplicate or regress a result. A batch is split into
// rounds in which each (task, device) appears once (round k holds each
// device's k-th record), which keeps the count identical to processing
// the records one by one. SQLite drops results of unknown tasks, then
// writes each round with prepared multi-row INSERT ... ON CONFLICT
// statements, all in one transaction. PostgreSQL, in one transaction,
// locks the batch's tasks FOR KEY SHARE (a concurrent DeleteTask waits
// rather than leaving orphans) and looks up 32 of each task's devices,
// spread over the batch, both pipelined with BEGIN in one round trip. When
// none of them has a result the batch is taken to be new devices: the first
// record of each device is COPYed (COPY writes pages of rows at once, about
// twice as fast as any INSERT); when all have one, the batch is a status
// update and is upserted whole; when some have, every device is looked
// up and only the new ones COPYed. The other records are upserted with
// INSERT ... SELECT FROM unnest(...) ON CONFLICT, one array per column,
// pipelined with COMMIT. Should COPY meet a device that has a result after
// all (missed by the sample, or created by a concurrent writer), the
// transaction is rolled back and the whole batch written again by the
// upsert alone. Rows are written in (task, device) order so writers
// sharing devices do not deadlock; a deadlock or serialization failure is
// still possible under contention and returns ErrRetryable.
//
// # History events
//
// AppendEvents writes a batch set-based, so recording the history events
// of a group commit of results costs a few statements whatever its size.
// A keyed event is recorded only when its (task, key) is reserved in
// event_keys by this call: a key already recorded (also one whose event
// was purged) and every later event of the same key in one call are
// skipped; events keep the call's order (their ids ascend in it) and
// events of unknown tasks are skipped. PostgreSQL does it in one
// statement: the batch travels as one array per column, expanded by
// unnest, the key reservation is a data-modifying CTE (INSERT ... ON
// CONFLICT DO NOTHING RETURNING) and the events are inserted from the
// batch where their key was reserved, under FOR KEY SHARE on the batch's
// tasks. SQLite does it in one transaction with multi-row statements of
// up to 256 rows, prepared once at Open: the key reservations (with
// RETURNING), then the events. BenchmarkAppendEvents compares it with the
// former two statements per event.
//
// # Statistics
//
// PostgreSQL keeps per-task counters without a hot counter row:
// statement-level triggers with transition tables append one delta row per
// (task, state) and statement, TaskStatistics sums a task's deltas
// (O(states), well under a millisecond for a million-device task) and
// folds them into one row per state when they pile up (also every 64th
// UpsertResults). SQLite counts the task's results through a covering
// index: linear in the task's devices (about 0.3 s for 1.2 million on a
// small machine), fine for the embedded scale.
//
// # SQLite
//
// The database runs in WAL mode with foreign keys on and a busy timeout
// (Config.BusyTimeout, default 5s). Writes go through one dedicated
// connection whose transactions begin IMMEDIATE; reads use a pool of
// Config.SQLiteReaders connections that WAL lets run beside the writer.
// ":memory:" is one private connection for everything. The writer keeps
// its temporary files in memory (temp_store=MEMORY): the statement
// journals with which SQLite undoes one failed statement of an open
// transaction, written for every multi-row statement, no longer go
// through a temporary file; they play no part in durability.
//
// Durability: synchronous=FULL by default (SyncFull): every commit is
// synced, so nothing committed is lost — neither when the process is
// killed nor on power loss. SyncNormal syncs only at checkpoints: a killed
// process still loses nothing, but a power loss or OS crash may roll back
// the last commits. The crash-safety test kills a writer process with
// SIGKILL in the middle of batches and checks that every reported commit
// is present and no batch is half-written, on both engines.
//
// # PostgreSQL
//
// Config.MaxOpenConns, MaxIdleConns and ConnMaxLifetime size the pool.
// Runtime parameters in the DSN (search_path, application_name) are passed
// to the server, so a host can keep taskfleet in its own schema. The schema
// must exist: Open does not create it (a typo would start an empty second
// database) and fails with a *NoSchemaError saying so.
//
// # Errors
//
// Driver errors are mapped in one function: a unique violation matches
// ErrConflict, a missing row ErrNotFound, a serialization failure,
// deadlock, lock timeout or busy SQLite database ErrRetryable (retry the
// call), a closed store ErrClosed. The driver error stays in the chain for
// errors.As. A Config outside its documented ranges is rejected by Open
// with ValidationErrors (ErrInvalid) naming each field. The DSN, which may
// hold a password, never appears in errors or logs.
//
// # Tests
//
// The PostgreSQL tests run when TASKFLEET_TEST_POSTGRES holds a DSN (for
// example postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable);
// each test works in its own freshly created schema and drops it. Without
// the variable they skip with a message saying so. .ci/run starts a
// PostgreSQL 15 and sets it.
package sqlstore
