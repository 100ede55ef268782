package task

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Change is one field-level difference between two versions of a task.
// Path is the JSON path ("schedule.time", "settings.scan_archives"); Old
// and New are JSON values, absent when the field did not exist on that
// side. Secret values (passwords, sealed credentials, settings values that
// look like secrets) are replaced by the string "[redacted]".
type Change struct {
	// Path is the JSON path of the changed field.
	Path string `json:"path"`
	// Old is the JSON value before the change (absent: the field was new).
	Old json.RawMessage `json:"old,omitempty"`
	// New is the JSON value after the change (absent: the field was
	// removed).
	New json.RawMessage `json:"new,omitempty"`
}

// String formats the change as "path: old -> new".
func (c Change) String() string {
	old, nw := string(c.Old), string(c.New)
	if old == "" {
		old = "(absent)"
	}
	if nw == "" {
		nw = "(absent)"
	}
	return fmt.Sprintf("%s: %s -> %s", c.Path, old, nw)
}

// Conflict is a field both the administrator and the device user changed
// in a merge of a local task; the administrator's value won.
type Conflict struct {
	// Path is the JSON path of the field.
	Path string `json:"path"`
	// Admin is the administrator's value, which was kept.
	Admin json.RawMessage `json:"admin,omitempty"`
	// User is the device user's value, which lost.
	User json.RawMessage `json:"user,omitempty"`
}

// revisionDiff is what a revision stores as its Diff.
type revisionDiff struct {
	Changes []Change `json:"changes"`
	// Conflicts of a merge (the user's values that lost).
	Conflicts []Conflict `json:"conflicts,omitempty"`
	// Merged names the device user whose edit was merged.
	MergedUser string `json:"merged_user,omitempty"`
}

// metaPaths are bookkeeping fields that are not settings: they never
// appear in diffs and are not merged.
var metaPaths = map[string]bool{
	"id": true, "revision": true, "settings_revision": true,
	"created_at": true, "created_by": true, "updated_at": true, "updated_by": true,
}

const redacted = `"[redacted]"`

// flat is a task body flattened to JSON leaves keyed by path. Objects are
// walked (an empty object is the same as an absent one); arrays, scalars
// and null are leaves.
type flat map[string]json.RawMessage

func flatten(body []byte) (flat, error) {
	var root map[string]json.RawMessage
	if err := json.Unmarshal(body, &root); err != nil {
		return nil, err
	}
	out := flat{}
	var walk func(prefix string, obj map[string]json.RawMessage) error
	walk = func(prefix string, obj map[string]json.RawMessage) error {
		for k, v := range obj {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			} else if metaPaths[k] {
				continue
			}
			v = bytes.TrimSpace(v)
			if len(v) > 0 && v[0] == '{' {
				var child map[string]json.RawMessage
				if err := json.Unmarshal(v, &child); err != nil {
					return err
				}
				// An empty object is the same as an absent one.
				if err := walk(p, child); err != nil {
					return err
				}
				continue
			}
			out[p] = compact(v)
		}
		return nil
	}
	return out, walk("", root)
}

func compact(v json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return v
	}
	return b.Bytes()
}

// unflatten rebuilds a JSON object from leaves.
func unflatten(f flat) ([]byte, error) {
	root := map[string]any{}
	for p, v := range f {
		segs := strings.Split(p, ".")
		node := root
		for _, s := range segs[:len(segs)-1] {
			child, ok := node[s].(map[string]any)
			if !ok {
				child = map[string]any{}
				node[s] = child
			}
			node = child
		}
		node[segs[len(segs)-1]] = v
	}
	return json.Marshal(root)
}

// isSecretPath reports whether the value at path must never be shown.
func isSecretPath(p string, secretPaths map[string]bool) bool {
	if secretPaths[p] {
		return true
	}
	if strings.HasPrefix(p, "account.") && p != "account.name" {
		return true
	}
	for prefix := range secretPaths {
		if strings.HasPrefix(p, prefix+".") {
			return true
		}
	}
	return false
}

// diffFlat lists the changes from a to b in path order, secrets redacted.
func diffFlat(a, b flat, secretPaths map[string]bool) []Change {
	paths := make([]string, 0, len(a)+len(b))
	for p := range a {
		paths = append(paths, p)
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var out []Change
	for _, p := range paths {
		ov, inA := a[p]
		nv, inB := b[p]
		if inA && inB && bytes.Equal(ov, nv) {
			continue
		}
		c := Change{Path: p}
		if isSecretPath(p, secretPaths) {
			if inA {
				c.Old = json.RawMessage(redacted)
			}
			if inB {
				c.New = json.RawMessage(redacted)
			}
		} else {
			if inA {
				c.Old = ov
			}
			if inB {
				c.New = nv
			}
		}
		out = append(out, c)
	}
	return out
}

// merge3 merges the device user's edit (user) into the administrator's
// current version (admin), both derived from base. Fields only one side
// changed take that side's value; fields both changed differently take the
// administrator's (the product documentation: the administrator's changes have priority)
// and are reported as conflicts. With section set, paths are compared by
// their first `section` segments, so a subtree changed by both sides is
// taken whole from the administrator.
func merge3(base, admin, user flat, section int) (flat, []Conflict) {
	key := func(p string) string {
		if section <= 0 {
			return p
		}
		segs := strings.SplitN(p, ".", section+1)
		if len(segs) > section {
			segs = segs[:section]
		}
		return strings.Join(segs, ".")
	}
	changed := func(from, to flat) map[string]bool {
		out := map[string]bool{}
		for p, v := range to {
			if bv, ok := from[p]; !ok || !bytes.Equal(bv, v) {
				out[key(p)] = true
			}
		}
		for p := range from {
			if _, ok := to[p]; !ok {
				out[key(p)] = true
			}
		}
		return out
	}
	adminChanged, userChanged := changed(base, admin), changed(base, user)
	out := flat{}
	var conflicts []Conflict
	// Start from the administrator's version; bring in the user's changes
	// in sections the administrator did not touch.
	for p, v := range admin {
		if !userChanged[key(p)] || adminChanged[key(p)] {
			out[p] = v
		}
	}
	for p, v := range user {
		k := key(p)
		if userChanged[k] && !adminChanged[k] {
			out[p] = v
		}
	}
	// Report conflicts: leaves the user changed inside sections the
	// administrator also changed, where the results differ.
	for _, p := range unionPaths(base, user) {
		k := key(p)
		if !userChanged[k] || !adminChanged[k] {
			continue
		}
		bv, inB := base[p]
		uv, inU := user[p]
		if inB == inU && bytes.Equal(bv, uv) {
			continue // the user did not change this leaf
		}
		av, inA := admin[p]
		if inA == inU && bytes.Equal(av, uv) {
			continue // both made the same change
		}
		c := Conflict{Path: p}
		if inA {
			c.Admin = av
		}
		if inU {
			c.User = uv
		}
		conflicts = append(conflicts, c)
	}
	return out, conflicts
}

func unionPaths(a, b flat) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []flat{a, b} {
		for p := range m {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return out
}
