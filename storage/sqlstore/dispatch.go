package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/storage"
)

var (
	_ storage.Claimer = (*Store)(nil)
	_ storage.Leader  = (*Store)(nil)
)

// sqliteNow is the SQLite host's clock in microseconds since the Unix
// epoch (SQLite has no server; all its writers share one host).
const sqliteNow = `CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)`

func validClaim(p storage.ClaimParams) error {
	var bad errs.ValidationErrors
	if p.Owner == "" {
		bad = append(bad, errs.Invalid("owner", "", "must not be empty"))
	}
	if p.State == "" {
		bad = append(bad, errs.Invalid("state", "", "must not be empty"))
	}
	if p.TTL <= 0 {
		bad = append(bad, errs.Invalid("ttl", p.TTL.String(), "must be positive"))
	}
	if p.Limit <= 0 || p.Limit > storage.MaxListLimit {
		bad = append(bad, errs.Invalid("limit", fmt.Sprint(p.Limit), fmt.Sprintf("must be 1..%d", storage.MaxListLimit)))
	}
	return bad.Err()
}

// ClaimDue implements storage.Claimer. PostgreSQL: one statement that
// selects due rows FOR UPDATE SKIP LOCKED (concurrent claimers never wait
// for each other and never take the same row) and leases them until the
// database's now() + TTL. SQLite: the same under its single write lock.
func (s *Store) ClaimDue(ctx context.Context, p storage.ClaimParams) ([]storage.Claim, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := validClaim(p); err != nil {
		return nil, err
	}
	var out []storage.Claim
	scan := func(rows interface {
		Next() bool
		Scan(...any) error
		Err() error
		Close() error
	}) error {
		defer rows.Close()
		for rows.Next() {
			var c storage.Claim
			var due dbTime
			if err := rows.Scan(&c.TaskID, &c.DeviceID, &c.RunID, &c.Seq, &due, &c.Epoch); err != nil {
				return err
			}
			c.DueAt = due.T
			out = append(out, c)
		}
		return rows.Err()
	}
	if s.dialect == Postgres {
		rows, err := s.w.QueryContext(ctx, `WITH due AS (
    SELECT task_id, device_id FROM results
    WHERE state = $1 AND due_at <= $2 AND lease_until < now()
    ORDER BY due_at, task_id, device_id
    LIMIT $3
    FOR UPDATE SKIP LOCKED)
UPDATE results r SET lease_owner = $4, lease_epoch = r.lease_epoch + 1, lease_until = now() + $5 * interval '1 microsecond'
FROM due WHERE r.task_id = due.task_id AND r.device_id = due.device_id
RETURNING r.task_id, r.device_id, r.run_id, r.seq, r.due_at, r.lease_epoch`,
			p.State, s.tv(p.Before), p.Limit, p.Owner, p.TTL.Microseconds())
		if err != nil {
			return nil, fmt.Errorf("sqlstore: claim due: %w", mapErr(err))
		}
		if err := scan(rows); err != nil {
			return nil, fmt.Errorf("sqlstore: claim due: %w", mapErr(err))
		}
		sortClaims(out)
		return out, nil
	}
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, `UPDATE results SET lease_owner = ?, lease_epoch = lease_epoch + 1, lease_until = `+sqliteNow+` + ?
WHERE (task_id, device_id) IN (SELECT task_id, device_id FROM results WHERE state = ? AND due_at <= ? AND lease_until < `+sqliteNow+`
    ORDER BY due_at, task_id, device_id LIMIT ?)
RETURNING task_id, device_id, run_id, seq, due_at, lease_epoch`,
			p.Owner, p.TTL.Microseconds(), p.State, s.tv(p.Before), p.Limit)
		if err != nil {
			return err
		}
		return scan(rows)
	})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim due: %w", mapErr(err))
	}
	sortClaims(out)
	return out, nil
}

func sortClaims(cs []storage.Claim) {
	// RETURNING order is not defined; callers get the claim order.
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && claimLess(cs[j], cs[j-1]); j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}

func claimLess(a, b storage.Claim) bool {
	if !a.DueAt.Equal(b.DueAt) {
		return a.DueAt.Before(b.DueAt)
	}
	if a.TaskID != b.TaskID {
		return a.TaskID < b.TaskID
	}
	return a.DeviceID < b.DeviceID
}

// CompleteClaims implements storage.Claimer: one transaction that moves
// every result still carrying its claim (owner, epoch, run, state) to the
// new state, releases its lease and appends a dispatch_log row; claims
// fenced by a newer epoch change nothing.
func (s *Store) CompleteClaims(ctx context.Context, p storage.CompleteParams) ([]storage.Claim, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	var bad errs.ValidationErrors
	if p.Owner == "" {
		bad = append(bad, errs.Invalid("owner", "", "must not be empty"))
	}
	if p.State == "" || p.FromState == "" {
		bad = append(bad, errs.Invalid("state", p.State, "state and from_state must not be empty"))
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	if len(p.Claims) == 0 {
		return nil, nil
	}
	n := len(p.Claims)
	tasks, devs := make([]string, n), make([]string, n)
	runs, epochs := make([]int64, n), make([]int64, n)
	for i, c := range p.Claims {
		tasks[i], devs[i], runs[i], epochs[i] = c.TaskID, c.DeviceID, c.RunID, c.Epoch
	}
	done := map[[2]string]bool{}
	if s.dialect == Postgres {
		rows, err := s.w.QueryContext(ctx, `WITH c AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS c(task_id, device_id, run_id, epoch)),
upd AS (
    UPDATE results r SET state = $5, seq = $6, updated_at = $7, lease_owner = '', lease_until = '0001-01-01 00:00:00+00'
    FROM c
    WHERE r.task_id = c.task_id COLLATE "C" AND r.device_id = c.device_id COLLATE "C" AND r.run_id = c.run_id
      AND r.lease_epoch = c.epoch AND r.lease_owner = $8 AND r.state = $9
    RETURNING r.task_id, r.device_id, r.run_id, r.lease_epoch),
log AS (
    INSERT INTO dispatch_log (task_id, device_id, run_id, epoch, owner)
    SELECT task_id, device_id, run_id, lease_epoch, $8 FROM upd)
SELECT task_id, device_id FROM upd`,
			tasks, devs, runs, epochs, p.State, p.Seq, s.tv(p.At), p.Owner, p.FromState)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: complete claims: %w", mapErr(err))
		}
		defer rows.Close()
		for rows.Next() {
			var k [2]string
			if err := rows.Scan(&k[0], &k[1]); err != nil {
				return nil, fmt.Errorf("sqlstore: complete claims: %w", mapErr(err))
			}
			done[k] = true
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlstore: complete claims: %w", mapErr(err))
		}
	} else {
		err := s.inTx(ctx, func(tx *sqlx.Tx) error {
			clear(done)
			for _, c := range p.Claims {
				res, err := tx.ExecContext(ctx, `UPDATE results SET state = ?, seq = ?, updated_at = ?, lease_owner = '', lease_until = 0
WHERE task_id = ? AND device_id = ? AND run_id = ? AND lease_epoch = ? AND lease_owner = ? AND state = ?`,
					p.State, p.Seq, s.tv(p.At), c.TaskID, c.DeviceID, c.RunID, c.Epoch, p.Owner, p.FromState)
				if err != nil {
					return err
				}
				if k, err := res.RowsAffected(); err != nil || k == 0 {
					if err != nil {
						return err
					}
					continue
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO dispatch_log (task_id, device_id, run_id, epoch, owner, at) VALUES (?, ?, ?, ?, ?, `+sqliteNow+`)`,
					c.TaskID, c.DeviceID, c.RunID, c.Epoch, p.Owner); err != nil {
					return err
				}
				done[[2]string{c.TaskID, c.DeviceID}] = true
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("sqlstore: complete claims: %w", mapErr(err))
		}
	}
	out := make([]storage.Claim, 0, len(done))
	for _, c := range p.Claims {
		if done[[2]string{c.TaskID, c.DeviceID}] {
			out = append(out, c)
		}
	}
	return out, nil
}

// ReleaseClaims implements storage.Claimer.
func (s *Store) ReleaseClaims(ctx context.Context, owner string, claims []storage.Claim) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	zero := s.tv(time.Time{})
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		for _, c := range claims {
			if _, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE results SET lease_owner = '', lease_until = ? WHERE task_id = ? AND device_id = ? AND lease_epoch = ? AND lease_owner = ?`),
				zero, c.TaskID, c.DeviceID, c.Epoch, owner); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlstore: release claims: %w", err)
	}
	return nil
}

// AcquireLeader implements storage.Leader with one upsert: the lease is
// taken when free or expired (on the database's clock) and renewed when
// the owner holds it.
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
	now, until := "now()", "now() + ? * interval '1 microsecond'"
	if s.dialect == SQLite {
		now, until = sqliteNow, sqliteNow+" + ?"
	}
	q := s.w.Rebind(`INSERT INTO leaders (name, owner, epoch, until) VALUES (?, ?, 1, ` + until + `)
ON CONFLICT (name) DO UPDATE SET
    epoch = CASE WHEN leaders.owner = excluded.owner THEN leaders.epoch ELSE leaders.epoch + 1 END,
    owner = excluded.owner, until = excluded.until
WHERE leaders.owner = excluded.owner OR leaders.until < ` + now)
	var l storage.Leadership
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, q, p.Name, p.Owner, p.TTL.Microseconds()); err != nil {
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
