package klt_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/klt"
	"github.com/taskfleet/taskfleet/scope"
)

// FuzzParse feeds arbitrary documents to the decoder. It must never
// panic; whatever it accepts must export again and import to the same
// task; Normalize must be idempotent. The seed corpus (testdata/fuzz)
// holds the golden files, the fixtures and hostile documents.
func FuzzParse(f *testing.F) {
	reg := registry(f)
	f.Add([]byte(`{"PxgRetVal":{"TASK_NAME":"update","TASKID_PRODUCT_NAME":"Endpoint Security","TASK_INFO_PARAMS":{"type":"params","value":{"DisplayName":"x"}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		opts := klt.ParseOptions{MaxSize: 1 << 20, MaxValues: 10_000}
		imp, err := klt.Parse(bytes.NewReader(data), reg, opts)
		if n1, nerr := klt.Normalize(data); nerr == nil {
			n2, err2 := klt.Normalize(n1)
			if err2 != nil || !bytes.Equal(n1, n2) {
				t.Fatalf("Normalize is not idempotent: %v\n%s\n%s", err2, n1, n2)
			}
			// The decoder agrees with encoding/json on what the document
			// means (escapes, surrogates, numbers).
			if !json.Valid(data) {
				t.Fatalf("accepted JSON that encoding/json rejects: %q", data)
			}
			var a, b any
			if json.Unmarshal(data, &a) == nil {
				if err := json.Unmarshal(n1, &b); err != nil {
					t.Fatalf("normalised document is not JSON: %v", err)
				}
				if m, ok := a.(map[string]any); ok {
					delete(m, "exported_at")
				}
				if !reflect.DeepEqual(a, b) {
					t.Fatalf("normalising changed the document:\n%#v\n%#v", a, b)
				}
			}
		} else if json.Valid(data) && utf8.Valid(data) && len(data) < 1<<10 && !bytes.Contains(data, []byte("[[[[[[[[[[")) {
			var v any
			if json.Unmarshal(data, &v) == nil && !hasDuplicateKeys(data) {
				t.Fatalf("refused valid JSON: %v\n%q", nerr, data)
			}
		}
		if err != nil {
			if imp != nil {
				t.Fatal("an import with an error")
			}
			return
		}
		x := imp.Task
		x.Scope = scope.Scope{Kind: scope.Group, Group: "g"}
		if imp.SourceScope != nil {
			x.Scope = *imp.SourceScope
		}
		tt, ok := reg.Lookup(x.Application, x.Type)
		if !ok {
			t.Fatalf("accepted an unregistered type %q", x.Type)
		}
		out, _, err := klt.Export(&x, tt, klt.ExportOptions{Time: exportTime, Extra: imp.Extra})
		if err != nil {
			t.Fatalf("an accepted document does not export again: %v", err)
		}
		again, err := klt.Parse(bytes.NewReader(out), reg, klt.ParseOptions{})
		if err != nil {
			t.Fatalf("the re-export does not import: %v\n%s", err, out)
		}
		if d := cmp.Diff(imp.Task, again.Task, cmpOpts...); d != "" {
			t.Fatalf("the re-export imports differently (-first +again):\n%s", d)
		}
		if d := cmp.Diff(imp.Extra, again.Extra); d != "" {
			t.Fatalf("unknown fields changed (-first +again):\n%s", d)
		}
	})
}

// hasDuplicateKeys reports whether a valid JSON document repeats a key in
// an object (encoding/json accepts that; Parse refuses it).
func hasDuplicateKeys(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		obj    bool
		keys   map[string]bool
		expKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.expKey {
			if k, ok := tok.(string); ok {
				if top.keys[k] {
					return true
				}
				top.keys[k] = true
				top.expKey = false
				continue
			}
		}
		if top != nil && top.obj {
			top.expKey = true
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, keys: map[string]bool{}, expKey: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && stack[len(stack)-1].obj {
				stack[len(stack)-1].expKey = true
			}
		}
	}
}

// FuzzDecodeOpaque feeds arbitrary task.Task.Opaque values (stored data a
// store hands back) to DecodeOpaque: it never panics, and what it accepts
// encodes to a value that decodes to the same fields.
func FuzzDecodeOpaque(f *testing.F) {
	f.Add([]byte(`[{"path":["task","TASK_UNIQUE_ID"],"json":"\"_LOCAL_1\""}]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[{"path":["task"],"json":"1","x":2}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fields, err := klt.DecodeOpaque(data)
		if err != nil {
			if !errors.Is(err, klt.ErrInvalid) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		again, err := klt.DecodeOpaque(klt.EncodeOpaque(fields))
		if err != nil {
			t.Fatalf("EncodeOpaque wrote what DecodeOpaque refuses: %v", err)
		}
		if len(fields) == 0 && len(again) == 0 {
			return
		}
		if d := cmp.Diff(fields, again); d != "" {
			t.Fatalf("round trip (-first +again):\n%s", d)
		}
	})
}
