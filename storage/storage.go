package storage

import (
	"context"
	"encoding/json"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// Sentinel errors. A Store must return an error for which errors.Is
// reports true against the sentinel named in each method's contract;
// wrapping is allowed and encouraged (fmt.Errorf("...: %w", ErrNotFound)).
var (
	// ErrNotFound: the addressed task, revision or result does not exist.
	ErrNotFound = errs.ErrNotFound
	// ErrConflict: an optimistic-concurrency check failed (the stored
	// revision is not the expected one), or a unique key is taken
	// (task id, UniqueName).
	ErrConflict = errs.ErrConflict
	// ErrRetryable: a transient failure (serialization failure, database
	// busy); the caller may retry the same call.
	ErrRetryable = errs.ErrRetryable
	// ErrClosed: the store was closed.
	ErrClosed = errs.ErrClosed
	// ErrInvalid: the params break the contract (empty id, negative limit).
	ErrInvalid = errs.ErrInvalid
)

// Store is the persistence contract of taskfleet. The task package performs
// every validation, default and authorization once, and hands the store
// complete records; a Store only persists and queries them.
//
// Every method must be safe for concurrent use by multiple goroutines (and,
// for SQL stores, by multiple processes sharing one database). Times in
// records are UTC with at most microsecond precision (the core truncates
// them); a Store returns them in UTC with the same value.
//
// Optional capabilities (UniqueNameLookup, Claimer) are separate
// interfaces detected with a type assertion; what the engine needs to be
// correct is required here.
type Store interface {
	TaskStore
	ResultStore
	EventStore
	EngineStateStore
	Leader
	// Close releases the store's resources. Calls after Close return an
	// error matching ErrClosed. Close is idempotent.
	Close() error
}

// TaskStore persists tasks and their numbered revisions.
type TaskStore interface {
	// CreateTask stores a new task and its first revision atomically.
	// It returns ErrConflict when a task with the same ID exists or when
	// Task.UniqueName is not empty and another task has the same
	// UniqueName. Params.Revision.Number must equal Params.Task.Revision.
	CreateTask(ctx context.Context, p CreateTaskParams) error

	// GetTask returns the task with the given ID, or ErrNotFound.
	GetTask(ctx context.Context, id string) (TaskRecord, error)

	// UpdateTask replaces a task and appends a revision atomically, if and
	// only if the stored task's Revision equals p.ExpectRevision.
	// It returns ErrNotFound when the task does not exist and ErrConflict
	// when the stored revision differs or the new UniqueName is taken. On
	// error nothing is written.
	UpdateTask(ctx context.Context, p UpdateTaskParams) error

	// DeleteTask removes a task with all its revisions, results, events
	// and engine state atomically, if its stored Revision equals p.ExpectRevision (0 means
	// any revision). ErrNotFound when the task does not exist, ErrConflict
	// when the revision differs.
	DeleteTask(ctx context.Context, p DeleteTaskParams) error

	// ListTasks returns tasks matching every non-zero filter field, ordered
	// by p.Order (byte order of the key, then of ID; OrderByName when
	// empty), at most p.Limit of them (p.Limit <= 0 means DefaultListLimit).
	// p.After is the Next of the previous page (see EncodeCursor); Next is
	// empty when no more records follow. An undecodable cursor is
	// ErrInvalid.
	ListTasks(ctx context.Context, p ListTasksParams) (TaskPage, error)

	// ListRevisions returns a task's revisions in ascending Number order,
	// starting after p.AfterNumber, at most p.Limit of them. A task
	// without revisions (or a deleted one) yields an empty list and no
	// error.
	ListRevisions(ctx context.Context, p ListRevisionsParams) ([]RevisionRecord, error)

	// GetRevision returns revision number n of a task, or ErrNotFound.
	GetRevision(ctx context.Context, taskID string, n int64) (RevisionRecord, error)

	// AllocateRunID returns the next run number of a task, starting at 1,
	// strictly increasing and never reused, also across processes.
	// ErrNotFound when the task does not exist.
	AllocateRunID(ctx context.Context, taskID string) (int64, error)
}

// ResultStore persists the per-device state of each task: one current
// result per (task, device).
type ResultStore interface {
	// UpsertResults writes per-device results in one batch, atomically.
	// For each record the stored result of (TaskID, DeviceID) is replaced
	// only when (RunID, Seq) of the new record is greater than the stored
	// pair (lexicographic order); an equal or older pair is ignored. So a
	// retried or reordered delivery never duplicates or regresses a
	// result. It returns how many records replaced or inserted a result.
	// Results for a task that does not exist are ignored (the task was
	// deleted while the device reported) and not counted.
	UpsertResults(ctx context.Context, p UpsertResultsParams) (int, error)

	// GetResult returns the current result of a device for a task, or
	// ErrNotFound.
	GetResult(ctx context.Context, taskID, deviceID string) (ResultRecord, error)

	// ListResults returns the results of a task ordered by DeviceID,
	// filtered by p.States when not empty, starting after p.AfterDevice,
	// at most p.Limit (<= 0: DefaultListLimit).
	ListResults(ctx context.Context, p ListResultsParams) ([]ResultRecord, error)

	// DueResults returns results in state p.State (typically "scheduled")
	// whose DueAt is not after p.Before (a zero DueAt is due), ordered by
	// DueAt then TaskID then DeviceID, at most p.Limit. It serves the
	// engine's due-run query.
	DueResults(ctx context.Context, p DueResultsParams) ([]ResultRecord, error)

	// TaskStatistics counts a task's current results by state. A task
	// without results (or an unknown task) yields zero counts.
	TaskStatistics(ctx context.Context, taskID string) (Statistics, error)
}

// EventStore persists task history events.
type EventStore interface {
	// AppendEvents stores events in one batch, atomically. An event whose
	// Key is not empty is stored at most once per task: a second event
	// with the same (TaskID, Key) is ignored, so at-least-once delivery
	// from devices never duplicates history. The store assigns ID
	// (increasing in insertion order). It returns how many were stored.
	AppendEvents(ctx context.Context, p AppendEventsParams) (int, error)

	// ListEvents returns a task's events with p.From <= At < p.To (zero
	// bounds are open), filtered by DeviceID when set, in ascending ID
	// order after p.AfterID, at most p.Limit.
	ListEvents(ctx context.Context, p ListEventsParams) ([]EventRecord, error)

	// PurgeEvents deletes a task's events with At before p.Before and
	// returns how many were deleted.
	PurgeEvents(ctx context.Context, p PurgeEventsParams) (int64, error)
}

// DefaultListLimit is the page size when a Limit is zero or negative.
const DefaultListLimit = 100

// MaxListLimit is the largest page a Store must serve; larger limits are
// reduced to it by the core before they reach the Store.
const MaxListLimit = 10000

// TaskRecord is a task as stored. Indexed columns are explicit fields; the
// full model is the Body (JSON written and read by the task package).
type TaskRecord struct {
	ID string
	// Name is the display name.
	Name string
	// SearchName is Name case-folded by the core; ListTasks matches
	// NameContains against it as a plain substring, so every backend
	// agrees on Unicode case-insensitive search.
	SearchName string
	// UniqueName, when not empty, is unique across all tasks (the core
	// derives it from the name and the name's namespace; for example local
	// tasks are unique per device).
	UniqueName  string
	Application string
	TaskType    string
	// Kind is "local", "group", "global" or "server".
	Kind string
	// GroupID is the administration group of a group task (security is
	// inherited from it); DeviceID the device of a local task.
	GroupID  string
	DeviceID string
	// Revision is the number of the latest revision (1 after create).
	Revision  int64
	Suspended bool
	CreatedAt time.Time
	UpdatedAt time.Time
	// Body is the complete task as JSON.
	Body json.RawMessage
}

// RevisionRecord is one numbered revision of a task.
type RevisionRecord struct {
	TaskID string
	Number int64
	Author string
	At     time.Time
	// Action says what made the revision: "create", "update", "rollback",
	// "merge", "copy", "import", "start_for_devices"...
	Action string
	// Body is the complete task as JSON after the change.
	Body json.RawMessage
	// Diff is the field-level diff against the previous revision, as JSON
	// written by the task package. Secrets never appear in it.
	Diff json.RawMessage
}

// ResultRecord is the current state of one device for one task.
type ResultRecord struct {
	TaskID   string
	DeviceID string
	// RunID is the task run this result belongs to (AllocateRunID), or 0
	// for the scheduled state before any run.
	RunID int64
	// Seq orders updates within a run (the sender's counter).
	Seq   int64
	State string
	// DueAt is when a scheduled run is due (zero when not scheduled).
	DueAt      time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	UpdatedAt  time.Time
	// Progress is 0..100.
	Progress int
	Message  string
	// RestartRequired is set when the device must restart to finish.
	RestartRequired bool
}

// EventRecord is one task history event.
type EventRecord struct {
	ID       int64
	TaskID   string
	DeviceID string
	RunID    int64
	At       time.Time
	// Level is "result", "progress" or "info" (the task's history setting
	// decides which are stored); Severity "info", "warning" or "error".
	Level    string
	Severity string
	Message  string
	// Key de-duplicates at-least-once deliveries (empty: no de-duplication).
	Key string
}

// Statistics counts a task's current results.
type Statistics struct {
	ByState         map[string]int
	Total           int
	RestartRequired int
}

// CreateTaskParams are the arguments of TaskStore.CreateTask.
type CreateTaskParams struct {
	Task     TaskRecord
	Revision RevisionRecord
}

// UpdateTaskParams are the arguments of TaskStore.UpdateTask.
type UpdateTaskParams struct {
	Task           TaskRecord
	ExpectRevision int64
	Revision       RevisionRecord
}

// DeleteTaskParams are the arguments of TaskStore.DeleteTask.
type DeleteTaskParams struct {
	ID             string
	ExpectRevision int64
}

// TaskOrder is a sort order of ListTasks.
type TaskOrder string

// The orders ListTasks supports.
const (
	OrderByName      TaskOrder = "name"       // Name, then ID
	OrderByCreatedAt TaskOrder = "created_at" // CreatedAt, then ID
	OrderByID        TaskOrder = "id"         // ID
)

// ListTasksParams are the arguments of TaskStore.ListTasks. Zero fields do
// not filter.
type ListTasksParams struct {
	Application string
	TaskType    string
	Kind        string
	GroupID     string
	DeviceID    string
	// NameContains keeps tasks whose SearchName contains it as a plain
	// substring (the core folds it the same way as SearchName).
	NameContains string
	Order        TaskOrder
	Descending   bool
	// After is the Next cursor of the previous page.
	After string
	Limit int
}

// TaskPage is one page of ListTasks.
type TaskPage struct {
	Tasks []TaskRecord
	// Next continues the listing; empty on the last page.
	Next string
}

// ListRevisionsParams are the arguments of TaskStore.ListRevisions.
type ListRevisionsParams struct {
	TaskID      string
	AfterNumber int64
	Limit       int
}

// UpsertResultsParams are the arguments of ResultStore.UpsertResults.
type UpsertResultsParams struct {
	Results []ResultRecord
}

// ListResultsParams are the arguments of ResultStore.ListResults.
type ListResultsParams struct {
	TaskID      string
	States      []string
	AfterDevice string
	Limit       int
}

// DueResultsParams are the arguments of ResultStore.DueResults.
type DueResultsParams struct {
	State  string
	Before time.Time
	Limit  int
}

// AppendEventsParams are the arguments of EventStore.AppendEvents.
type AppendEventsParams struct {
	Events []EventRecord
}

// ListEventsParams are the arguments of EventStore.ListEvents.
type ListEventsParams struct {
	TaskID   string
	DeviceID string
	From     time.Time
	To       time.Time
	AfterID  int64
	Limit    int
}

// PurgeEventsParams are the arguments of EventStore.PurgeEvents.
type PurgeEventsParams struct {
	TaskID string
	Before time.Time
}

// UniqueNameLookup is an optional interface of a Store that finds a task
// by its UniqueName without a scan; the core uses it to pick free names
// (imports, copies) when the store offers it.
type UniqueNameLookup interface {
	// TaskIDByUniqueName returns the ID of the task whose UniqueName is
	// name, or an error matching ErrNotFound.
	TaskIDByUniqueName(ctx context.Context, name string) (string, error)
}
