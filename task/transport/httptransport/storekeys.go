package httptransport

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task/transport"
)

// StoreKeys returns a durable KeyStore on a storage.DeviceKeyStore (the
// SQL store, sqlstore, on SQLite or PostgreSQL: its device_keys table),
// so enrolled devices keep their keys across a server restart and need
// not enroll again. Only the keys' hashes are stored. Writes that arrive
// together (a fleet enrolling, or using its new keys for the first time)
// are written together: one PutDeviceKeys call, one transaction, per
// batch of at most MaxKeyBatch, so a fleet's enrollment is not one commit
// per device. Each PutKey returns when its own write is stored. Records
// are cached (StoreKeysConfig.CacheTTL), so authenticating a request does
// not read the database. Errors of the store keep matching ErrNotFound
// and ErrConflict (the storage sentinels are the same).
func StoreKeys(s storage.DeviceKeyStore, cfg StoreKeysConfig) KeyStore {
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = DefaultKeyCacheTTL
	}
	return &storeKeys{s: s, cfg: cfg, cache: map[transport.DeviceID]cachedKey{}}
}

// StoreKeysConfig configures StoreKeys; the zero value is the default.
type StoreKeysConfig struct {
	// Clock dates the cached records (default: the wall clock).
	Clock clock.Clock
	// CacheTTL is how long a record read from or written to the store is
	// used without reading it again (DefaultKeyCacheTTL; negative: no
	// cache, every authentication reads the store). This server's own
	// changes (enrollment, rotation, revocation, reset) take effect at
	// once; those of another server process sharing the database within
	// CacheTTL.
	CacheTTL time.Duration
}

// DefaultKeyCacheTTL is StoreKeysConfig.CacheTTL's default: longer than
// the check-in interval of agents that do not hold a poll (a minute in the
// load test), so a check-in does not read the database, and short enough
// for another server process to see a revocation within minutes.
const DefaultKeyCacheTTL = 5 * time.Minute

// MaxKeyBatch bounds the key writes StoreKeys stores in one transaction.
const MaxKeyBatch = 1000

type storeKeys struct {
	s       storage.DeviceKeyStore
	cfg     StoreKeysConfig
	mu      sync.Mutex
	queue   []*keyWrite
	writing bool

	cmu   sync.RWMutex
	cache map[transport.DeviceID]cachedKey
	gen   uint64 // counts the writes that changed the cache
}

type cachedKey struct {
	r  KeyRecord
	at time.Time
}

type keyWrite struct {
	p    storage.PutDeviceKeyParams
	err  error
	done chan struct{}
}

func (k *storeKeys) Key(ctx context.Context, device transport.DeviceID) (KeyRecord, error) {
	if k.cfg.CacheTTL > 0 {
		k.cmu.RLock()
		c, ok := k.cache[device]
		k.cmu.RUnlock()
		if ok && k.cfg.Clock.Since(c.at) < k.cfg.CacheTTL {
			return c.r, nil
		}
	}
	k.cmu.RLock()
	gen := k.gen
	k.cmu.RUnlock()
	r, err := k.s.DeviceKey(ctx, string(device))
	if err != nil {
		return KeyRecord{}, err
	}
	rec := KeyRecord{Device: transport.DeviceID(r.DeviceID), Hash: r.Hash, Prev: r.Prev, Created: r.Created, Expires: r.Expires, Revoked: r.Revoked, Used: r.Used}
	if k.cfg.CacheTTL > 0 {
		k.cmu.Lock()
		if k.gen == gen {
			// No write of this process ended during the read, so the
			// record read is not older than one it wrote (a revocation
			// is never hidden by a read that overtook it).
			k.cache[device] = cachedKey{r: rec, at: k.cfg.Clock.Now()}
		}
		k.cmu.Unlock()
	}
	return rec, nil
}

// remember caches r, just written, as device's record (nil: forget it).
func (k *storeKeys) remember(device transport.DeviceID, r *KeyRecord) {
	if k.cfg.CacheTTL <= 0 {
		return
	}
	k.cmu.Lock()
	defer k.cmu.Unlock()
	k.gen++
	if r == nil {
		delete(k.cache, device)
		return
	}
	k.cache[device] = cachedKey{r: *r, at: k.cfg.Clock.Now()}
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
	switch {
	case w.err == nil:
		k.remember(r.Device, &r)
	case errors.Is(w.err, ErrConflict):
		k.remember(r.Device, nil) // changed by someone else: read it again
	}
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

func (k *storeKeys) DeleteKey(ctx context.Context, device transport.DeviceID) error {
	err := k.s.DeleteDeviceKey(ctx, string(device))
	k.remember(device, nil)
	return err
}
