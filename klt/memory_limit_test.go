package klt_test

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/klt"
)

// memUse runs f and returns the bytes it allocated in total and the peak
// live heap above the starting point, sampled every millisecond.
func memUse(f func()) (total, peak uint64) {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var mu sync.Mutex
	maxHeap := before.HeapAlloc
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				runtime.ReadMemStats(&m)
				mu.Lock()
				maxHeap = max(maxHeap, m.HeapAlloc)
				mu.Unlock()
			}
		}
	}()
	f()
	close(done)
	wg.Wait()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	maxHeap = max(maxHeap, after.HeapAlloc)
	return after.TotalAlloc - before.TotalAlloc, maxHeap - before.HeapAlloc
}

// repeatReader streams prefix, n copies of fill, suffix without holding
// the document.
func repeatReader(prefix, fill string, n int, suffix string) io.Reader {
	return io.MultiReader(strings.NewReader(prefix), &repeater{s: fill, n: n}, strings.NewReader(suffix))
}

type repeater struct {
	s   string
	n   int
	off int
}

func (r *repeater) Read(p []byte) (int, error) {
	w := 0
	for w < len(p) && r.n > 0 {
		c := copy(p[w:], r.s[r.off:])
		w += c
		r.off += c
		if r.off == len(r.s) {
			r.off = 0
			r.n--
		}
	}
	if w == 0 && r.n == 0 {
		return 0, io.EOF
	}
	return w, nil
}

// TestMemoryAndQuoteLimits measures, with runtime.MemStats, what the
// worst documents of issue #17 cost Parse: the memory limit of the package
// documentation (klt.MaxParseAlloc in total, klt.MaxParseLive live at
// once) holds, and no error quotes more than 64 bytes of the document. It
// measures the heap, so it does not call t.Parallel: it runs alone.
func TestMemoryAndQuoteLimits(t *testing.T) {
	reg := registry(t)
	const (
		maxTotal = uint64(klt.MaxParseAlloc * raceSlack)
		maxLive  = uint64(klt.MaxParseLive * raceSlack)
		maxErr   = 1024 // an error names a path and quotes at most 64 bytes
	)
	head := `{"PxgRetVal": {"TASKID_PRODUCT_NAME": "Endpoint Security", "TASK_NAME": "update", "TASK_INFO_PARAMS": {"type": "params", "value": {"DisplayName": "x"}}, `
	cases := []struct {
		name string
		r    func() io.Reader
		ok   bool // the document is valid
	}{
		// 249,000 unknown keys in 3.1 MiB: a valid document.
		{"249000 unknown keys", func() io.Reader {
			var b strings.Builder
			b.WriteString(head)
			for i := range 249_000 {
				fmt.Fprintf(&b, `"K%06d": 1, `, i)
			}
			b.WriteString(`"TASKID_VERSION": "12.1"}}`)
			return strings.NewReader(b.String())
		}, true},
		// As many unknown string fields as fill the size limit.
		{"16 MiB of unknown strings", func() io.Reader {
			var b strings.Builder
			b.WriteString(head)
			for i := range 220_000 {
				fmt.Fprintf(&b, `"K%06d": "%s", `, i, strings.Repeat("v", 60))
			}
			b.WriteString(`"TASKID_VERSION": "12.1"}}`)
			return strings.NewReader(b.String())
		}, true},
		// A 200 MiB number: refused at the size limit.
		{"200 MiB number", func() io.Reader { return repeatReader(`{"format": 1`, "0000000000", 20<<20, `}`) }, false},
		// A 1 MiB number, within the size limit.
		{"1 MiB number", func() io.Reader { return repeatReader(head+`"TASKSCH_TYPE": 1`, "0000000000", 100_000, `}}`) }, false},
		{"1 MiB number as a group", func() io.Reader {
			return repeatReader(`{"PxgRetVal": {"TASK_INFO_PARAMS": {"type": "params", "value": {"PRTS_TASK_GROUPID": 1`, "0000000000", 100_000, `}}}}`)
		}, false},
		{"1 MiB type name", func() io.Reader {
			return repeatReader(head+`"X": {"type": "`, "xxxxxxxxxx", 100_000, `", "value": 1}}}`)
		}, false},
		{"1 MiB long", func() io.Reader {
			return repeatReader(head+`"X": {"type": "long", "value": 1`, "0000000000", 100_000, `}}}`)
		}, false},
		{"1 MiB format version", func() io.Reader {
			return repeatReader(`{"format": "taskfleet-klt", "format_version": "1.`, "0000000000", 100_000, `"}`)
		}, false},
		// Notification recipients: a list of commas as large as the size
		// limit is refused before it is split.
		{"16 MiB recipient list", func() io.Reader {
			return repeatReader(`{"PxgRetVal": {"TASKID_PRODUCT_NAME": "Endpoint Security", "TASK_NAME": "update", "TASK_INFO_PARAMS": {"type": "params", "value": {"DisplayName": "x", "KLPRSS_EVPNotifications": {"type": "params", "value": {"ERR": [{"type": "params", "value": {"KLEVP_ND_USE_EMAIL": true, "KLEVP_ND_EMAIL": "`,
				",,,,,,,,", (klt.DefaultMaxSize-512)/8, `"}}]}}}}}}`)
		}, false},
		{"1 MiB notification days", func() io.Reader {
			return repeatReader(`{"PxgRetVal": {"TASKID_PRODUCT_NAME": "Endpoint Security", "TASK_NAME": "update", "TASK_INFO_PARAMS": {"type": "params", "value": {"DisplayName": "x", "KLPRSS_EVPNotifications": {"type": "params", "value": {"ERR": [{"type": "params", "value": {"KLEVP_ND_DAYS_TO_STORE_EVENT": 1`,
				"0000000000", 100_000, `}}]}}}}}}`)
		}, false},
		{"1 MiB schedule subtype", func() io.Reader {
			return repeatReader(`{"PxgRetVal": {"TASKID_PRODUCT_NAME": "Endpoint Security", "TASK_NAME": "update", "TASK_INFO_PARAMS": {"type": "params", "value": {"DisplayName": "x", "klprts-TaskScheduleSubtype": 1`,
				"0000000000", 100_000, `}}}}`)
		}, false},
		// A string as large as the size limit.
		{"16 MiB string", func() io.Reader { return repeatReader(`{"format": "`, "xxxxxxxx", (klt.DefaultMaxSize-64)/8, `"}`) }, false},
	}
	for _, c := range cases {
		var err error
		r := c.r()
		total, peak := memUse(func() { _, err = klt.Parse(r, reg, klt.ParseOptions{}) })
		if c.ok && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if !c.ok && !errors.Is(err, klt.ErrInvalid) {
			t.Errorf("%s: err = %v", c.name, err)
		}
		t.Logf("%s: %.1f MiB allocated, %.1f MiB live at peak", c.name, float64(total)/(1<<20), float64(peak)/(1<<20))
		if total > maxTotal {
			t.Errorf("%s: Parse allocated %d bytes, more than %d", c.name, total, maxTotal)
		}
		if peak > maxLive {
			t.Errorf("%s: live heap grew by %d bytes, more than %d", c.name, peak, maxLive)
		}
		if err != nil && len(err.Error()) > maxErr {
			t.Errorf("%s: the error is %d bytes long: %.200s", c.name, len(err.Error()), err)
		}
	}
}
