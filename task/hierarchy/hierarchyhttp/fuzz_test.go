package hierarchyhttp

import (
	"errors"
	"testing"

	"github.com/taskfleet/taskfleet/task/hierarchy"
)

// FuzzDecode feeds arbitrary bodies to every decoder of outside input: it
// never panics, and what it refuses is ErrInvalid.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"from":"p","to":"s","version":{"epoch":1,"seq":2},"tasks":[{"id":"t1","name":"scan","settings":{"action":"delete"}}]}`,
		`{"from":"s","to":"p","version":{"epoch":1,"seq":1},"complete":true,"statistics":[{"TaskID":"t","Server":"s","Path":["s"],"Statistics":{"by_state":{"failed":2},"total":2}}]}`,
		`{"id":7,"page":{"server":"s","results":[{"task_id":"t","device_id":"d","state":"failed"}],"next":"d"}}`,
		`{"id":7,"error":{"kind":"not_found","message":"no copy"}}`,
		`[{"id":1,"query":{"From":"p","To":"s","TaskID":"t","Server":"s","Limit":10}}]`,
		`{"tasks":null}{}`, `{"unknown":1}`, `[`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(err error) {
			if err != nil && !errors.Is(err, hierarchy.ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
		}
		if m, err := decodeTaskSet(b); err == nil && len(m.Tasks) > MaxTasks {
			t.Fatalf("%d tasks accepted", len(m.Tasks))
		} else {
			check(err)
		}
		if r, err := decodeReport(b); err == nil && len(r.Statistics) > MaxFigures {
			t.Fatalf("%d figures accepted", len(r.Statistics))
		} else {
			check(err)
		}
		_, err := decodeAnswer(b)
		check(err)
		_, err = decodeQueries(b)
		check(err)
	})
}
