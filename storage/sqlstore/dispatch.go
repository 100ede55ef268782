package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jmoiron/sqlx"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/storage"
)

var (
	_ storage.Claimer = (*Store)(nil)
)

// sqliteNow is the SQLite host's clock in microseconds since the Unix
// epoch (SQLite has no server; all its writers share one host).
const sqliteNow = `CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)`

// sqliteLeaseNow is the lease clock on SQLite: the caller's Now (bound)
// or the host's clock.
const sqliteLeaseNow = `COALESCE(?, ` + sqliteNow + `)`

// pgLeaseNow is the lease clock on PostgreSQL: the caller's Now (bound as
// parameter $n) or the database server's now().
func pgLeaseNow(n int) string { return fmt.Sprintf("COALESCE($%d::timestamptz, now())", n) }

// leaseNow is the argument bound for the lease clock: nil (the store's
// clock) or the caller's instant.
func (s *Store) leaseNow(now *time.Time) any {
	if now == nil {
		return nil
	}
	return s.tv(*now)
}

func validLease(owner string, ttl time.Duration, limit int) errs.ValidationErrors {
	var bad errs.ValidationErrors
	if owner == "" {
		bad = append(bad, errs.Invalid("owner", "", "must not be empty"))
	}
	if ttl <= 0 {
		bad = append(bad, errs.Invalid("ttl", ttl.String(), "must be positive"))
	}
	if limit <= 0 || limit > storage.MaxListLimit {
		bad = append(bad, errs.Invalid("limit", fmt.Sprint(limit), fmt.Sprintf("must be 1..%d", storage.MaxListLimit)))
	}
	return bad
}

// stateLiteral returns a result state as a quoted SQL literal. States are
// written into the statement, not bound, so the planner can use the
// partial due index (WHERE state = 'scheduled'), which a bound parameter
// cannot match; only lower-case letters and underscores are accepted.
func stateLiteral(field, st string) (string, error) {
	if st == "" || len(st) > 64 {
		return "", errs.Invalid(field, st, "must be 1 to 64 characters")
	}
	for _, r := range st {
		if (r < 'a' || r > 'z') && r != '_' {
			return "", errs.Invalid(field, st, "must be lower-case letters and underscores")
		}
	}
	return "'" + st + "'", nil
}

// rowScanner is what *sql.Rows offers.
type rowScanner interface {
	Next() bool
	Scan(...any) error
	Err() error
	Close() error
}

// scanClaims reads (task_id, device_id, run_id, seq, due_at, lease_epoch,
// revision) rows.
func scanClaims(rows rowScanner, out []storage.Claim) ([]storage.Claim, error) {
	defer rows.Close()
	for rows.Next() {
		var c storage.Claim
		var due dbTime
		if err := rows.Scan(&c.TaskID, &c.DeviceID, &c.RunID, &c.Seq, &due, &c.Epoch, &c.TaskRevision); err != nil {
			return out, err
		}
		c.DueAt = due.T
		out = append(out, c)
	}
	return out, rows.Err()
}

// DispatchDue implements storage.Claimer. PostgreSQL: one statement picks
// the due rows of tasks that exist and are not suspended FOR UPDATE SKIP
// LOCKED, moves them to the dispatched state under a new lease and epoch,
// and appends their ledger rows; concurrent replicas never wait for each
// other and never take the same row, and a row that another replica
// dispatched between this statement's snapshot and its lock fails the
// re-checked state and is left out. SQLite: the same in one transaction
// under its single write lock.
func (s *Store) DispatchDue(ctx context.Context, p storage.DispatchParams) ([]storage.Claim, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	bad := validLease(p.Owner, p.TTL, p.Limit)
	from, err := stateLiteral("from_state", p.FromState)
	if err != nil {
		bad = append(bad, err.(*errs.ValidationError))
	}
	switch p.State {
	case "":
		bad = append(bad, errs.Invalid("state", "", "must not be empty"))
	case p.FromState:
		// A result dispatched into its dispatchable state stays due and
		// would be dispatched again at the next call.
		bad = append(bad, errs.Invalid("state", p.State, "must differ from from_state"))
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	var out []storage.Claim
	if s.dialect == Postgres {
		if p.FromState != queuedState {
			return nil, errs.Invalid("from_state", p.FromState, "must be "+queuedState+" on PostgreSQL (the state result_queue holds)")
		}
		// The due queue rows of tasks that exist and are not suspended
		// are locked by the CTE and deleted through their ctid (a delete
		// marks the row; it writes no index entry); each becomes a lease
		// row with the new state and seq, a ledger row, and the counters
		// move from scheduled to the new state. The result rows are not
		// written: a lease row overlays its result until the device
		// answers (schema version 11). A queue row deleted by a
		// concurrent writer between this statement's snapshot and its
		// lock is skipped by the lock (SKIP LOCKED) or by the delete.
		rows, err := s.w.QueryContext(ctx, `WITH due AS (
    SELECT q.ctid, t.revision FROM result_queue q
    JOIN tasks t ON t.id = q.task_id AND NOT t.suspended
    WHERE q.due_at <= $1
    ORDER BY q.due_at, q.task_id, q.device_id
    LIMIT $2
    FOR UPDATE OF q SKIP LOCKED),
del AS (
    DELETE FROM result_queue q USING due WHERE q.ctid = due.ctid
    RETURNING q.task_id, q.device_id, q.run_id, q.seq, q.due_at, due.revision),
lease AS (
    INSERT INTO result_leases (task_id, device_id, run_id, base_seq, seq, state, due_at, updated_at, owner, epoch, until)
    SELECT task_id, device_id, run_id, seq, $4, $3, due_at, $5, $6, 1, `+pgLeaseNow(8)+` + $7 * interval '1 microsecond' FROM del),
log AS (
    INSERT INTO dispatch_log (task_id, device_id, run_id, epoch, owner)
    SELECT task_id, device_id, run_id, 1, $6 FROM del),
counted AS (
    INSERT INTO result_deltas (task_id, state, n, restart)
    SELECT g.task_id, v.state, v.n, 0 FROM (SELECT task_id, COUNT(*) AS c FROM del GROUP BY task_id) g,
        LATERAL (VALUES ('`+queuedState+`', -g.c), ($3, g.c)) AS v (state, n))
SELECT task_id, device_id, run_id, $4::bigint, due_at, 1::bigint, revision FROM del`,
			s.tv(p.Before), p.Limit, p.State, p.Seq, s.tv(p.At), p.Owner, p.TTL.Microseconds(), s.leaseNow(p.Now))
		if err != nil {
			return nil, fmt.Errorf("sqlstore: dispatch due: %w", mapErr(err))
		}
		if out, err = scanClaims(rows, out); err != nil {
			return nil, fmt.Errorf("sqlstore: dispatch due: %w", mapErr(err))
		}
		sortClaims(out)
		return out, nil
	}
	// SQLite: look before taking the single write lock (and a commit's
	// fsync) when nothing is due, the common case of a Tick.
	var any int
	switch err := s.r.QueryRowContext(ctx, `SELECT 1 FROM results WHERE state = `+from+` AND due_at <= ? LIMIT 1`, s.tv(p.Before)).Scan(&any); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("sqlstore: dispatch due: %w", mapErr(err))
	}
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE results SET state = ?, seq = ?, updated_at = ?, lease_owner = ?, lease_epoch = lease_epoch + 1,
    lease_until = `+sqliteLeaseNow+` + ?
WHERE (task_id, device_id) IN (SELECT r.task_id, r.device_id FROM results r JOIN tasks t ON t.id = r.task_id AND NOT t.suspended
    WHERE r.state = `+from+` AND r.due_at <= ? ORDER BY r.due_at, r.task_id, r.device_id LIMIT ?)
RETURNING task_id, device_id, run_id, seq, due_at, lease_epoch, 0`,
			p.State, p.Seq, s.tv(p.At), p.Owner, s.leaseNow(p.Now), p.TTL.Microseconds(), s.tv(p.Before), p.Limit)
		if err != nil {
			return err
		}
		if out, err = scanClaims(rows, out[:0]); err != nil {
			return err
		}
		if len(out) == 0 {
			return nil
		}
		if err := s.claimRevisions(ctx, tx, out); err != nil {
			return err
		}
		return s.logDispatchSQLite(ctx, tx, out, p.Owner)
	})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: dispatch due: %w", mapErr(err))
	}
	sortClaims(out)
	return out, nil
}

// claimRevisions sets the TaskRevision of claims (SQLite): one lookup per
// distinct task, not per claim (a dispatch batch is mostly one task's).
func (s *Store) claimRevisions(ctx context.Context, tx *sqlx.Tx, cs []storage.Claim) error {
	rev := map[string]int64{}
	for i := range cs {
		id := cs[i].TaskID
		r, ok := rev[id]
		if !ok {
			if err := tx.QueryRowContext(ctx, `SELECT revision FROM tasks WHERE id = ?`, id).Scan(&r); err != nil {
				return err
			}
			rev[id] = r
		}
		cs[i].TaskRevision = r
	}
	return nil
}

// sqliteLedger returns the multi-row dispatch ledger insert of rows rows
// (the host's clock as the time of every row).
func sqliteLedger(rows int) string {
	one := "(?,?,?,?,?," + sqliteNow + ")"
	return "INSERT INTO dispatch_log (task_id, device_id, run_id, epoch, owner, at) VALUES " + one + strings.Repeat(","+one, rows-1)
}

// logDispatchSQLite appends the ledger rows of cs with the multi-row
// statements prepared at Open.
func (s *Store) logDispatchSQLite(ctx context.Context, tx *sqlx.Tx, cs []storage.Claim, owner string) error {
	args := make([]any, 0, 5*min(len(cs), sqliteChunk))
	for len(cs) > 0 {
		k, rows := chunkOf(len(cs))
		args = args[:0]
		for i := range cs[:rows] {
			c := &cs[i]
			args = append(args, c.TaskID, c.DeviceID, c.RunID, c.Epoch, owner)
		}
		cs = cs[rows:]
		if _, err := tx.StmtContext(ctx, s.ledger[k]).ExecContext(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// ClaimStale implements storage.Claimer: dispatched results no device
// answered whose lease expired on the database's clock are leased to
// p.Owner with a higher epoch.
func (s *Store) ClaimStale(ctx context.Context, p storage.StaleParams) ([]storage.Claim, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	bad := validLease(p.Owner, p.TTL, p.Limit)
	if p.State == "" {
		bad = append(bad, errs.Invalid("state", "", "must not be empty"))
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	// The state is a literal, so the planner uses the partial index of
	// pending results (results_leased) instead of scanning the table at
	// every sweep.
	state, err := stateLiteral("state", p.State)
	if err != nil {
		return nil, err
	}
	var out []storage.Claim
	if s.dialect == Postgres {
		rows, err := s.w.QueryContext(ctx, `WITH stale AS (
    SELECT l.ctid, t.revision FROM result_leases l
    JOIN tasks t ON t.id = l.task_id AND NOT t.suspended
    WHERE l.until < `+pgLeaseNow(5)+` AND l.state = `+state+` AND l.seq = $1
    ORDER BY l.due_at, l.task_id, l.device_id
    LIMIT $2
    FOR UPDATE OF l SKIP LOCKED),
upd AS (
    UPDATE result_leases l SET owner = $3, epoch = l.epoch + 1, until = `+pgLeaseNow(5)+` + $4 * interval '1 microsecond'
    FROM stale WHERE l.ctid = stale.ctid AND l.until < `+pgLeaseNow(5)+`
    RETURNING l.task_id, l.device_id, l.run_id, l.seq, l.due_at, l.epoch, stale.revision)
SELECT task_id, device_id, run_id, seq, due_at, epoch, revision FROM upd`,
			p.Seq, p.Limit, p.Owner, p.TTL.Microseconds(), s.leaseNow(p.Now))
		if err != nil {
			return nil, fmt.Errorf("sqlstore: claim stale: %w", mapErr(err))
		}
		if out, err = scanClaims(rows, out); err != nil {
			return nil, fmt.Errorf("sqlstore: claim stale: %w", mapErr(err))
		}
		sortClaims(out)
		return out, nil
	}
	var any int
	switch err := s.r.QueryRowContext(ctx, `SELECT 1 FROM results WHERE state = `+state+` AND seq = ? AND lease_owner <> '' AND lease_until < `+sqliteLeaseNow+` LIMIT 1`,
		p.Seq, s.leaseNow(p.Now)).Scan(&any); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("sqlstore: claim stale: %w", mapErr(err))
	}
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE results SET lease_owner = ?, lease_epoch = lease_epoch + 1, lease_until = `+sqliteLeaseNow+` + ?
WHERE (task_id, device_id) IN (SELECT r.task_id, r.device_id FROM results r JOIN tasks t ON t.id = r.task_id AND NOT t.suspended
    WHERE r.state = `+state+` AND r.seq = ? AND r.lease_owner <> '' AND r.lease_until < `+sqliteLeaseNow+`
    ORDER BY r.due_at, r.task_id, r.device_id LIMIT ?)
RETURNING task_id, device_id, run_id, seq, due_at, lease_epoch, (SELECT revision FROM tasks WHERE tasks.id = results.task_id)`,
			p.Owner, s.leaseNow(p.Now), p.TTL.Microseconds(), p.Seq, s.leaseNow(p.Now), p.Limit)
		if err != nil {
			return err
		}
		out, err = scanClaims(rows, out[:0])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim stale: %w", mapErr(err))
	}
	sortClaims(out)
	return out, nil
}

func sortClaims(cs []storage.Claim) {
	// RETURNING order is not defined; callers get the claim order.
	slices.SortFunc(cs, func(a, b storage.Claim) int {
		if c := a.DueAt.Compare(b.DueAt); c != 0 {
			return c
		}
		if c := strings.Compare(a.TaskID, b.TaskID); c != 0 {
			return c
		}
		return strings.Compare(a.DeviceID, b.DeviceID)
	})
}

// RenewClaims implements storage.Claimer: one statement (PostgreSQL) or
// one transaction of multi-row statements prepared at Open (SQLite)
// extends every lease p.Owner still holds with the claim's epoch, run,
// state and seq.
func (s *Store) RenewClaims(ctx context.Context, p storage.RenewParams) ([]storage.Claim, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	bad := validLease(p.Owner, p.TTL, 1)
	if p.State == "" {
		bad = append(bad, errs.Invalid("state", "", "must not be empty"))
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	if len(p.Claims) == 0 {
		return nil, nil
	}
	held := make(map[[2]string]bool, len(p.Claims))
	if s.dialect == Postgres {
		n := len(p.Claims)
		tasks, devs := make([]string, n), make([]string, n)
		runs, epochs := make([]int64, n), make([]int64, n)
		for i, c := range p.Claims {
			tasks[i], devs[i], runs[i], epochs[i] = c.TaskID, c.DeviceID, c.RunID, c.Epoch
		}
		// The leases are locked in key order first (lk), as every other
		// statement that waits for lease rows takes them (pgCleanLeases),
		// so a renewal and a writer's clean-up never deadlock. A lease
		// changed by another transaction before the lock is re-checked
		// against its claim by the lock itself; the update then writes
		// the rows held.
		rows, err := s.w.QueryContext(ctx, `WITH c AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS c (task_id, device_id, run_id, epoch)),
lk AS (
    SELECT r.task_id, r.device_id FROM result_leases r
    JOIN c ON r.task_id = c.task_id COLLATE "C" AND r.device_id = c.device_id COLLATE "C"
    WHERE r.run_id = c.run_id AND r.epoch = c.epoch AND r.owner = $6 AND r.state = $7 AND r.seq = $8
    ORDER BY r.task_id, r.device_id
    FOR UPDATE OF r)
UPDATE result_leases r SET until = `+pgLeaseNow(9)+` + $1 * interval '1 microsecond'
FROM lk
WHERE r.task_id = lk.task_id AND r.device_id = lk.device_id
RETURNING r.task_id, r.device_id`,
			// Planned for the real arrays (an unnamed statement): a plan
			// cached for a guessed ten claims can compare every claim with
			// every lease (see pgCustomPlans).
			pgx.QueryExecModeExec, p.TTL.Microseconds(), tasks, devs, runs, epochs, p.Owner, p.State, p.Seq, s.leaseNow(p.Now))
		if err != nil {
			return nil, fmt.Errorf("sqlstore: renew claims: %w", mapErr(err))
		}
		defer rows.Close()
		for rows.Next() {
			var k [2]string
			if err := rows.Scan(&k[0], &k[1]); err != nil {
				return nil, fmt.Errorf("sqlstore: renew claims: %w", mapErr(err))
			}
			held[k] = true
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlstore: renew claims: %w", mapErr(err))
		}
	} else {
		err := s.inTx(ctx, func(tx *sqlx.Tx) error {
			clear(held)
			return s.renewSQLite(ctx, tx, p, held)
		})
		if err != nil {
			return nil, fmt.Errorf("sqlstore: renew claims: %w", mapErr(err))
		}
	}
	out := make([]storage.Claim, 0, len(held))
	for _, c := range p.Claims {
		if held[[2]string{c.TaskID, c.DeviceID}] {
			out = append(out, c)
		}
	}
	return out, nil
}

// sqliteRenew returns the multi-row lease renewal of rows claims: the
// claims are a VALUES list joined to results by primary key; the
// parameters after the claims' are the lease clock, the TTL, the owner,
// the state and the seq.
func sqliteRenew(rows int) string {
	return `WITH c (task_id, device_id, run_id, epoch) AS (VALUES ` + sqliteRows(rows, 4) + `)
UPDATE results SET lease_until = ` + sqliteLeaseNow + ` + ?
FROM c
WHERE results.task_id = c.task_id AND results.device_id = c.device_id AND results.run_id = c.run_id
  AND results.lease_epoch = c.epoch AND results.lease_owner = ? AND results.state = ? AND results.seq = ?
RETURNING results.task_id, results.device_id`
}

// renewSQLite renews p's claims with the multi-row statements prepared at
// Open and marks the (task, device) pairs still held.
func (s *Store) renewSQLite(ctx context.Context, tx *sqlx.Tx, p storage.RenewParams, held map[[2]string]bool) error {
	cs := p.Claims
	args := make([]any, 0, 4*min(len(cs), sqliteChunk)+5)
	for len(cs) > 0 {
		k, rows := chunkOf(len(cs))
		args = args[:0]
		for i := range cs[:rows] {
			c := &cs[i]
			args = append(args, c.TaskID, c.DeviceID, c.RunID, c.Epoch)
		}
		cs = cs[rows:]
		args = append(args, s.leaseNow(p.Now), p.TTL.Microseconds(), p.Owner, p.State, p.Seq)
		r, err := tx.StmtContext(ctx, s.renews[k]).QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		for r.Next() {
			var key [2]string
			if err := r.Scan(&key[0], &key[1]); err != nil {
				r.Close()
				return err
			}
			held[key] = true
		}
		if err := r.Close(); err != nil {
			return err
		}
		if err := r.Err(); err != nil {
			return err
		}
	}
	return nil
}

// AcquireLeader implements storage.Leader with one upsert: the lease is
// taken when free or expired (on p.Now, or the database's clock) and
// renewed when the owner holds it.
func (s *Store) AcquireLeader(ctx context.Context, p storage.LeaderParams) (storage.Leadership, error) {
	if err := s.checkOpen(); err != nil {
		return storage.Leadership{}, err
	}
	var bad errs.ValidationErrors
	if p.Name == "" {
		bad = append(bad, errs.Invalid("name", "", "must not be empty"))
	}
	if p.Owner == "" {
		bad = append(bad, errs.Invalid("owner", "", "must not be empty"))
	}
	if p.TTL <= 0 {
		bad = append(bad, errs.Invalid("ttl", p.TTL.String(), "must be positive"))
	}
	if err := bad.Err(); err != nil {
		return storage.Leadership{}, err
	}
	now, until := "COALESCE(CAST(? AS timestamptz), now())", "COALESCE(CAST(? AS timestamptz), now()) + ? * interval '1 microsecond'"
	if s.dialect == SQLite {
		now, until = sqliteLeaseNow, sqliteLeaseNow+" + ?"
	}
	q := s.w.Rebind(`INSERT INTO leaders (name, owner, epoch, until) VALUES (?, ?, 1, ` + until + `)
ON CONFLICT (name) DO UPDATE SET
    epoch = CASE WHEN leaders.owner = excluded.owner THEN leaders.epoch ELSE leaders.epoch + 1 END,
    owner = excluded.owner, until = excluded.until
WHERE leaders.owner = excluded.owner OR leaders.until < ` + now)
	var l storage.Leadership
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, q, p.Name, p.Owner, s.leaseNow(p.Now), p.TTL.Microseconds(), s.leaseNow(p.Now)); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, tx.Rebind(`SELECT owner, epoch FROM leaders WHERE name = ?`), p.Name).Scan(&l.Owner, &l.Epoch)
	})
	if err != nil {
		return storage.Leadership{}, fmt.Errorf("sqlstore: acquire leader: %w", mapErr(err))
	}
	l.Held = l.Owner == p.Owner
	return l, nil
}
