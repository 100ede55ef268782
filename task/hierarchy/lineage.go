package hierarchy

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/taskfleet/taskfleet/task"
)

// Hop is one step of an inherited copy's lineage: the task TaskID on
// Administration Server Server.
type Hop struct {
	// Server is the server holding the task.
	Server string
	// TaskID is the task's id there.
	TaskID string
}

// inheritPrefix marks an inherited copy. The copy is created and updated
// by the actor
//
//	inherited:<parent>/<parent task id>[<<server>/<task id>...]@<parent revision>
//
// whose hops go from the parent up to the task's origin, so the copy's
// CreatedBy holds its whole lineage (it travels with the task to the next
// level and survives restarts) and its UpdatedBy says which revision of
// the parent's task it copies. Components are query-escaped, so ids may
// hold any character.
const inheritPrefix = "inherited:"

// inheritActor is the actor that creates, updates and deletes the copy of
// a task with lineage hops at the parent's revision rev.
func inheritActor(hops []Hop, rev int64) task.Actor {
	var b strings.Builder
	b.WriteString(inheritPrefix)
	for i, h := range hops {
		if i > 0 {
			b.WriteByte('<')
		}
		b.WriteString(url.QueryEscape(h.Server))
		b.WriteByte('/')
		b.WriteString(url.QueryEscape(h.TaskID))
	}
	b.WriteByte('@')
	b.WriteString(strconv.FormatInt(rev, 10))
	return task.Actor{ID: b.String()}
}

// parseActor returns the lineage of an inheritance actor id (or of an
// inherited copy's CreatedBy); ok is false for any other id.
func parseActor(id string) (hops []Hop, ok bool) {
	rest, ok := strings.CutPrefix(id, inheritPrefix)
	if !ok {
		return nil, false
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[:i]
	}
	for part := range strings.SplitSeq(rest, "<") {
		s, t, found := strings.Cut(part, "/")
		if !found {
			return nil, false
		}
		var err1, err2 error
		var h Hop
		h.Server, err1 = url.QueryUnescape(s)
		h.TaskID, err2 = url.QueryUnescape(t)
		if err1 != nil || err2 != nil || h.Server == "" || h.TaskID == "" {
			return nil, false
		}
		hops = append(hops, h)
	}
	return hops, true
}

// lineage returns the hops of an inherited copy, from its parent up to the
// origin, or nil for a task of this server's own.
func lineage(t *task.Task) []Hop {
	hops, _ := parseActor(t.CreatedBy)
	return hops
}

// origin returns the server an inherited copy comes from and the task id
// there.
func origin(t *task.Task) (from, parentTask string, ok bool) {
	hops := lineage(t)
	if len(hops) == 0 {
		return "", "", false
	}
	return hops[0].Server, hops[0].TaskID, true
}

// ReadOnly wraps an Authorizer so inherited copies can be modified or
// deleted only by the Node that keeps them in sync, at every level of the
// hierarchy.
func ReadOnly(next task.Authorizer) task.Authorizer {
	if next == nil {
		next = task.AllowAll{}
	}
	return readOnly{next}
}

type readOnly struct{ next task.Authorizer }

func (r readOnly) Authorize(ctx context.Context, a task.Actor, op task.Operation, t *task.Task) error {
	if t != nil && (op == task.OpModify || op == task.OpDelete) {
		if hops := lineage(t); len(hops) > 0 {
			ah, _ := parseActor(a.ID)
			if len(ah) == 0 || ah[0] != hops[0] {
				return fmt.Errorf("task %q is inherited from Administration Server %q and read-only here: %w", t.ID, hops[0].Server, task.ErrPermission)
			}
		}
	}
	return r.next.Authorize(ctx, a, op, t)
}
