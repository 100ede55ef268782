// Package credentialstest provides an in-memory credentials.TaskAccounts for
// tests, examples and benchmarks, and RunTaskAccounts, the conformance
// suite every TaskAccounts implementation (the task package's) should pass.
package credentialstest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/taskfleet/taskfleet/credentials"
)

// MemTaskAccounts is an in-memory credentials.TaskAccounts, safe for
// concurrent use. The zero value is not usable; call NewMemTaskAccounts.
type MemTaskAccounts struct {
	mu     sync.Mutex
	tasks  map[string]credentials.TaskAccount
	byName map[string]map[string]struct{} // FoldAccountName -> non-local task ids
	// sorted caches byName's ids in order; it may hold ids removed since
	// (ListTasksByAccount skips them) and is rebuilt when an id is added.
	sorted map[string][]string
	writes int

	// BeforeSet, when set, runs at the start of SetTaskAccount without the
	// lock held; a non-nil error is returned as SetTaskAccount's error.
	// Tests use it to inject failures and concurrent edits.
	BeforeSet func(ctx context.Context, p credentials.SetTaskAccountParams) error
}

var _ credentials.TaskAccounts = (*MemTaskAccounts)(nil)

// NewMemTaskAccounts returns a store holding tasks.
func NewMemTaskAccounts(tasks ...credentials.TaskAccount) *MemTaskAccounts {
	m := &MemTaskAccounts{
		tasks:  make(map[string]credentials.TaskAccount, len(tasks)),
		byName: map[string]map[string]struct{}{},
		sorted: map[string][]string{},
	}
	for _, t := range tasks {
		m.Put(t)
	}
	return m
}

// Put inserts or replaces a task as is (test setup: no revision check).
func (m *MemTaskAccounts) Put(t credentials.TaskAccount) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unindex(t.TaskID)
	m.tasks[t.TaskID] = t
	m.index(t)
}

// Delete removes a task.
func (m *MemTaskAccounts) Delete(taskID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unindex(taskID)
	delete(m.tasks, taskID)
}

// Writes returns how many SetTaskAccount calls succeeded.
func (m *MemTaskAccounts) Writes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writes
}

func (m *MemTaskAccounts) index(t credentials.TaskAccount) {
	if t.Local || t.Account.Name == "" {
		return
	}
	k := credentials.FoldAccountName(t.Account.Name)
	if m.byName[k] == nil {
		m.byName[k] = map[string]struct{}{}
	}
	if _, ok := m.byName[k][t.TaskID]; !ok {
		m.byName[k][t.TaskID] = struct{}{}
		delete(m.sorted, k)
	}
}

func (m *MemTaskAccounts) unindex(id string) {
	old, ok := m.tasks[id]
	if !ok || old.Local || old.Account.Name == "" {
		return
	}
	delete(m.byName[credentials.FoldAccountName(old.Account.Name)], id)
}

// ListTasksByAccount implements credentials.TaskAccounts.
func (m *MemTaskAccounts) ListTasksByAccount(ctx context.Context, p credentials.ListTasksParams) ([]credentials.TaskAccount, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.Limit <= 0 {
		return nil, fmt.Errorf("credentialstest: limit %d: %w", p.Limit, credentials.ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := credentials.FoldAccountName(p.AccountName)
	ids, ok := m.sorted[k]
	if !ok {
		for id := range m.byName[k] {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		m.sorted[k] = ids
	}
	i := sort.SearchStrings(ids, p.After)
	if i < len(ids) && ids[i] == p.After {
		i++
	}
	out := make([]credentials.TaskAccount, 0, min(p.Limit, len(ids)-i))
	for ; i < len(ids) && len(out) < p.Limit; i++ {
		if _, ok := m.byName[k][ids[i]]; ok {
			out = append(out, m.tasks[ids[i]])
		}
	}
	return out, nil
}

// GetTaskAccount implements credentials.TaskAccounts.
func (m *MemTaskAccounts) GetTaskAccount(ctx context.Context, taskID string) (credentials.TaskAccount, error) {
	if err := ctx.Err(); err != nil {
		return credentials.TaskAccount{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tasks[taskID]
	if !ok {
		return credentials.TaskAccount{}, fmt.Errorf("credentialstest: task %q: %w", taskID, credentials.ErrNotFound)
	}
	return t, nil
}

// SetTaskAccount implements credentials.TaskAccounts.
func (m *MemTaskAccounts) SetTaskAccount(ctx context.Context, p credentials.SetTaskAccountParams) (int64, error) {
	if m.BeforeSet != nil {
		if err := m.BeforeSet(ctx, p); err != nil {
			return 0, err
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := p.Account.Validate(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tasks[p.TaskID]
	switch {
	case !ok:
		return 0, fmt.Errorf("credentialstest: task %q: %w", p.TaskID, credentials.ErrNotFound)
	case t.Local:
		return 0, fmt.Errorf("credentialstest: task %q is local: %w", p.TaskID, credentials.ErrInvalid)
	case t.Revision != p.ExpectedRevision:
		return 0, fmt.Errorf("credentialstest: task %q is at revision %d, not %d: %w", p.TaskID, t.Revision, p.ExpectedRevision, credentials.ErrConflict)
	}
	reindex := credentials.FoldAccountName(t.Account.Name) != credentials.FoldAccountName(p.Account.Name)
	if reindex {
		m.unindex(t.TaskID)
	}
	t.Account = p.Account
	t.Revision++
	m.tasks[t.TaskID] = t
	if reindex {
		m.index(t)
	}
	m.writes++
	return t.Revision, nil
}
