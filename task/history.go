package task

import (
	"context"
	"fmt"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
)

// Stores reports whether the task's history in the server database keeps
// events of level e: nothing when "store task history in the server
// database" is off (NoServerHistory), otherwise what the history level
// keeps (HistoryResults: only task execution results). Every history
// write, by the task package and by the engine, goes through it.
func (n Notifications) Stores(e EventLevel) bool {
	if _, stored := n.Retention(); !stored {
		return false
	}
	return n.Level().keeps(e)
}

// appendEvents stores events of one task, honouring its history
// settings. Failures are logged: an administrator's action (start, stop)
// is not undone because its history line could not be written.
func (m *Manager) appendEvents(ctx context.Context, t *Task, evs []storage.EventRecord) {
	_ = m.appendEventsFor(ctx, map[string]*Task{t.ID: t}, evs)
}

// appendEventsFor stores events of several tasks, dropping those their
// task's history level or "store in the server database" setting excludes.
// It returns the store's error (also logged).
func (m *Manager) appendEventsFor(ctx context.Context, tasks map[string]*Task, evs []storage.EventRecord) error {
	keep := evs[:0] // callers pass slices they own: filter in place
	for _, e := range evs {
		t := tasks[e.TaskID]
		if t == nil {
			continue
		}
		if !t.Notifications.Stores(EventLevel(e.Level)) {
			continue
		}
		keep = append(keep, e)
	}
	if len(keep) == 0 {
		return nil
	}
	if _, err := m.store.AppendEvents(ctx, storage.AppendEventsParams{Events: keep}); err != nil {
		m.log.Error().Err(err).Int("events", len(keep)).Msg("task history events were not stored")
		return err
	}
	return nil
}

// recordEvents (Runtime.RecordEvents) stores task events reported by devices or the engine
// (progress, information, warnings). Events whose level the task's history
// setting excludes are dropped; a non-empty key de-duplicates redelivered
// events. It returns how many were stored.
//
// Errors: ErrInvalid (naming the index of each bad event).
func (m *Manager) recordEvents(ctx context.Context, events []EventInput) (int, error) {
	var bad ValidationErrors
	now := m.now()
	recs := make([]storage.EventRecord, 0, len(events))
	for i, e := range events {
		f := fmt.Sprintf("events[%d]", i)
		switch {
		case e.TaskID == "":
			bad = append(bad, errs.Invalid(f+".task_id", "", "is required"))
		case e.Level != EventResult && e.Level != EventProgress && e.Level != EventInfo:
			bad = append(bad, errs.Invalid(f+".level", string(e.Level), "must be one of: result, progress, info"))
		case e.Severity != SeverityInfo && e.Severity != SeverityWarning && e.Severity != SeverityError:
			bad = append(bad, errs.Invalid(f+".severity", string(e.Severity), "must be one of: info, warning, error"))
		case len(e.Message) > MaxResultMessage:
			bad = append(bad, errs.Invalid(f+".message", "", fmt.Sprintf("must be at most %d bytes", MaxResultMessage)))
		}
		at := e.At
		if at.IsZero() {
			at = now
		}
		recs = append(recs, storage.EventRecord{TaskID: e.TaskID, DeviceID: string(e.DeviceID), RunID: e.RunID, At: storage.UTC(at), Level: string(e.Level), Severity: string(e.Severity), Message: e.Message, Key: e.Key})
	}
	if err := bad.Err(); err != nil {
		return 0, err
	}
	tasks := map[string]*Task{}
	for _, r := range recs {
		if _, ok := tasks[r.TaskID]; !ok {
			t, err := m.loadShared(ctx, r.TaskID)
			if err != nil {
				t = nil
			}
			tasks[r.TaskID] = t
		}
	}
	keep := recs[:0]
	for _, r := range recs {
		t := tasks[r.TaskID]
		if t == nil {
			continue
		}
		if t.Notifications.Stores(EventLevel(r.Level)) {
			keep = append(keep, r)
		}
	}
	if len(keep) == 0 {
		return 0, nil
	}
	n, err := m.store.AppendEvents(ctx, storage.AppendEventsParams{Events: keep})
	if err != nil {
		return n, m.storeErr(err, "record events")
	}
	return n, nil
}

// EventInput is an event reported to RecordEvents.
type EventInput struct {
	// TaskID is the task the event belongs to.
	TaskID string
	// DeviceID is the device it happened on ("" for the task itself).
	DeviceID scope.DeviceID
	// RunID is the run it belongs to (0: none).
	RunID int64
	// At is when it happened (default: now).
	At time.Time
	// Level decides whether the task's history level keeps the event.
	Level EventLevel
	// Severity is how the event list marks it.
	Severity Severity
	// Message describes the event (at most MaxResultMessage bytes).
	Message string
	// Key de-duplicates redelivered events (empty: no de-duplication).
	Key string
}

// HistoryParams filter and page task history.
type HistoryParams struct {
	// Device keeps only the events of one device (empty: all).
	Device scope.DeviceID
	// From and To keep events with From <= At < To (zero: unbounded).
	From, To time.Time
	// After is the ID of the last event of the previous page.
	After int64
	// Limit is the page size (0: the store's default, at most
	// storage.MaxListLimit).
	Limit int
}

// History returns a task's events in the order they were stored.
//
// Errors: ErrNotFound, ErrPermission, ErrInvalid.
func (m *Manager) History(ctx context.Context, actor Actor, id string, p HistoryParams) ([]Event, error) {
	if _, err := m.Get(ctx, actor, id); err != nil {
		return nil, err
	}
	if p.Limit < 0 || p.Limit > storage.MaxListLimit {
		return nil, errs.Range("limit", p.Limit, 0, storage.MaxListLimit)
	}
	recs, err := m.store.ListEvents(ctx, storage.ListEventsParams{TaskID: id, DeviceID: string(p.Device), From: storage.UTC(p.From), To: storage.UTC(p.To), AfterID: p.After, Limit: p.Limit})
	if err != nil {
		return nil, m.storeErr(err, "history of task %q", id)
	}
	out := make([]Event, len(recs))
	for i, r := range recs {
		out[i] = Event{ID: r.ID, TaskID: r.TaskID, DeviceID: scope.DeviceID(r.DeviceID), RunID: r.RunID, At: r.At, Level: EventLevel(r.Level), Severity: Severity(r.Severity), Message: r.Message}
	}
	return out, nil
}

// PurgeReport says what PurgeHistory deleted.
type PurgeReport struct {
	// Tasks is how many tasks were purged.
	Tasks int
	// Events is how many events were deleted.
	Events int64
	// Undecodable is how many tasks were skipped because their stored
	// body cannot be decoded (see DecodeError).
	Undecodable int
}

// purgeHistory (Runtime.PurgeHistory) deletes every task's events older than the task's own
// retention ("Store in the Administration Server database for N days"),
// and all events of tasks that do not store history on the server. The
// engine calls it on a schedule; hosts without the engine call it
// themselves (daily is enough).
func (m *Manager) purgeHistory(ctx context.Context) (PurgeReport, error) {
	now := m.now()
	var rep PurgeReport
	p := storage.ListTasksParams{Order: storage.OrderByID, Limit: 1000}
	for {
		page, err := m.store.ListTasks(ctx, p)
		if err != nil {
			return rep, m.storeErr(err, "purge history")
		}
		for i := range page.Tasks {
			rec := &page.Tasks[i]
			t, err := m.decodeShared(rec)
			if err != nil {
				// Its retention is unknown: keep its events, and go on
				// with the other tasks.
				rep.Undecodable++
				m.log.Error().Err(err).Str("task", rec.ID).Msg("task history not purged: the stored task cannot be decoded")
				continue
			}
			cutoff := now.Add(time.Nanosecond) // no server history: everything
			if keep, stored := t.Notifications.Retention(); stored {
				cutoff = now.Add(-keep)
			}
			n, err := m.store.PurgeEvents(ctx, storage.PurgeEventsParams{TaskID: t.ID, Before: cutoff})
			if err != nil {
				return rep, m.storeErr(err, "purge history of task %q", t.ID)
			}
			rep.Tasks++
			rep.Events += n
		}
		if page.Next == "" {
			break
		}
		p.After = page.Next
	}
	if rep.Events > 0 {
		m.log.Info().Int64("events", rep.Events).Int("tasks", rep.Tasks).Msg("task history purged")
	}
	return rep, nil
}
