package inmem

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/taskfleet/taskfleet/scope"
)

var (
	_ scope.SelectionStore  = (*Inventory)(nil)
	_ scope.SelectionLookup = (*Inventory)(nil)
)

// savedSelections are an inventory's saved selections and their history,
// under their own lock (a selection write never waits for devices).
type savedSelections struct {
	mu      sync.Mutex
	current map[scope.SelectionID]scope.SavedSelection
	history map[scope.SelectionID][]scope.SelectionRevision
}

func (s *savedSelections) init() {
	if s.current == nil {
		s.current = map[scope.SelectionID]scope.SavedSelection{}
		s.history = map[scope.SelectionID][]scope.SelectionRevision{}
	}
}

// Selection implements scope.SelectionLookup.
func (inv *Inventory) Selection(ctx context.Context, id scope.SelectionID) (*scope.SavedSelection, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &inv.saved
	s.mu.Lock()
	defer s.mu.Unlock()
	sel, ok := s.current[id]
	if !ok {
		return nil, fmt.Errorf("inmem: selection %q: %w", id, scope.ErrNotFound)
	}
	return &sel, nil
}

// Selections implements scope.SelectionStore: every saved selection,
// sorted by id.
func (inv *Inventory) Selections(ctx context.Context) ([]scope.SavedSelection, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &inv.saved
	s.mu.Lock()
	out := make([]scope.SavedSelection, 0, len(s.current))
	for _, sel := range s.current {
		out = append(out, sel)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b scope.SavedSelection) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return out, nil
}

// PutSelection implements scope.SelectionStore.
func (inv *Inventory) PutSelection(ctx context.Context, p scope.PutSelectionParams) (scope.SavedSelection, error) {
	if err := ctx.Err(); err != nil {
		return scope.SavedSelection{}, err
	}
	if err := scope.ValidatePutSelection(p); err != nil {
		return scope.SavedSelection{}, err
	}
	s := &inv.saved
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	old, exists := s.current[p.ID]
	rev := scope.SelectionRevision{Selection: p.ID, Actor: p.Actor, At: p.At.UTC(), Name: p.Name, Expr: p.Expr}
	switch {
	case p.ExpectRevision == 0 && exists:
		return scope.SavedSelection{}, fmt.Errorf("inmem: selection %q exists (revision %d): %w", p.ID, old.Revision, scope.ErrConflict)
	case p.ExpectRevision == 0 && len(s.current) >= scope.MaxSavedSelections:
		return scope.SavedSelection{}, &scope.ValidationError{Field: "id", Value: string(p.ID), Reason: fmt.Sprintf("the inventory already holds %d selections (MaxSavedSelections)", scope.MaxSavedSelections)}
	case p.ExpectRevision == 0:
		rev.Action = scope.SelectionCreated
	case !exists:
		return scope.SavedSelection{}, fmt.Errorf("inmem: selection %q: %w", p.ID, scope.ErrNotFound)
	case old.Revision != p.ExpectRevision:
		return scope.SavedSelection{}, fmt.Errorf("inmem: selection %q is at revision %d, not %d: %w", p.ID, old.Revision, p.ExpectRevision, scope.ErrConflict)
	default:
		rev.Action, rev.Changed = scope.SelectionUpdated, scope.ChangedFields(old, p.Name, p.Expr)
	}
	// A re-created id continues the numbering of its history.
	rev.Number = int64(len(s.history[p.ID])) + 1
	sel := scope.SavedSelection{ID: p.ID, Name: p.Name, Expr: p.Expr, Revision: rev.Number, UpdatedAt: rev.At, UpdatedBy: p.Actor}
	s.current[p.ID] = sel
	s.history[p.ID] = append(s.history[p.ID], rev)
	return sel, nil
}

// DeleteSelection implements scope.SelectionStore.
func (inv *Inventory) DeleteSelection(ctx context.Context, p scope.DeleteSelectionParams) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := scope.ValidateDeleteSelection(p); err != nil {
		return err
	}
	seen, err := inv.Selection(ctx, p.ID)
	if err != nil {
		return err
	}
	if p.ExpectRevision != 0 && seen.Revision != p.ExpectRevision {
		return fmt.Errorf("inmem: selection %q is at revision %d, not %d: %w", p.ID, seen.Revision, p.ExpectRevision, scope.ErrConflict)
	}
	users, err := p.InUse.TasksUsingSelection(ctx, p.ID)
	if err != nil {
		return fmt.Errorf("inmem: delete selection %q: which tasks use it: %w", p.ID, err)
	}
	if len(users) > 0 {
		return &scope.SelectionInUseError{Selection: p.ID, Tasks: users}
	}
	s := &inv.saved
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.current[p.ID]
	switch {
	case !ok:
		return fmt.Errorf("inmem: selection %q: %w", p.ID, scope.ErrNotFound)
	case cur.Revision != seen.Revision:
		return fmt.Errorf("inmem: selection %q changed to revision %d while its use was checked: %w", p.ID, cur.Revision, scope.ErrConflict)
	}
	delete(s.current, p.ID)
	s.history[p.ID] = append(s.history[p.ID], scope.SelectionRevision{
		Selection: p.ID, Number: int64(len(s.history[p.ID])) + 1, Action: scope.SelectionDeleted,
		Actor: p.Actor, At: p.At.UTC(), Name: cur.Name, Expr: cur.Expr,
	})
	return nil
}

// SelectionHistory implements scope.SelectionStore.
func (inv *Inventory) SelectionHistory(ctx context.Context, p scope.SelectionHistoryParams) ([]scope.SelectionRevision, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit, err := scope.ValidateSelectionHistory(p)
	if err != nil {
		return nil, err
	}
	s := &inv.saved
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.history[p.ID]
	if !ok {
		return nil, fmt.Errorf("inmem: selection %q: %w", p.ID, scope.ErrNotFound)
	}
	out := []scope.SelectionRevision{}
	for _, r := range h {
		if r.Number > p.After && len(out) < limit {
			r.Changed = slices.Clone(r.Changed)
			out = append(out, r)
		}
	}
	return out, nil
}
