package task

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/storage"
)

// Revision is one numbered version of a task's settings.
type Revision struct {
	// Number counts the task's revisions from 1 (Task.Revision is the
	// latest).
	Number int64
	// Author is the ID of the Actor that made it.
	Author string
	// At is when it was stored (UTC).
	At time.Time
	// Action is what made the revision (one of the RevisionAction
	// constants).
	Action RevisionAction
	// Changes against the previous revision (secrets redacted).
	Changes []Change
	// Conflicts of a merge: the device user's values that lost to the
	// administrator's.
	Conflicts []Conflict
	// MergedUser is the device user whose edit a merge brought in.
	MergedUser string
	// Task is the task as it was at this revision.
	Task *Task
}

// Revisions returns a task's revisions in ascending order after number
// after, at most limit (default 100).
//
// Errors: ErrNotFound, ErrPermission, ErrInvalid.
func (m *Manager) Revisions(ctx context.Context, actor Actor, id string, after int64, limit int) ([]Revision, error) {
	if _, err := m.Get(ctx, actor, id); err != nil {
		return nil, err
	}
	if limit < 0 || limit > storage.MaxListLimit {
		return nil, errs.Range("limit", limit, 0, storage.MaxListLimit)
	}
	recs, err := m.store.ListRevisions(ctx, storage.ListRevisionsParams{TaskID: id, AfterNumber: after, Limit: limit})
	if err != nil {
		return nil, m.storeErr(err, "revisions of task %q", id)
	}
	out := make([]Revision, len(recs))
	for i, r := range recs {
		rev, err := m.revision(r)
		if err != nil {
			return nil, err
		}
		out[i] = rev
	}
	return out, nil
}

// Revision returns revision n of a task. Errors: ErrNotFound,
// ErrPermission.
func (m *Manager) Revision(ctx context.Context, actor Actor, id string, n int64) (Revision, error) {
	if _, err := m.Get(ctx, actor, id); err != nil {
		return Revision{}, err
	}
	r, err := m.store.GetRevision(ctx, id, n)
	if err != nil {
		return Revision{}, m.storeErr(err, "revision %d of task %q", n, id)
	}
	return m.revision(r)
}

func (m *Manager) revision(r storage.RevisionRecord) (Revision, error) {
	t, err := m.decode(r.Body)
	if err != nil {
		return Revision{}, err
	}
	var d revisionDiff
	if len(r.Diff) > 0 {
		if err := json.Unmarshal(r.Diff, &d); err != nil {
			return Revision{}, fmt.Errorf("task %s: revision %d diff cannot be decoded: %w", r.TaskID, r.Number, err)
		}
	}
	return Revision{Number: r.Number, Author: r.Author, At: r.At, Action: RevisionAction(r.Action), Changes: d.Changes, Conflicts: d.Conflicts, MergedUser: d.MergedUser, Task: t}, nil
}

// Compare returns the field-level changes from revision a to revision b
// of a task (secrets redacted).
//
// Errors: ErrNotFound, ErrPermission.
func (m *Manager) Compare(ctx context.Context, actor Actor, id string, a, b int64) ([]Change, error) {
	if _, err := m.Get(ctx, actor, id); err != nil {
		return nil, err
	}
	ra, err := m.store.GetRevision(ctx, id, a)
	if err != nil {
		return nil, m.storeErr(err, "revision %d of task %q", a, id)
	}
	rb, err := m.store.GetRevision(ctx, id, b)
	if err != nil {
		return nil, m.storeErr(err, "revision %d of task %q", b, id)
	}
	fa, err := flatten(ra.Body)
	if err != nil {
		return nil, err
	}
	fb, err := flatten(rb.Body)
	if err != nil {
		return nil, err
	}
	return diffFlat(fa, fb, m.secretPaths(bodySettings(ra.Body), bodySettings(rb.Body))), nil
}

// Rollback makes the settings of revision n current again, as a new
// revision (action "rollback"). expectRevision is the revision the caller
// read.
//
// Errors: ErrNotFound, ErrPermission, ErrConflict, ErrInvalid (the old
// settings are no longer valid, e.g. their type's rules changed).
func (m *Manager) Rollback(ctx context.Context, actor Actor, id string, n, expectRevision int64) (*Task, error) {
	rev, err := m.Revision(ctx, actor, id, n)
	if err != nil {
		return nil, err
	}
	t := *rev.Task
	t.Revision = expectRevision
	return m.update(ctx, actor, t, ActionRollback, nil)
}

// MergeResult is the outcome of MergeDeviceEdit.
type MergeResult struct {
	// Task is the merged task as stored.
	Task *Task

	// Conflicts are the fields both sides changed; the administrator's
	// values were kept.
	Conflicts []Conflict
}

// MergeDeviceEdit merges an edit of a local task made by the device's
// user into the current task (the product documentation: local tasks can be modified by the
// administrator and by the device user; when both modify them at the same
// time, the administrator's changes take effect). edited is the user's
// version of the task, derived from revision baseRevision. Fields only the
// user changed are kept; fields both changed keep the administrator's
// value and are reported as conflicts. The result is a new revision
// (action "merge") recording the user, the changes and the conflicts. If
// the leaf-by-leaf merge is not a valid task, whole settings sections the
// administrator changed are taken from the administrator; if that is
// still invalid, the user's edit is refused with the validation error.
//
// Errors: ErrNotFound, ErrPermission, ErrInvalid (not a local task, or the
// merged task is invalid), ErrConflict (the task changed during the merge:
// retry).
func (m *Manager) MergeDeviceEdit(ctx context.Context, user Actor, id string, baseRevision int64, edited Task) (MergeResult, error) {
	cur, err := m.load(ctx, id)
	if err != nil {
		return MergeResult{}, m.undecodable(ctx, user, OpModify, err)
	}
	if cur.Kind() != Local {
		return MergeResult{}, errs.Invalid("scope.kind", string(cur.Scope.Kind), "only local tasks can be edited on the device")
	}
	if err := m.authorize(ctx, user, OpModify, cur); err != nil {
		return MergeResult{}, err
	}
	baseRec, err := m.store.GetRevision(ctx, id, baseRevision)
	if err != nil {
		return MergeResult{}, m.storeErr(err, "base revision %d of task %q", baseRevision, id)
	}
	curBody, err := encode(cur)
	if err != nil {
		return MergeResult{}, err
	}
	edited.ID = id
	userBody, err := encode(&edited)
	if err != nil {
		return MergeResult{}, err
	}
	base, err1 := flatten(baseRec.Body)
	admin, err2 := flatten(curBody)
	usr, err3 := flatten(userBody)
	for _, e := range []error{err1, err2, err3} {
		if e != nil {
			return MergeResult{}, e
		}
	}
	var lastErr error
	for _, section := range []int{0, 2, 1} {
		merged, conflicts := merge3(base, admin, usr, section)
		body, err := unflatten(merged)
		if err != nil {
			return MergeResult{}, err
		}
		t, err := m.decode(body)
		if err != nil {
			lastErr = errs.Invalid("", "", err.Error())
			continue
		}
		t.ID, t.Revision = cur.ID, cur.Revision
		out, err := m.update(ctx, user, *t, ActionMerge, &revisionDiff{Conflicts: conflicts, MergedUser: user.ID})
		if err == nil {
			return MergeResult{Task: out, Conflicts: conflicts}, nil
		}
		if !isInvalid(err) {
			return MergeResult{}, err
		}
		lastErr = err
	}
	return MergeResult{}, fmt.Errorf("task %q: the device user's edit cannot be merged: %w", id, lastErr)
}

func isInvalid(err error) bool {
	_, ok := err.(*ValidationError)
	if ok {
		return true
	}
	_, ok = err.(ValidationErrors)
	return ok
}
