package memstore

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/storage"
)

// The chunked event list behaves as a plain slice under appends, filters
// (purges) and searches, across chunk boundaries of the events and of
// their texts: every event reads back exactly as appended.
func TestEventListMatchesASlice(t *testing.T) {
	t.Parallel()
	levels := []string{"", "result", "progress", "info", "warning", "error"}
	rng := rand.New(rand.NewPCG(7, 8))
	var l eventList
	var want []storage.EventRecord
	id := int64(0)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	check := func(step int) {
		t.Helper()
		if l.len() != len(want) {
			t.Fatalf("step %d: len %d, want %d", step, l.len(), len(want))
		}
		for i := range want {
			e, w := l.at(i), want[i]
			same := e.ID == w.ID && e.RunID == w.RunID && e.At == w.At && e.DeviceID == w.DeviceID &&
				string(l.text(e, 0)) == w.Level && string(l.text(e, 1)) == w.Severity &&
				string(l.text(e, 2)) == w.Message && string(l.text(e, 3)) == w.Key
			if !same || (i%97 == 0 && l.record("t", e) != w) {
				t.Fatalf("step %d: event %d = %+v, want %+v", step, i, l.record("t", e), w)
			}
		}
		for _, q := range []int64{0, 1, id / 2, id, id + 1} {
			w, _ := slices.BinarySearchFunc(want, q, func(e storage.EventRecord, id int64) int { return int(e.ID - id) })
			if got := l.search(q); got != w {
				t.Fatalf("step %d: search(%d) = %d, want %d", step, q, got, w)
			}
		}
	}
	for step := range 60 {
		for range rng.IntN(3 * eventChunk) {
			id += 1 + rng.Int64N(3)
			e := storage.EventRecord{ID: id, TaskID: "t", DeviceID: "d", RunID: rng.Int64N(5), At: t0.Add(time.Duration(rng.IntN(1000)) * time.Minute),
				Level: levels[rng.IntN(len(levels))], Severity: levels[rng.IntN(len(levels))],
				Message: strings.Repeat("m✓", rng.IntN(40)), Key: fmt.Sprint("k", id)[:rng.IntN(3)]}
			if rng.IntN(5000) == 0 {
				e.Message = strings.Repeat("x", textChunk+7) // larger than an array
			}
			l.append(e)
			want = append(want, e)
		}
		check(step)
		if step%3 == 2 {
			before := t0.Add(time.Duration(rng.IntN(1100)) * time.Minute)
			n := len(want)
			want = slices.DeleteFunc(want, func(e storage.EventRecord) bool { return e.At.Before(before) })
			if got := l.filter(func(e *storedEvent) bool { return !e.At.Before(before) }); got != n-len(want) {
				t.Fatalf("step %d: filter removed %d, want %d", step, got, n-len(want))
			}
			check(step)
		}
	}
	// Purging everything leaves an empty list that grows again.
	l.filter(func(*storedEvent) bool { return false })
	want = nil
	check(-1)
	l.append(storage.EventRecord{ID: id + 1, TaskID: "t", Message: "again"})
	want = append(want, storage.EventRecord{ID: id + 1, TaskID: "t", Message: "again"})
	check(-2)
}
