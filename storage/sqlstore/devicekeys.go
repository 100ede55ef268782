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
