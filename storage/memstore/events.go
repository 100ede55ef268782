package memstore

import (
	"hash/maphash"
	"sort"

	"github.com/taskfleet/taskfleet/storage"
)

// eventChunk is how many events one array of a task's history holds. A
// fleet-wide task gathers millions of events: appending to one slice
// copied the whole history at every growth (most of the store's
// allocation in the fleet simulation); a chunked list adds arrays.
const eventChunk = 1024

// eventList is a task's events in ascending ID: chunks of eventChunk
// events, all full but the last (which grows like a slice, so a short
// history stays small).
type eventList struct {
	chunks [][]storage.EventRecord
	n      int
}

func (l *eventList) len() int { return l.n }

func (l *eventList) at(i int) *storage.EventRecord {
	return &l.chunks[i/eventChunk][i%eventChunk]
}

func (l *eventList) append(e storage.EventRecord) {
	if k := len(l.chunks); k == 0 || len(l.chunks[k-1]) == eventChunk {
		c := []storage.EventRecord(nil)
		if k > 0 {
			c = make([]storage.EventRecord, 0, eventChunk)
		}
		l.chunks = append(l.chunks, c)
	}
	last := &l.chunks[len(l.chunks)-1]
	*last = append(*last, e)
	l.n++
}

// search returns the index of the first event with an ID of at least id.
func (l *eventList) search(id int64) int {
	return sort.Search(l.n, func(i int) bool { return l.at(i).ID >= id })
}

// filter keeps the events for which keep is true, in order, and returns
// how many it removed.
func (l *eventList) filter(keep func(*storage.EventRecord) bool) int {
	w := 0
	for i := range l.n {
		e := l.at(i)
		if !keep(e) {
			continue
		}
		if w != i {
			*l.at(w) = *e
		}
		w++
	}
	removed := l.n - w
	// Clear the tail (releasing its strings) and drop emptied chunks.
	for i := w; i < l.n; i++ {
		*l.at(i) = storage.EventRecord{}
	}
	full := (w + eventChunk - 1) / eventChunk
	clear(l.chunks[full:])
	l.chunks = l.chunks[:full]
	if full > 0 {
		last := &l.chunks[full-1]
		*last = (*last)[:w-(full-1)*eventChunk]
	}
	l.n = w
	return removed
}

// eventKeys is the set of a task's event keys (EventRecord.Key), which
// de-duplicate at-least-once deliveries, kept without a string-keyed map:
// a fleet-wide task gathers millions of keys, and a map of strings costs
// a probe through each key's bytes and a pointer per key for the garbage
// collector to follow. Instead:
//
//   - byHash maps the 64-bit hash of a key to the ID of the event that
//     carries it (pointer-free; the event's Key confirms a match), or to 0
//     when that event was purged: a purged event's key stays reserved in
//     purged.
//   - collided holds the keys whose hash an earlier, different key had
//     taken (with 64-bit hashes, in practice none).
type eventKeys struct {
	byHash   map[uint64]int64
	purged   map[string]struct{}
	collided map[string]struct{}
}

// add reserves key for the event with ID id, the next to be appended to
// l, and reports whether it was new (false: a duplicate, nothing
// changed).
func (k *eventKeys) add(l *eventList, key string, id int64) bool {
	if _, dup := k.collided[key]; dup {
		return false
	}
	h := maphash.String(hashSeed, key)
	if k.byHash == nil {
		k.byHash = map[uint64]int64{}
	}
	owner, taken := k.byHash[h]
	if !taken {
		k.byHash[h] = id
		return true
	}
	if owner == 0 {
		if _, dup := k.purged[key]; dup {
			return false
		}
	} else if i := l.search(owner); i < l.len() && l.at(i).ID == owner && l.at(i).Key == key {
		return false
	}
	if k.collided == nil {
		k.collided = map[string]struct{}{}
	}
	k.collided[key] = struct{}{}
	return true
}

// purge keeps the key of a purged event reserved.
func (k *eventKeys) purge(e *storage.EventRecord) {
	if e.Key == "" {
		return
	}
	h := maphash.String(hashSeed, e.Key)
	if k.byHash[h] != e.ID {
		return // a collided key: it stays in collided
	}
	k.byHash[h] = 0
	if k.purged == nil {
		k.purged = map[string]struct{}{}
	}
	k.purged[e.Key] = struct{}{}
}
