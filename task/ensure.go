package task

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ensureAttempts bounds Ensure's look-up and create rounds: each lost
// race means another caller created the task (found in the next round)
// or deleted it between the look-up and the read.
const ensureAttempts = 5

// Ensure returns the task named t.Name, creating it from t when there is
// none (create-or-get), so that a host's setup can run again against the
// same database. Names are unique as Create enforces them: compared
// case-insensitively, across all non-local tasks, and per device for
// local tasks (so t.Scope.Device is part of a local task's name).
//
// When the task exists, Ensure returns it as Get would (the actor needs
// read access) with created false, and does not modify it: t's other
// settings are neither compared nor validated nor stored; to change the
// task, call Update. The existing task must have t's Application and
// Type, else the error matches ErrConflict (a different task holds the
// name). When there is none, Ensure creates t exactly as Create does and
// returns it with created true.
//
// Ensure is safe against concurrent callers, in this process or in others
// sharing the store: when two create the same name at once, the store
// refuses one insert and the loser returns the winner's task, so both get
// the same task and exactly one sees created true.
//
// Errors: as Create and Get; ErrConflict when the name is held by a task
// of another type, or when the name keeps changing hands (a task created
// and deleted concurrently, repeatedly).
func (m *Manager) Ensure(ctx context.Context, actor Actor, t Task) (got *Task, created bool, err error) {
	if len(t.Name) > 4*MaxNameLength || !utf8.ValidString(t.Name) || strings.TrimSpace(t.Name) == "" {
		// No task can have this name: Create reports why, without a
		// store look-up of hostile input.
		out, err := m.Create(ctx, actor, t)
		return out, err == nil, err
	}
	for range ensureAttempts {
		id, err := m.taskIDByName(ctx, &t)
		switch {
		case err == nil:
			cur, err := m.Get(ctx, actor, id)
			if errors.Is(err, ErrNotFound) {
				continue // deleted since the look-up
			}
			if err != nil {
				return nil, false, err
			}
			if cur.Application != t.Application || cur.Type != t.Type {
				return nil, false, fmt.Errorf("task: the name %q is held by task %q of type %q/%q, not %q/%q: %w",
					t.Name, cur.ID, cur.Application, cur.Type, t.Application, t.Type, ErrConflict)
			}
			return cur, false, nil
		case !errors.Is(err, ErrNotFound):
			return nil, false, err
		}
		out, err := m.Create(ctx, actor, t)
		if err == nil {
			return out, true, nil
		}
		if !errors.Is(err, ErrConflict) {
			return nil, false, err
		}
		// Another caller took the name since the look-up: read its task.
	}
	return nil, false, fmt.Errorf("task: ensure %q: the name changed hands %d times: %w", t.Name, ensureAttempts, ErrConflict)
}
