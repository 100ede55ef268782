package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/taskfleet/taskfleet/scope"
)

var (
	_ scope.SelectionStore  = (*Inventory)(nil)
	_ scope.SelectionLookup = (*Inventory)(nil)
)

// Saved selections (scope.SelectionStore) live in the tables selections
// (the current revision of each) and selection_revisions (the history,
// kept after a deletion), schema version 6. Every write is one
// transaction: the selection row and its history row commit together.
// Concurrent edits of one selection are decided by the revision: an
// UPDATE ... WHERE revision = ExpectRevision and the history's primary
// key (selection_id, number) let exactly one win; the others get
// ErrConflict. Times keep microsecond precision and come back in UTC.

const selectionCols = `id, name, expr, revision, updated_at, updated_by`

func scanSelection(row interface{ Scan(...any) error }) (scope.SavedSelection, error) {
	var sel scope.SavedSelection
	var id string
	var at dbTime
	if err := row.Scan(&id, &sel.Name, &sel.Expr, &sel.Revision, &at, &sel.UpdatedBy); err != nil {
		return scope.SavedSelection{}, err
	}
	sel.ID, sel.UpdatedAt = scope.SelectionID(id), at.T
	return sel, nil
}

// Selection implements scope.SelectionLookup: the current revision of a
// saved selection, or an error matching ErrNotFound.
func (inv *Inventory) Selection(ctx context.Context, id scope.SelectionID) (*scope.SavedSelection, error) {
	s := inv.store()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	sel, err := scanSelection(s.r.QueryRowContext(ctx, s.r.Rebind(`SELECT `+selectionCols+` FROM selections WHERE id = ?`), string(id)))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: selection %q: %w", id, mapErr(err))
	}
	return &sel, nil
}

// Selections implements scope.SelectionStore: every saved selection,
// sorted by id (at most scope.MaxSavedSelections).
func (inv *Inventory) Selections(ctx context.Context) ([]scope.SavedSelection, error) {
	s := inv.store()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, s.r.Rebind(`SELECT `+selectionCols+` FROM selections ORDER BY id LIMIT ?`), scope.MaxSavedSelections)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: selections: %w", mapErr(err))
	}
	defer rows.Close()
	out := []scope.SavedSelection{}
	for rows.Next() {
		sel, err := scanSelection(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: selections: %w", mapErr(err))
		}
		out = append(out, sel)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: selections: %w", mapErr(err))
	}
	return out, nil
}

// PutSelection implements scope.SelectionStore.
func (inv *Inventory) PutSelection(ctx context.Context, p scope.PutSelectionParams) (scope.SavedSelection, error) {
	if err := scope.ValidatePutSelection(p); err != nil {
		return scope.SavedSelection{}, err
	}
	s := inv.store()
	at := p.At.UTC().Truncate(time.Microsecond) // microseconds, as stored
	var out scope.SavedSelection
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		old, err := scanSelection(tx.QueryRowContext(ctx, tx.Rebind(`SELECT `+selectionCols+` FROM selections WHERE id = ?`), string(p.ID)))
		exists := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var last int64
		if err := tx.GetContext(ctx, &last, tx.Rebind(`SELECT COALESCE(MAX(number), 0) FROM selection_revisions WHERE selection_id = ?`), string(p.ID)); err != nil {
			return err
		}
		action, changed := scope.SelectionCreated, []string(nil)
		switch {
		case p.ExpectRevision == 0 && exists:
			return fmt.Errorf("it exists (revision %d): %w", old.Revision, ErrConflict)
		case p.ExpectRevision == 0:
			var n int
			if err := tx.GetContext(ctx, &n, `SELECT COUNT(*) FROM selections`); err != nil {
				return err
			}
			if n >= scope.MaxSavedSelections {
				return &scope.ValidationError{Field: "id", Value: string(p.ID), Reason: fmt.Sprintf("the inventory already holds %d selections (MaxSavedSelections)", scope.MaxSavedSelections)}
			}
			_, err = tx.ExecContext(ctx, tx.Rebind(`INSERT INTO selections (`+selectionCols+`) VALUES (?, ?, ?, ?, ?, ?)`),
				string(p.ID), p.Name, p.Expr, last+1, s.tv(at), p.Actor)
		case !exists:
			return fmt.Errorf("no such selection: %w", ErrNotFound)
		case old.Revision != p.ExpectRevision:
			return fmt.Errorf("it is at revision %d, not %d: %w", old.Revision, p.ExpectRevision, ErrConflict)
		default:
			action, changed = scope.SelectionUpdated, scope.ChangedFields(old, p.Name, p.Expr)
			var res sql.Result
			res, err = tx.ExecContext(ctx, tx.Rebind(`UPDATE selections SET name = ?, expr = ?, revision = ?, updated_at = ?, updated_by = ? WHERE id = ? AND revision = ?`),
				p.Name, p.Expr, last+1, s.tv(at), p.Actor, string(p.ID), p.ExpectRevision)
			if err == nil {
				if n, _ := res.RowsAffected(); n != 1 {
					return fmt.Errorf("another edit came first: %w", ErrConflict)
				}
			}
		}
		if err != nil {
			return err
		}
		if err := s.insertSelectionRevision(ctx, tx, scope.SelectionRevision{
			Selection: p.ID, Number: last + 1, Action: action, Actor: p.Actor, At: at, Name: p.Name, Expr: p.Expr, Changed: changed,
		}); err != nil {
			return err
		}
		out = scope.SavedSelection{ID: p.ID, Name: p.Name, Expr: p.Expr, Revision: last + 1, UpdatedAt: at, UpdatedBy: p.Actor}
		return nil
	})
	if err != nil {
		return scope.SavedSelection{}, fmt.Errorf("sqlstore: put selection %q: %w", p.ID, err)
	}
	return out, nil
}

func (s *Store) insertSelectionRevision(ctx context.Context, tx *sqlx.Tx, r scope.SelectionRevision) error {
	_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO selection_revisions (selection_id, number, action, actor, at, name, expr, changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
		string(r.Selection), r.Number, string(r.Action), r.Actor, s.tv(r.At), r.Name, r.Expr, strings.Join(r.Changed, ","))
	return err
}

// DeleteSelection implements scope.SelectionStore. p.InUse runs before
// the transaction (so it may query this store); the row is deleted only
// if it is still at the revision that was checked.
func (inv *Inventory) DeleteSelection(ctx context.Context, p scope.DeleteSelectionParams) error {
	if err := scope.ValidateDeleteSelection(p); err != nil {
		return err
	}
	seen, err := inv.Selection(ctx, p.ID)
	if err != nil {
		return err
	}
	if p.ExpectRevision != 0 && seen.Revision != p.ExpectRevision {
		return fmt.Errorf("sqlstore: delete selection %q: it is at revision %d, not %d: %w", p.ID, seen.Revision, p.ExpectRevision, ErrConflict)
	}
	users, err := p.InUse.TasksUsingSelection(ctx, p.ID)
	if err != nil {
		return fmt.Errorf("sqlstore: delete selection %q: which tasks use it: %w", p.ID, err)
	}
	if len(users) > 0 {
		return &scope.SelectionInUseError{Selection: p.ID, Tasks: users}
	}
	s := inv.store()
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM selections WHERE id = ? AND revision = ?`), string(p.ID), seen.Revision)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("it was changed or deleted while its use was checked: %w", ErrConflict)
		}
		return s.insertSelectionRevision(ctx, tx, scope.SelectionRevision{
			Selection: p.ID, Number: seen.Revision + 1, Action: scope.SelectionDeleted, Actor: p.Actor,
			At: p.At.UTC().Truncate(time.Microsecond), Name: seen.Name, Expr: seen.Expr,
		})
	})
	if err != nil {
		return fmt.Errorf("sqlstore: delete selection %q: %w", p.ID, err)
	}
	return nil
}

// SelectionHistory implements scope.SelectionStore.
func (inv *Inventory) SelectionHistory(ctx context.Context, p scope.SelectionHistoryParams) ([]scope.SelectionRevision, error) {
	limit, err := scope.ValidateSelectionHistory(p)
	if err != nil {
		return nil, err
	}
	s := inv.store()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	var any int
	if err := s.r.GetContext(ctx, &any, s.r.Rebind(`SELECT COUNT(*) FROM selection_revisions WHERE selection_id = ?`), string(p.ID)); err != nil {
		return nil, fmt.Errorf("sqlstore: selection history %q: %w", p.ID, mapErr(err))
	}
	if any == 0 {
		return nil, fmt.Errorf("sqlstore: selection history %q: %w", p.ID, ErrNotFound)
	}
	rows, err := s.r.QueryContext(ctx, s.r.Rebind(`SELECT selection_id, number, action, actor, at, name, expr, changed FROM selection_revisions
 WHERE selection_id = ? AND number > ? ORDER BY number LIMIT ?`), string(p.ID), p.After, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: selection history %q: %w", p.ID, mapErr(err))
	}
	defer rows.Close()
	out := []scope.SelectionRevision{}
	for rows.Next() {
		var r scope.SelectionRevision
		var id, action, changed string
		var at dbTime
		if err := rows.Scan(&id, &r.Number, &action, &r.Actor, &at, &r.Name, &r.Expr, &changed); err != nil {
			return nil, fmt.Errorf("sqlstore: selection history %q: %w", p.ID, mapErr(err))
		}
		r.Selection, r.Action, r.At = scope.SelectionID(id), scope.SelectionAction(action), at.T
		if changed != "" {
			r.Changed = strings.Split(changed, ",")
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: selection history %q: %w", p.ID, mapErr(err))
	}
	return out, nil
}
