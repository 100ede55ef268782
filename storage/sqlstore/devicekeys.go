package sqlstore

import (
	"context"
	"crypto/sha256"
	"fmt"

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
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := storage.ValidateDeviceKey(p.Key); err != nil {
		return fmt.Errorf("sqlstore: put device key: %w", err)
	}
	k := p.Key
	args := []any{k.Hash[:], k.Prev[:], s.tv(k.Created), s.tv(k.Expires), k.Revoked, k.Used, k.DeviceID}
	q := `UPDATE device_keys SET hash = ?, prev = ?, created_at = ?, expires_at = ?, revoked = ?, used = ? WHERE device_id = ? AND hash = ?`
	if p.Expect == [sha256.Size]byte{} {
		q = `INSERT INTO device_keys (hash, prev, created_at, expires_at, revoked, used, device_id) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO NOTHING`
	} else {
		args = append(args, p.Expect[:])
	}
	res, err := s.w.ExecContext(ctx, s.w.Rebind(q), args...)
	if err != nil {
		return fmt.Errorf("sqlstore: put key of device %q: %w", clip(k.DeviceID), mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlstore: put key of device %q: %w", clip(k.DeviceID), mapErr(err))
	}
	if n == 0 {
		return fmt.Errorf("sqlstore: key of device %q changed: %w", clip(k.DeviceID), storage.ErrConflict)
	}
	return nil
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
