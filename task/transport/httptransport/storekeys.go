package httptransport

import (
	"context"
	"sync"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
)

// StoreKeys returns a durable KeyStore on a storage.DeviceKeyStore (the
// SQL store, sqlstore, on SQLite or PostgreSQL: its device_keys table),
// so enrolled devices keep their keys across a server restart and need
// not enroll again. Only the keys' hashes are stored. Writes that arrive
// together (a fleet enrolling, or using its new keys for the first time)
// are written together: one PutDeviceKeys call, one transaction, per
// batch of at most MaxKeyBatch, so a fleet's enrollment is not one commit
// per device. Each PutKey returns when its own write is stored. Errors
// of the store keep matching ErrNotFound and ErrConflict (the storage
// sentinels are the same).
func StoreKeys(s storage.DeviceKeyStore) KeyStore { return &storeKeys{s: s} }

// MaxKeyBatch bounds the key writes StoreKeys stores in one transaction.
const MaxKeyBatch = 1000

type storeKeys struct {
	s       storage.DeviceKeyStore
	mu      sync.Mutex
	queue   []*keyWrite
	writing bool
}

type keyWrite struct {
	p    storage.PutDeviceKeyParams
	err  error
	done chan struct{}
}

func (k *storeKeys) Key(ctx context.Context, device scope.DeviceID) (KeyRecord, error) {
	r, err := k.s.DeviceKey(ctx, string(device))
	if err != nil {
		return KeyRecord{}, err
	}
	return KeyRecord{Device: scope.DeviceID(r.DeviceID), Hash: r.Hash, Prev: r.Prev, Created: r.Created, Expires: r.Expires, Revoked: r.Revoked, Used: r.Used}, nil
}

// PutKey queues the write. A writer that finds no batch in flight
// writes the queue (its own write first, and whatever queued meanwhile,
// up to MaxKeyBatch) and answers; what queued during that batch is
// written by a goroutine of its own, and so on until the queue is empty.
func (k *storeKeys) PutKey(ctx context.Context, p PutKeyParams) error {
	r := p.Record
	w := &keyWrite{done: make(chan struct{}), p: storage.PutDeviceKeyParams{Expect: p.Expect,
		Key: storage.DeviceKey{DeviceID: string(r.Device), Hash: r.Hash, Prev: r.Prev, Created: r.Created, Expires: r.Expires, Revoked: r.Revoked, Used: r.Used}}}
	k.mu.Lock()
	k.queue = append(k.queue, w) // with no batch in flight the queue was empty
	lead := !k.writing
	k.writing = true
	k.mu.Unlock()
	if lead {
		// The batch is everyone's: it does not end with this request.
		wctx := context.WithoutCancel(ctx)
		k.writeBatch(wctx)
		k.mu.Lock()
		if len(k.queue) > 0 {
			go k.drain(wctx)
		} else {
			k.writing = false
		}
		k.mu.Unlock()
	}
	<-w.done
	return w.err
}

// writeBatch writes up to MaxKeyBatch queued writes in one call and
// answers them.
func (k *storeKeys) writeBatch(ctx context.Context) {
	k.mu.Lock()
	n := min(len(k.queue), MaxKeyBatch)
	batch := k.queue[:n:n]
	k.queue = k.queue[n:]
	k.mu.Unlock()
	ps := make([]storage.PutDeviceKeyParams, len(batch))
	for i, b := range batch {
		ps[i] = b.p
	}
	errs, err := k.s.PutDeviceKeys(ctx, ps)
	for i, b := range batch {
		b.err = err
		if err == nil {
			b.err = errs[i]
		}
		close(b.done)
	}
}

// drain writes batches until the queue is empty.
func (k *storeKeys) drain(ctx context.Context) {
	for {
		k.writeBatch(ctx)
		k.mu.Lock()
		if len(k.queue) == 0 {
			k.writing = false
			k.mu.Unlock()
			return
		}
		k.mu.Unlock()
	}
}

func (k *storeKeys) DeleteKey(ctx context.Context, device scope.DeviceID) error {
	return k.s.DeleteDeviceKey(ctx, string(device))
}
