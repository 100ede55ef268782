package memstore

import (
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
