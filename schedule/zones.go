package schedule

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Zone periods are looked up in a per-Location table of constant-offset
// spans for years 1900–2200, built once per *time.Location on first use.
// The time package answers the same question with two lookups per call
// (offset and bounds), and after a zone's last listed transition (2037 in
// most system databases, often years earlier in Go's own zone data) it
// re-derives the period from the zone's TZ rule on every call; the table
// makes every lookup one binary search and keeps Next at a few tens of
// nanoseconds in any year. Instants outside the table's range use the time
// package directly. The table's offsets are the time package's
// single-instant offsets; only the period starts it reports are not
// trusted (see zoneAtRaw).

const maxZoneTables = 256 // bound memory if a host loads zones repeatedly

var (
	zoneTables     sync.Map // *time.Location → *zoneTable
	zoneTableCount atomic.Int64
	tableLo        = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	tableHi        = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
)

// zoneTable: span i has offset offs[i] over [starts[i], starts[i+1]) and
// the last span ends at lastEnd. Adjacent spans differ in offset.
// bucket[b] is the span in effect at tableLo + b<<bucketShift, so a
// lookup starts at most a few spans before the answer.
type zoneTable struct {
	loc     *time.Location
	starts  []int64
	offs    []int32
	lastEnd int64
	bucket  []uint16
}

const bucketShift = 22 // 2^22 s ≈ 48.5 days

// lastTable short-cuts the map for the common case of one zone at a time.
var lastTable atomic.Pointer[zoneTable]

func tableFor(loc *time.Location) *zoneTable {
	if t := lastTable.Load(); t != nil && t.loc == loc {
		return t
	}
	if v, ok := zoneTables.Load(loc); ok {
		t := v.(*zoneTable)
		lastTable.Store(t)
		return t
	}
	t := buildZoneTable(loc)
	if zoneTableCount.Add(1) > maxZoneTables {
		zoneTables.Clear()
		zoneTableCount.Store(1)
	}
	v, _ := zoneTables.LoadOrStore(loc, t)
	t = v.(*zoneTable)
	lastTable.Store(t)
	return t
}

func buildZoneTable(loc *time.Location) *zoneTable {
	t := &zoneTable{loc: loc}
	defer t.index()
	// The first span starts where zoneAtDirect says (a checked start);
	// every later one starts exactly where the previous one ended, the
	// walk position u, and never at the start the time package reports:
	// for the first period a zone's TZ footer rule produces after its last
	// listed transition that is the start of the year or the rule's
	// transition, before the listed transition (issue #23).
	off, start, end := zoneAtDirect(loc, tableLo)
	t.starts = append(t.starts, start)
	t.offs = append(t.offs, int32(off))
	for end < tableHi && end != math.MaxInt64 {
		u := end
		off, _, end = zoneAtRaw(loc, u)
		if int64(t.offs[len(t.offs)-1]) != off {
			t.starts = append(t.starts, u)
			t.offs = append(t.offs, int32(off))
		}
		// Otherwise the same offset as the previous span (a renamed zone
		// or a period boundary the time package reports at New Year).
	}
	t.lastEnd = end
	return t
}

func (t *zoneTable) index() {
	n := int((tableHi-tableLo)>>bucketShift) + 1
	t.bucket = make([]uint16, n)
	i := 0
	for b := range t.bucket {
		at := tableLo + int64(b)<<bucketShift
		for i+1 < len(t.starts) && t.starts[i+1] <= at {
			i++
		}
		t.bucket[b] = uint16(i)
	}
}

// zoneAt returns the UTC offset in effect at unix second u in loc and the
// bounds [start, end) of a span of that offset containing u
// (math.MinInt64 / math.MaxInt64 when unbounded).
func zoneAt(loc *time.Location, u int64) (off, start, end int64) {
	if u < tableLo || u >= tableHi {
		return zoneAtDirect(loc, u)
	}
	t := tableFor(loc)
	// Largest i with starts[i] <= u, from the bucket's span on.
	i := int(t.bucket[(u-tableLo)>>bucketShift])
	for i+1 < len(t.starts) && t.starts[i+1] <= u {
		i++
	}
	end = t.lastEnd
	if i+1 < len(t.starts) {
		end = t.starts[i+1]
	}
	return int64(t.offs[i]), t.starts[i], end
}

// zoneAtDirect asks the time package, and returns a start that is exact
// or later than the zone change (never earlier): see zoneAtRaw for why the
// start the time package reports cannot be taken as it is.
func zoneAtDirect(loc *time.Location, u int64) (off, start, end int64) {
	off, start, end = zoneAtRaw(loc, u)
	if start == math.MinInt64 || start >= u {
		return off, start, end
	}
	// Walk the periods forward from the reported start to u: the offset
	// changes exactly where a period with another offset ends, because
	// every period the time package reports holds its offset from the
	// instant it is asked about to its end. The start of u's run of equal
	// offsets is then a true start. The reported start is in u's year,
	// so the walk is a few steps; if it is not, u itself is a safe start.
	v, runStart := start, start
	prev, _, e := zoneAtRaw(loc, v)
	for i := 0; e <= u; i++ {
		if i == 16 {
			return off, u, end
		}
		v = e
		var o int64
		o, _, e = zoneAtRaw(loc, v)
		if o != prev {
			runStart, prev = v, o
		}
	}
	if prev != off {
		return off, u, end // the time package contradicts itself; stay safe
	}
	return off, runStart, end
}

// zoneAtRaw returns the offset at u and the period the time package
// reports for u, with its end made usable. The period's end is the next
// transition (or earlier; see below), and the offset holds from u up to
// it. The period's start is only a hint: for the first period a zone's TZ
// footer rule produces after the zone's last listed transition, the time
// package reports the start of the year or the rule's own transition,
// before the listed transition (America/Metlakatla from 2019-01-01
// instead of 2019-01-20 with Go's zone data). System zone files list
// transitions up to 2037, which hides this; Go's own zone data (Windows,
// ZONEINFO, time/tzdata) does not.
func zoneAtRaw(loc *time.Location, u int64) (off, start, end int64) {
	t := time.Unix(u, 0).In(loc)
	_, o := t.Zone()
	st, en := t.ZoneBounds()
	start, end = math.MinInt64, math.MaxInt64
	if !st.IsZero() {
		start = st.Unix()
	}
	if !en.IsZero() {
		end = en.Unix()
	}
	if end <= u {
		// The time package derives periods after a zone's last listed
		// transition from its TZ rule and reports the period that runs
		// over New Year as ending 365 days after the UTC year start, which
		// is December 31 in leap years, before u. The period really runs
		// into the next year; the next UTC New Year is a safe (if
		// premature) bound, as walking on from it finds the same offset.
		y, _, _ := civilFromDays(floorDiv(u, secondsPerDay))
		end = daysFromCivil(y+1, 1, 1) * secondsPerDay
	}
	return int64(o), start, end
}
