package scope

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// SelectionID identifies a saved device selection (see SavedSelection).
type SelectionID string

// Limits on saved selections, enforced by every SelectionStore.
const (
	// MaxSavedSelections is the most selections one store keeps; a
	// PutSelection creating one more is refused with ErrInvalid.
	MaxSavedSelections = 10_000
	// MaxSelectionNameLength is the longest selection name, in bytes.
	MaxSelectionNameLength = 1024
	// MaxActorLength is the longest actor of a selection change, in bytes.
	MaxActorLength = 256
	// MaxSelectionHistoryLimit is the most revisions one
	// SelectionHistory call returns (a zero Limit means this many).
	MaxSelectionHistoryLimit = 1000
)

// ErrConflict matches errors of a write that lost a race or is not
// allowed in the current state: a PutSelection whose ExpectRevision is
// not the stored revision, or a DeleteSelection of a selection in use
// (*SelectionInUseError).
var ErrConflict = errs.ErrConflict

// SavedSelection is one of "the existing device selections" of the product
// documentation: a named device selection stored beside the inventory. A
// task scope refers to it by id (Scope.SelectionID), so an edit of the
// selection applies to every task that refers to it: Resolve and Explain
// read the current expression each time.
type SavedSelection struct {
	// ID identifies the selection; chosen by the host, at most
	// MaxIDLength bytes.
	ID SelectionID `json:"id"`
	// Name is the display name ("Windows 11 devices"); required, at
	// most MaxSelectionNameLength bytes.
	Name string `json:"name"`
	// Expr is the CEL expression (see CompileSelection). It compiled
	// within MaxSelectionCost when it was saved.
	Expr string `json:"expr"`
	// Revision is 1 when the selection is created and grows by one with
	// every edit; pass it as PutSelectionParams.ExpectRevision to edit.
	Revision int64 `json:"revision"`
	// UpdatedAt is when the current revision was saved, in UTC.
	UpdatedAt time.Time `json:"updated_at"`
	// UpdatedBy is the actor who saved the current revision.
	UpdatedBy string `json:"updated_by"`
}

// SelectionAction is what a SelectionRevision did.
type SelectionAction string

// Selection actions.
const (
	SelectionCreated SelectionAction = "created"
	SelectionUpdated SelectionAction = "updated"
	SelectionDeleted SelectionAction = "deleted"
)

// SelectionRevision is one entry of a saved selection's history: who
// changed what, when. The history of a deleted selection is kept, ending
// with a SelectionDeleted entry; an id that is used again continues the
// numbering.
type SelectionRevision struct {
	Selection SelectionID `json:"selection"`
	// Number is the revision the change produced (the deletion gets the
	// next number too).
	Number int64           `json:"number"`
	Action SelectionAction `json:"action"`
	// Actor is PutSelectionParams.Actor or DeleteSelectionParams.Actor.
	Actor string `json:"actor"`
	// At is when the change was made, in UTC.
	At time.Time `json:"at"`
	// Name and Expr are the selection after the change (for a deletion:
	// as it was deleted).
	Name string `json:"name"`
	Expr string `json:"expr"`
	// Changed lists what an update changed: "name", "expr" (empty for a
	// creation or deletion, and for an update that saved the same values).
	Changed []string `json:"changed,omitempty"`
}

// PutSelectionParams creates or edits a saved selection.
type PutSelectionParams struct {
	ID   SelectionID
	Name string
	// Expr is compiled with CompileSelection (syntax, type bool, and the
	// MaxSelectionCost cost limit) before anything is stored.
	Expr string
	// ExpectRevision is 0 to create the selection (ErrConflict if the id
	// exists) or the revision being edited (ErrConflict if another edit
	// came first, ErrNotFound if there is no such selection).
	ExpectRevision int64
	// Actor names who makes the change, for the history; required, at
	// most MaxActorLength bytes.
	Actor string
	// At is when the change is made (from the host's injected clock);
	// required. It is stored in UTC.
	At time.Time
}

// DeleteSelectionParams deletes a saved selection.
type DeleteSelectionParams struct {
	ID SelectionID
	// ExpectRevision, when not 0, must be the stored revision
	// (ErrConflict otherwise).
	ExpectRevision int64
	// InUse is required: it reports the tasks that refer to the
	// selection (see SelectionUsers). The store refuses the deletion
	// with a *SelectionInUseError when it names any task.
	//
	// It is a check of the task store itself rather than a reference
	// count kept beside the selection, so it cannot drift when a task is
	// edited, deleted or imported by a path that forgets to count, and
	// the inventory and the task store need not share a database. The
	// store calls it before it takes its own lock (so InUse may use the
	// same database or inventory) and then deletes only if the selection
	// is still at the revision it checked (ErrConflict otherwise). A task
	// saved in the instant between the check and the deletion is not
	// seen; resolving it later fails with a *SelectionNotFoundError,
	// never with a silently empty scope.
	InUse SelectionUsers
	// Actor and At are recorded in the history as for PutSelectionParams.
	Actor string
	At    time.Time
}

// SelectionHistoryParams lists a selection's revisions in ascending order.
type SelectionHistoryParams struct {
	ID SelectionID
	// After skips revisions up to and including this number (paging).
	After int64
	// Limit is the most revisions returned: 0 means
	// MaxSelectionHistoryLimit, more is refused with ErrInvalid.
	Limit int
}

// SelectionUsers reports which tasks refer to a saved selection. The
// host implements it over its task store (task.Manager.TasksUsingSelection
// does), so DeleteSelection can refuse to delete a selection in use.
type SelectionUsers interface {
	// TasksUsingSelection returns the ids of the tasks whose scope
	// refers to id (at most a few; any non-empty answer refuses the
	// deletion).
	TasksUsingSelection(ctx context.Context, id SelectionID) ([]string, error)
}

// SelectionUsersFunc adapts a function to SelectionUsers.
type SelectionUsersFunc func(ctx context.Context, id SelectionID) ([]string, error)

// TasksUsingSelection calls f.
func (f SelectionUsersFunc) TasksUsingSelection(ctx context.Context, id SelectionID) ([]string, error) {
	return f(ctx, id)
}

// SelectionInUseError refuses the deletion of a saved selection that tasks
// refer to. It matches ErrConflict.
type SelectionInUseError struct {
	Selection SelectionID
	// Tasks are (some of) the tasks referring to it.
	Tasks []string
}

func (e *SelectionInUseError) Error() string {
	return fmt.Sprintf("selection %q is the scope of %d task(s) (%s): change their scope first", e.Selection, len(e.Tasks), strings.Join(clipList(e.Tasks, 5), ", "))
}

// Is makes a *SelectionInUseError match ErrConflict.
func (e *SelectionInUseError) Is(target error) bool { return target == ErrConflict }

func clipList(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	out := append([]string(nil), s[:n]...)
	return append(out, "...")
}

// SelectionLookup is an optional interface for an Inventory that stores
// saved selections: Resolve, Explain and ValidateWith use it for a scope
// with a SelectionID. A scope naming a selection fails against an
// inventory without it (ErrInvalid, field "selection_id").
type SelectionLookup interface {
	// Selection returns the current revision of a saved selection, or
	// an error matching ErrNotFound.
	Selection(ctx context.Context, id SelectionID) (*SavedSelection, error)
}

// SelectionStore is an inventory's store of saved selections (scope/inmem
// and storage/sqlstore implement it; scope/inventorytest checks the
// contract).
type SelectionStore interface {
	SelectionLookup
	// Selections returns every saved selection, sorted by id.
	Selections(ctx context.Context) ([]SavedSelection, error)
	// PutSelection validates p (ValidatePutSelection), then creates or
	// edits the selection and appends a revision to its history, in one
	// step. It returns the stored selection.
	PutSelection(ctx context.Context, p PutSelectionParams) (SavedSelection, error)
	// DeleteSelection deletes a selection no task refers to and appends
	// a SelectionDeleted revision. Errors: ErrNotFound; ErrConflict
	// (a *SelectionInUseError, or another revision); ErrInvalid (no
	// InUse, bad actor or time); an error from InUse, wrapped.
	DeleteSelection(ctx context.Context, p DeleteSelectionParams) error
	// SelectionHistory returns the revisions of a selection (also of a
	// deleted one), oldest first; ErrNotFound when there are none.
	SelectionHistory(ctx context.Context, p SelectionHistoryParams) ([]SelectionRevision, error)
}

// ValidatePutSelection checks p without a store: the id, name, actor and
// time are present and within their limits, the strings are valid UTF-8
// without NUL, and Expr has no NUL and compiles within the cost limit
// (field "expr").
// Stores call it before anything else.
func ValidatePutSelection(p PutSelectionParams) error {
	var bad ValidationErrors
	bad = append(bad, checkSelectionID(p.ID)...)
	bad = append(bad, checkText("name", p.Name, MaxSelectionNameLength, true)...)
	bad = append(bad, checkChange(p.ExpectRevision, p.Actor, p.At)...)
	if strings.ContainsRune(p.Expr, 0) {
		// CEL accepts a raw NUL inside a string literal; no store keeps it
		// (PostgreSQL text cannot hold one).
		bad = append(bad, errs.Invalid("expr", "", "must not contain NUL characters"))
	} else if _, err := compileCached(p.Expr); err != nil {
		for _, e := range flatten(err) {
			c := *e
			c.Field = "expr"
			bad = append(bad, &c)
		}
	}
	return bad.Err()
}

// ValidateDeleteSelection checks p without a store.
func ValidateDeleteSelection(p DeleteSelectionParams) error {
	var bad ValidationErrors
	bad = append(bad, checkSelectionID(p.ID)...)
	bad = append(bad, checkChange(p.ExpectRevision, p.Actor, p.At)...)
	if p.InUse == nil {
		bad = append(bad, errs.Invalid("in_use", "", "is required: the check of which tasks refer to the selection"))
	}
	return bad.Err()
}

// ValidateSelectionHistory checks p and returns the effective limit.
func ValidateSelectionHistory(p SelectionHistoryParams) (int, error) {
	var bad ValidationErrors
	bad = append(bad, checkSelectionID(p.ID)...)
	if p.After < 0 {
		bad = append(bad, errs.Invalid("after", fmt.Sprint(p.After), "must not be negative"))
	}
	limit := p.Limit
	switch {
	case limit == 0:
		limit = MaxSelectionHistoryLimit
	case limit < 0 || limit > MaxSelectionHistoryLimit:
		bad = append(bad, errs.Range("limit", limit, 0, MaxSelectionHistoryLimit))
	}
	return limit, bad.Err()
}

func checkSelectionID(id SelectionID) ValidationErrors {
	return checkText("id", string(id), MaxIDLength, true)
}

func checkText(field, v string, max int, required bool) ValidationErrors {
	switch {
	case v == "" && required:
		return ValidationErrors{errs.Invalid(field, "", "is required")}
	case len(v) > max:
		return ValidationErrors{errs.Invalid(field, clip(v), fmt.Sprintf("must be at most %d bytes", max))}
	case !utf8.ValidString(v) || strings.ContainsRune(v, 0):
		return ValidationErrors{errs.Invalid(field, "", "must be valid UTF-8 without NUL characters")}
	}
	return nil
}

func checkChange(expect int64, actor string, at time.Time) ValidationErrors {
	bad := checkText("actor", actor, MaxActorLength, true)
	if expect < 0 {
		bad = append(bad, errs.Invalid("expect_revision", fmt.Sprint(expect), "must not be negative"))
	}
	if at.IsZero() || at.Year() < 1 || at.Year() > 9999 {
		bad = append(bad, errs.Invalid("at", "", "is required: a time in the years 1 to 9999"))
	}
	return bad
}

// ChangedFields returns what an edit from old to the new name and
// expression changes ("name", "expr"), for SelectionRevision.Changed.
func ChangedFields(old SavedSelection, name, expr string) []string {
	var out []string
	if old.Name != name {
		out = append(out, "name")
	}
	if old.Expr != expr {
		out = append(out, "expr")
	}
	return out
}

// savedSelection looks up the selection a scope refers to.
func savedSelection(ctx context.Context, s Scope, inv Inventory) (*SavedSelection, error) {
	sl, ok := inv.(SelectionLookup)
	if !ok {
		return nil, errs.Invalid("selection_id", string(s.SelectionID), "the inventory stores no saved selections (scope.SelectionLookup)")
	}
	sel, err := sl.Selection(ctx, s.SelectionID)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, &SelectionNotFoundError{Selection: s.SelectionID, Err: err}
		}
		return nil, fmt.Errorf("scope: selection %q: %w", s.SelectionID, err)
	}
	return sel, nil
}

// SelectionNotFoundError is the error of Resolve, Explain and ValidateWith
// for a scope whose saved selection does not exist (it was never saved,
// or it was deleted while a task referring to it was being saved). It
// matches ErrNotFound and ErrInvalid.
type SelectionNotFoundError struct {
	Selection SelectionID
	Err       error // the inventory's error
}

func (e *SelectionNotFoundError) Error() string {
	return fmt.Sprintf("scope: selection_id %q: no such saved selection", e.Selection)
}

// Is makes the error match ErrNotFound and ErrInvalid.
func (e *SelectionNotFoundError) Is(target error) bool {
	return target == ErrNotFound || target == ErrInvalid
}

// Unwrap returns the inventory's error.
func (e *SelectionNotFoundError) Unwrap() error { return e.Err }

// label names a saved selection for an administrator.
func (sel *SavedSelection) label() string {
	return fmt.Sprintf("the selection %q (%s, revision %d)", sel.Name, sel.ID, sel.Revision)
}
