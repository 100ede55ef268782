package httptransport

import (
	"context"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
)

// StoreKeys returns a durable KeyStore on a storage.DeviceKeyStore (the
// SQL store, sqlstore, on SQLite or PostgreSQL: its device_keys table),
// so enrolled devices keep their keys across a server restart and need
// not enroll again. Only the keys' hashes are stored. Errors of the store
// keep matching ErrNotFound and ErrConflict (the storage sentinels are
// the same).
func StoreKeys(s storage.DeviceKeyStore) KeyStore { return storeKeys{s} }

type storeKeys struct{ s storage.DeviceKeyStore }

func (k storeKeys) Key(ctx context.Context, device scope.DeviceID) (KeyRecord, error) {
	r, err := k.s.DeviceKey(ctx, string(device))
	if err != nil {
		return KeyRecord{}, err
	}
	return KeyRecord{Device: scope.DeviceID(r.DeviceID), Hash: r.Hash, Prev: r.Prev, Created: r.Created, Expires: r.Expires, Revoked: r.Revoked, Used: r.Used}, nil
}

func (k storeKeys) PutKey(ctx context.Context, p PutKeyParams) error {
	r := p.Record
	return k.s.PutDeviceKey(ctx, storage.PutDeviceKeyParams{Expect: p.Expect,
		Key: storage.DeviceKey{DeviceID: string(r.Device), Hash: r.Hash, Prev: r.Prev, Created: r.Created, Expires: r.Expires, Revoked: r.Revoked, Used: r.Used}})
}

func (k storeKeys) DeleteKey(ctx context.Context, device scope.DeviceID) error {
	return k.s.DeleteDeviceKey(ctx, string(device))
}
