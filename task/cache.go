package task

import (
	"context"
	"sync"
)

// decodedCacheSize bounds the decoded-task cache (tasks, not bytes).
const decodedCacheSize = 4096

// decodedCache keeps decoded tasks by id and revision for the Manager's
// own read-only use on hot paths (RecordResults, RecordEvents): the stored
// record is still read every time, so a change is seen at once, but its
// JSON is decoded only when the revision moved. Cached tasks are never
// handed to callers, who may modify what they get.
type decodedCache struct {
	mu    sync.Mutex
	tasks map[string]*Task
}

// loadShared returns the current task, decoded once per revision. The
// result is shared: callers must not modify it or return it.
func (m *Manager) loadShared(ctx context.Context, id string) (*Task, error) {
	rec, err := m.store.GetTask(ctx, id)
	if err != nil {
		return nil, m.storeErr(err, "get task %q", id)
	}
	c := &m.cache
	c.mu.Lock()
	t, ok := c.tasks[id]
	c.mu.Unlock()
	if ok && t.Revision == rec.Revision {
		return t, nil
	}
	t, err = m.decode(rec.Body)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.tasks == nil || len(c.tasks) >= decodedCacheSize {
		c.tasks = make(map[string]*Task, 64)
	}
	c.tasks[id] = t
	c.mu.Unlock()
	return t, nil
}
