package restart

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzPolicyJSON checks that decoding never panics, that every rejection is
// a validation error, and that every accepted document is a valid policy
// that survives an encode/decode round trip unchanged.
func FuzzPolicyJSON(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"action":"prompt","message":"hi","repeat_prompt":{"enabled":true,"minutes":5},"restart_after":{"enabled":false,"minutes":30},"force_close_locked":true}`,
		`{"action":"restart"}`,
		`{"repeat_prompt":{"minutes":0}}`,
		`{"repeat_prompt":{"minutes":1e3}}`,
		`{"a":1,"a":2}`,
		`[1,2]`,
		`{"message":"\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Policy
		err := p.UnmarshalJSON(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("rejection is not ErrInvalid: %v", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted an invalid policy %+v: %v", p, err)
		}
		enc, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back Policy
		if err := json.Unmarshal(enc, &back); err != nil {
			t.Fatalf("re-decoding %s: %v", enc, err)
		}
		if diff := cmp.Diff(p, back); diff != "" {
			t.Fatalf("round trip mismatch (-first +second):\n%s", diff)
		}
	})
}
