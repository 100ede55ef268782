package klt_test

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/taskfleet/taskfleet/klt"
)

// TestHostileDocumentsAreRefusedEarly checks that hostile documents are
// refused before memory grows with them. It measures allocations, so it
// does not call t.Parallel: sequential tests run alone.
func TestHostileDocumentsAreRefusedEarly(t *testing.T) {
	reg := registry(t)
	big := func(prefix, fill, suffix string, size int) []byte {
		var b bytes.Buffer
		b.Grow(size + len(prefix) + len(suffix))
		b.WriteString(prefix)
		for b.Len() < size {
			b.WriteString(fill)
		}
		b.WriteString(suffix)
		return b.Bytes()
	}
	cases := []struct {
		name     string
		doc      []byte
		maxAlloc uint64 // bytes allocated by Parse
	}{
		// 8 million values: refused at DefaultMaxValues.
		{"many values", big("[", "0,", "0]", klt.DefaultMaxSize-8), 64 << 20},
		// Larger than the limit: refused when the limit is crossed.
		{"too large", big(`{"format":`, "    ", `"x"}`, klt.DefaultMaxSize+1024), 1 << 20},
		// A million levels: refused at DefaultMaxDepth.
		{"deep", big("", "[", "", 1<<20), 1 << 20},
		// Many small objects with many keys each.
		{"many keys", big("[", `{"a":1,"b":2,"c":3,"d":4,"e":5},`, "{}]", klt.DefaultMaxSize-64), 64 << 20},
		// One string almost as large as the limit: held once, then refused.
		{"huge string", big(`{"format":"`, "xxxxxxxx", `"}`, klt.DefaultMaxSize-64), 4 * klt.DefaultMaxSize},
	}
	for _, c := range cases {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := klt.Parse(bytes.NewReader(c.doc), reg, klt.ParseOptions{})
		runtime.ReadMemStats(&after)
		if !errors.Is(err, klt.ErrInvalid) {
			t.Fatalf("%s: err = %v", c.name, err)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > c.maxAlloc {
			t.Errorf("%s: Parse allocated %d bytes, more than %d (error: %.100s)", c.name, got, c.maxAlloc, err)
		} else {
			t.Logf("%s: %d bytes allocated; %.100s", c.name, got, strings.TrimSpace(err.Error()))
		}
	}
}
