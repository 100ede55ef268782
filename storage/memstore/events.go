package memstore

import (
	"hash/maphash"
	"sort"
	"time"

	"github.com/taskfleet/taskfleet/storage"
)

// eventChunk is how many events one array of a task's history holds. A
// fleet-wide task gathers millions of events: appending to one slice
// copied the whole history at every growth (most of the store's
// allocation in the fleet simulation); a chunked list adds arrays.
const eventChunk = 1024

// textChunk is the size of one array of a task's event texts.
const textChunk = 1 << 20

// storedEvent is an event as a task's history keeps it: 80 bytes with two
// pointers instead of storage.EventRecord's 136 with seven and two
// strings of its own. The task id is the list's; the level, severity,
// message and key are bytes in the list's text arrays (texts), which hold
// no pointers, so the garbage collector neither follows nor marks
// millions of small strings. The device id is the caller's string (shared
// with the device's result row).
type storedEvent struct {
	ID       int64
	RunID    int64
	At       time.Time
	DeviceID string
	// text locates the level, severity, message and key, one after the
	// other, in texts[chunk][off:]; n holds their lengths.
	chunk, off uint32
	n          [4]uint32
}

// eventList is a task's events in ascending ID: chunks of eventChunk
// events, all full but the last (which grows like a slice, so a short
// history stays small), and their texts.
type eventList struct {
	chunks [][]storedEvent
	n      int
	texts  [][]byte
}

func (l *eventList) len() int { return l.n }

func (l *eventList) at(i int) *storedEvent {
	return &l.chunks[i/eventChunk][i%eventChunk]
}

// text returns the j-th text of e (0 level, 1 severity, 2 message, 3 key)
// without copying it: the caller must not keep or change it.
func (l *eventList) text(e *storedEvent, j int) []byte {
	off := e.off
	for _, n := range e.n[:j] {
		off += n
	}
	return l.texts[e.chunk][off : off+e.n[j]]
}

// key returns e's key as bytes of the arena (see text).
func (l *eventList) key(e *storedEvent) []byte { return l.text(e, 3) }

// record returns the event as stored (its texts in one new string).
func (l *eventList) record(taskID string, e *storedEvent) storage.EventRecord {
	lv, sv, ms := e.n[0], e.n[0]+e.n[1], e.n[0]+e.n[1]+e.n[2]
	all := string(l.texts[e.chunk][e.off : e.off+ms+e.n[3]])
	return storage.EventRecord{ID: e.ID, TaskID: taskID, DeviceID: e.DeviceID, RunID: e.RunID, At: e.At,
		Level: all[:lv], Severity: all[lv:sv], Message: all[sv:ms], Key: all[ms:]}
}

// room returns the index of an array of texts with room for size more bytes,
// adding one (4 KiB, doubling with each array up to textChunk, so a short
// history stays small; larger for a larger text).
func room(texts *[][]byte, size int) int {
	k := len(*texts) - 1
	if k < 0 || len((*texts)[k])+size > cap((*texts)[k]) {
		*texts = append(*texts, make([]byte, 0, max(size, min(textChunk, 4096<<min(k+1, 8)))))
		k++
	}
	return k
}

// addText copies an event's texts into the arena and returns where.
func (l *eventList) addText(level, severity, message, key string) (chunk, off uint32) {
	k := room(&l.texts, len(level)+len(severity)+len(message)+len(key))
	t := l.texts[k]
	off = uint32(len(t))
	l.texts[k] = append(append(append(append(t, level...), severity...), message...), key...)
	return uint32(k), off
}

func (l *eventList) append(e storage.EventRecord) {
	if k := len(l.chunks); k == 0 || len(l.chunks[k-1]) == eventChunk {
		c := []storedEvent(nil)
		if k > 0 {
			c = make([]storedEvent, 0, eventChunk)
		}
		l.chunks = append(l.chunks, c)
	}
	chunk, off := l.addText(e.Level, e.Severity, e.Message, e.Key)
	last := &l.chunks[len(l.chunks)-1]
	*last = append(*last, storedEvent{ID: e.ID, RunID: e.RunID, At: e.At, DeviceID: e.DeviceID, chunk: chunk, off: off,
		n: [4]uint32{uint32(len(e.Level)), uint32(len(e.Severity)), uint32(len(e.Message)), uint32(len(e.Key))}})
	l.n++
}

// search returns the index of the first event with an ID of at least id.
func (l *eventList) search(id int64) int {
	return sort.Search(l.n, func(i int) bool { return l.at(i).ID >= id })
}

// filter keeps the events for which keep is true, in order, and returns
// how many it removed. When it removed any, the texts of the kept events
// are copied into new arrays (the removed ones' are released).
func (l *eventList) filter(keep func(*storedEvent) bool) int {
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
	if removed == 0 {
		return 0
	}
	// Clear the tail (releasing its device ids) and drop emptied chunks.
	for i := w; i < l.n; i++ {
		*l.at(i) = storedEvent{}
	}
	full := (w + eventChunk - 1) / eventChunk
	clear(l.chunks[full:])
	l.chunks = l.chunks[:full]
	if full > 0 {
		last := &l.chunks[full-1]
		*last = (*last)[:w-(full-1)*eventChunk]
	}
	l.n = w
	var texts [][]byte
	for i := range w {
		e := l.at(i)
		size := e.n[0] + e.n[1] + e.n[2] + e.n[3]
		all := l.texts[e.chunk][e.off : e.off+size]
		k := room(&texts, int(size))
		e.chunk, e.off = uint32(k), uint32(len(texts[k]))
		texts[k] = append(texts[k], all...)
	}
	l.texts = texts
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
	} else if i := l.search(owner); i < l.len() && l.at(i).ID == owner && string(l.key(l.at(i))) == key {
		return false
	}
	if k.collided == nil {
		k.collided = map[string]struct{}{}
	}
	k.collided[key] = struct{}{}
	return true
}

// purge keeps the key of a purged event of l reserved.
func (k *eventKeys) purge(l *eventList, e *storedEvent) {
	key := l.key(e)
	if len(key) == 0 {
		return
	}
	h := maphash.Bytes(hashSeed, key)
	if k.byHash[h] != e.ID {
		return // a collided key: it stays in collided
	}
	k.byHash[h] = 0
	if k.purged == nil {
		k.purged = map[string]struct{}{}
	}
	k.purged[string(key)] = struct{}{}
}
