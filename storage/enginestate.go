package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// EngineStateStore persists what the server runtime (task/engine) must
// remember across restarts and replicas: the activations it fired, the
// stop orders it gave. These records are not history: history retention
// (EventStore.PurgeEvents) and a task's history settings never touch
// them, and device input cannot reach them (devices write history events,
// never engine state, so a device event can never collide with a marker).
//
// # Retention
//
// A task's engine state is deleted with the task (DeleteTask), and
// otherwise only by PurgeEngineState, which the engine calls for its own
// records (see task/engine's package documentation for its rules).
type EngineStateStore interface {
	// PutEngineState stores records in one batch, atomically. A record
	// whose (TaskID, Kind, Key) is already stored is ignored, so the
	// first writer wins and a replayed write is harmless. Records of a
	// task that does not exist are ignored (the task was deleted) and not
	// counted. The store assigns ID (increasing in insertion order). It
	// returns how many were stored. An empty TaskID, Kind or Key, or one
	// longer than MaxEngineStateKey bytes, is ErrInvalid and nothing is
	// written.
	PutEngineState(ctx context.Context, p PutEngineStateParams) (int, error)

	// ListEngineState returns a task's records of p.Kind (every kind when
	// empty) in ascending ID order after p.AfterID, at most p.Limit (<= 0:
	// DefaultListLimit). An unknown task yields an empty list.
	ListEngineState(ctx context.Context, p ListEngineStateParams) ([]EngineStateRecord, error)

	// PurgeEngineState deletes a task's records of p.Kind (every kind when
	// empty) with At before p.Before, and returns how many were deleted.
	// An empty TaskID is ErrInvalid.
	PurgeEngineState(ctx context.Context, p PurgeEngineStateParams) (int64, error)
}

// MaxEngineStateKey is the longest Kind or Key of an EngineStateRecord,
// in bytes.
const MaxEngineStateKey = 256

// Engine state kinds written by task/engine. A Store treats Kind as an
// opaque string.
const (
	// EngineStateFire marks an activation of a server-run task as fired
	// (Key: the run id), so a restarted or second replica does not fire
	// it again.
	EngineStateFire = "fire"
	// EngineStateStop records a stop order for a task's runs (Key: the
	// order's time), so a restarted server keeps telling devices to stop
	// the runs it covers.
	EngineStateStop = "stop"
)

// EngineStateRecord is one record of the engine's memory.
type EngineStateRecord struct {
	// ID is assigned by the store, increasing in insertion order.
	ID     int64
	TaskID string
	// Kind says what the record is (EngineStateFire, EngineStateStop...).
	Kind string
	// Key identifies the record within its task and kind.
	Key string
	// RunID is the task run the record is about (0: none).
	RunID int64
	// At is when the engine wrote it (its clock, UTC).
	At time.Time
}

// PutEngineStateParams are the arguments of EngineStateStore.PutEngineState.
type PutEngineStateParams struct {
	Records []EngineStateRecord
}

// ListEngineStateParams are the arguments of
// EngineStateStore.ListEngineState.
type ListEngineStateParams struct {
	TaskID  string
	Kind    string
	AfterID int64
	Limit   int
}

// PurgeEngineStateParams are the arguments of
// EngineStateStore.PurgeEngineState.
type PurgeEngineStateParams struct {
	TaskID string
	Kind   string
	Before time.Time
}

// ValidateEngineState checks records against the PutEngineState contract;
// stores call it first and return its error (matching ErrInvalid).
func ValidateEngineState(recs []EngineStateRecord) error {
	var bad errs.ValidationErrors
	for i, r := range recs {
		f := fmt.Sprintf("records[%d]", i)
		if r.TaskID == "" {
			bad = append(bad, errs.Invalid(f+".task_id", "", "must not be empty"))
		}
		if r.Kind == "" || len(r.Kind) > MaxEngineStateKey {
			bad = append(bad, errs.Invalid(f+".kind", "", fmt.Sprintf("must be 1 to %d bytes", MaxEngineStateKey)))
		}
		if r.Key == "" || len(r.Key) > MaxEngineStateKey {
			bad = append(bad, errs.Invalid(f+".key", "", fmt.Sprintf("must be 1 to %d bytes", MaxEngineStateKey)))
		}
	}
	return bad.Err()
}
