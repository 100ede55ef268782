package sqlstore

import (
	"context"
	"crypto/sha256"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/taskfleet/taskfleet/storage"
)

var _ storage.DeviceKeyStore = (*Store)(nil)

// DeviceKey implements storage.DeviceKeyStore.
func (s *Store) DeviceKey(ctx context.Context, deviceID string) (storage.DeviceKey, error) {
	if err := s.checkOpen(); err != nil {
		return storage.DeviceKey{}, err
	}
	var k storage.DeviceKey
	var hash, prev []byte
	var created, expires dbTime
	err := s.r.QueryRowContext(ctx, s.r.Rebind(`SELECT device_id, hash, prev, created_at, expires_at, revoked, used FROM device_keys WHERE device_id = ?`), deviceID).
		Scan(&k.DeviceID, &hash, &prev, &created, &expires, &k.Revoked, &k.Used)
	if err != nil {
		return storage.DeviceKey{}, fmt.Errorf("sqlstore: key of device %q: %w", clip(deviceID), mapErr(err))
	}
	if len(hash) != sha256.Size || len(prev) != sha256.Size {
		return storage.DeviceKey{}, fmt.Errorf("sqlstore: key of device %q: stored hashes of %d and %d bytes: %w", clip(deviceID), len(hash), len(prev), storage.ErrInvalid)
	}
	copy(k.Hash[:], hash)
	copy(k.Prev[:], prev)
	k.Created, k.Expires = created.T, expires.T
	return k, nil
}

// PutDeviceKey implements storage.DeviceKeyStore: an insert that does
// nothing when the device has a key (zero Expect), or an update of the
// row whose hash is Expect; no row changed is ErrConflict.
func (s *Store) PutDeviceKey(ctx context.Context, p storage.PutDeviceKeyParams) error {
	errs, err := s.PutDeviceKeys(ctx, []storage.PutDeviceKeyParams{p})
	if err != nil {
		return err
	}
	return errs[0]
}

// PutDeviceKeys implements storage.DeviceKeyStore: PutDeviceKey's
// statements for every item, in one transaction (one commit, one fsync,
// for a batch of enrollments).
func (s *Store) PutDeviceKeys(ctx context.Context, ps []storage.PutDeviceKeyParams) ([]error, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	out := make([]error, len(ps))
	valid := 0
	for i, p := range ps {
		if err := storage.ValidateDeviceKey(p.Key); err != nil {
			out[i] = fmt.Errorf("sqlstore: put device key: %w", err)
		} else {
			valid++
		}
	}
	if valid == 0 {
		return out, nil
	}
	if s.dialect == Postgres && distinctDevices(ps, out) {
		return s.pgPutDeviceKeys(ctx, ps, out)
	}
	update := s.w.Rebind(`UPDATE device_keys SET hash = ?, prev = ?, created_at = ?, expires_at = ?, revoked = ?, used = ? WHERE device_id = ? AND hash = ?`)
	insert := s.w.Rebind(`INSERT INTO device_keys (hash, prev, created_at, expires_at, revoked, used, device_id) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO NOTHING`)
	conflicts := make([]bool, len(ps))
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		clear(conflicts)
		for i, p := range ps {
			if out[i] != nil {
				continue
			}
			k := p.Key
			args := []any{k.Hash[:], k.Prev[:], s.tv(k.Created), s.tv(k.Expires), k.Revoked, k.Used, k.DeviceID}
			q := update
			if p.Expect == [sha256.Size]byte{} {
				q = insert
			} else {
				args = append(args, p.Expect[:])
			}
			res, err := tx.ExecContext(ctx, q, args...)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			conflicts[i] = n == 0
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: put device keys: %w", mapErr(err))
	}
	for i, c := range conflicts {
		if c {
			out[i] = fmt.Errorf("sqlstore: key of device %q changed: %w", clip(ps[i].Key.DeviceID), storage.ErrConflict)
		}
	}
	return out, nil
}

// distinctDevices reports whether the valid items (out[i] == nil) name
// each device once, so one set-based statement per kind gives the same
// result as applying them in order.
func distinctDevices(ps []storage.PutDeviceKeyParams, out []error) bool {
	seen := make(map[string]bool, len(ps))
	for i, p := range ps {
		if out[i] != nil {
			continue
		}
		if seen[p.Key.DeviceID] {
			return false
		}
		seen[p.Key.DeviceID] = true
	}
	return true
}

// pgPutDeviceKeys is PutDeviceKeys on PostgreSQL for a batch of distinct
// devices: the new keys in one INSERT ... ON CONFLICT DO NOTHING and the
// replacements in one UPDATE, each over unnest'ed array parameters (one
// round trip each, not one per key), in one transaction; the devices
// they did not return are the conflicts.
func (s *Store) pgPutDeviceKeys(ctx context.Context, ps []storage.PutDeviceKeyParams, out []error) ([]error, error) {
	type cols struct {
		ids              []string
		hash, prev, exp  [][]byte
		created, expires []int64
		revoked, used    []bool
	}
	var ins, upd cols
	for i, p := range ps {
		if out[i] != nil {
			continue
		}
		c := &ins
		if p.Expect != [sha256.Size]byte{} {
			c = &upd
			c.exp = append(c.exp, p.Expect[:])
		}
		k := p.Key
		c.ids = append(c.ids, k.DeviceID)
		c.hash, c.prev = append(c.hash, k.Hash[:]), append(c.prev, k.Prev[:])
		c.created, c.expires = append(c.created, microsOf(k.Created)), append(c.expires, microsOf(k.Expires))
		c.revoked, c.used = append(c.revoked, k.Revoked), append(c.used, k.Used)
	}
	const arrays = `unnest($1::text[], $2::bytea[], $3::bytea[], $4::bigint[], $5::bigint[], $6::bool[], $7::bool[]`
	done := map[string]bool{}
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		clear(done)
		run := func(q string, c *cols, extra ...any) error {
			if len(c.ids) == 0 {
				return nil
			}
			args := append([]any{c.ids, c.hash, c.prev, c.created, c.expires, c.revoked, c.used}, extra...)
			rows, err := tx.QueryContext(ctx, q, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					return err
				}
				done[id] = true
			}
			return rows.Err()
		}
		if err := run(`INSERT INTO device_keys (device_id, hash, prev, created_at, expires_at, revoked, used)
 SELECT u.device_id, u.hash, u.prev, `+pgMicros("u.created")+`, `+pgMicros("u.expires")+`, u.revoked, u.used
 FROM `+arrays+`) AS u (device_id, hash, prev, created, expires, revoked, used)
 ON CONFLICT (device_id) DO NOTHING RETURNING device_id`, &ins); err != nil {
			return err
		}
		return run(`UPDATE device_keys d SET hash = u.hash, prev = u.prev, created_at = `+pgMicros("u.created")+`, expires_at = `+pgMicros("u.expires")+`,
 revoked = u.revoked, used = u.used
 FROM `+arrays+`, $8::bytea[]) AS u (device_id, hash, prev, created, expires, revoked, used, expect)
 WHERE d.device_id = u.device_id AND d.hash = u.expect RETURNING d.device_id`, &upd, upd.exp)
	})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: put device keys: %w", mapErr(err))
	}
	for i, p := range ps {
		if out[i] == nil && !done[p.Key.DeviceID] {
			out[i] = fmt.Errorf("sqlstore: key of device %q changed: %w", clip(p.Key.DeviceID), storage.ErrConflict)
		}
	}
	return out, nil
}

// DeleteDeviceKey implements storage.DeviceKeyStore.
func (s *Store) DeleteDeviceKey(ctx context.Context, deviceID string) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, s.w.Rebind(`DELETE FROM device_keys WHERE device_id = ?`), deviceID); err != nil {
		return fmt.Errorf("sqlstore: delete key of device %q: %w", clip(deviceID), mapErr(err))
	}
	return nil
}

// clip keeps a caller's id short in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
