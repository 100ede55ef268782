package memstore

import (
	"context"
	"fmt"

	"github.com/taskfleet/taskfleet/storage"
)

// taskState is one task's engine state, in insertion (ID) order.
type taskState struct {
	recs []storage.EngineStateRecord
	keys map[[2]string]struct{} // (Kind, Key)
}

// PutEngineState implements storage.EngineStateStore.
func (s *Store) PutEngineState(ctx context.Context, p storage.PutEngineStateParams) (int, error) {
	if err := storage.ValidateEngineState(p.Records); err != nil {
		return 0, fmt.Errorf("memstore: put engine state: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errClosed()
	}
	n := 0
	for _, r := range p.Records {
		if _, ok := s.tasks[r.TaskID]; !ok {
			continue
		}
		ts := s.state[r.TaskID]
		if ts == nil {
			ts = &taskState{keys: map[[2]string]struct{}{}}
			s.state[r.TaskID] = ts
		}
		k := [2]string{r.Kind, r.Key}
		if _, dup := ts.keys[k]; dup {
			continue
		}
		ts.keys[k] = struct{}{}
		s.stateID++
		r.ID = s.stateID
		r.At = storage.UTC(r.At)
		ts.recs = append(ts.recs, r)
		n++
	}
	return n, nil
}

// ListEngineState implements storage.EngineStateStore.
func (s *Store) ListEngineState(ctx context.Context, p storage.ListEngineStateParams) ([]storage.EngineStateRecord, error) {
	limit := pageLimit(p.Limit)
	if err := s.read(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	ts := s.state[p.TaskID]
	if ts == nil {
		return nil, nil
	}
	var out []storage.EngineStateRecord
	for _, r := range ts.recs {
		if r.ID <= p.AfterID || (p.Kind != "" && r.Kind != p.Kind) {
			continue
		}
		out = append(out, r)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

// PurgeEngineState implements storage.EngineStateStore.
func (s *Store) PurgeEngineState(ctx context.Context, p storage.PurgeEngineStateParams) (int64, error) {
	if p.TaskID == "" {
		return 0, fmt.Errorf("memstore: purge engine state: task id must not be empty: %w", storage.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errClosed()
	}
	ts := s.state[p.TaskID]
	if ts == nil {
		return 0, nil
	}
	keep := ts.recs[:0]
	var n int64
	for _, r := range ts.recs {
		if (p.Kind == "" || r.Kind == p.Kind) && r.At.Before(p.Before) {
			delete(ts.keys, [2]string{r.Kind, r.Key})
			n++
			continue
		}
		keep = append(keep, r)
	}
	clear(ts.recs[len(keep):])
	ts.recs = keep
	return n, nil
}
