package schedule_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/schedule"
)

// FuzzUnmarshalJSON: decoding never panics; it either fails with a typed
// error matching ErrInvalid or yields a valid Schedule that encodes to a
// document decoding to the same Schedule (and whose Next and Between are
// safe to call). The committed corpus is in testdata/fuzz/FuzzUnmarshalJSON.
func FuzzUnmarshalJSON(f *testing.F) {
	for _, s := range validSamples() {
		f.Add([]byte(s.json))
	}
	f.Add([]byte(`{"kind":"weekly"}`))
	f.Add([]byte(`{"kind":"manual","random_delay":{"mode":"automatic"}}`))
	f.Add([]byte(`{"kind":"every_days","every":366,"start_date":"9999-12-31","time":"23:59:59"}`))
	f.Add([]byte(`{"kind":"once","at":"0001-01-01T00:00:00+14:00"}`))
	f.Add([]byte(`{"kind":"weekly","weekdays":["friday","friday"]}`))
	loc, err := time.LoadLocation("Pacific/Apia")
	if err != nil {
		f.Fatal(err)
	}
	after := time.Date(2011, 12, 29, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		var s schedule.Schedule
		err := s.UnmarshalJSON(data)
		if err != nil {
			var ve *schedule.ValidationError
			var ves schedule.ValidationErrors
			if !errors.Is(err, schedule.ErrInvalid) || !(errors.As(err, &ve) || errors.As(err, &ves)) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			if s != (schedule.Schedule{}) {
				t.Fatalf("a failed decode changed the target: %+v", s)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("decoded an invalid schedule: %v", err)
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("cannot re-encode: %v", err)
		}
		var back schedule.Schedule
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("re-decode %s: %v", b, err)
		}
		if diff := cmp.Diff(s, back); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
		next, ok := s.Next(after, loc)
		if ok && !next.After(after) {
			t.Fatalf("Next(%v) = %v, not after", after, next)
		}
		n := 0
		for a := range s.Between(after, after.AddDate(0, 0, 2), loc) {
			if !a.After(next) && !a.Equal(next) || n > 60*24*2 {
				t.Fatalf("Between yielded %v (first %v, count %d)", a, next, n)
			}
			n++
		}
	})
}
