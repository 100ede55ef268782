// Package memstore is a complete in-memory storage.Store, safe for
// concurrent use. It keeps per-task result counters up to date on every
// write, so statistics are O(number of states).
//
// Use it for tests, simulations and single-process hosts that do not need
// durability; use storage/sqlstore for anything that must survive a
// restart.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/benbjohnson/clock"
	"github.com/google/btree"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage"
)

var (
	_ storage.Store            = (*Store)(nil)
	_ scope.InventoryProvider  = (*Store)(nil)
	_ storage.UniqueNameLookup = (*Store)(nil)
)

// Store is the in-memory storage.Store. The zero value is not usable; call
// New.
type Store struct {
	// mu guards everything below. Result writes take it for the whole
	// batch; reads share it.
	mu     sync.RWMutex
	closed bool

	tasks  map[string]*storage.TaskRecord
	unique map[string]string // UniqueName -> task ID
	// order holds, per TaskOrder, the tasks ordered by (OrderKey, ID) in a
	// B-tree, so a page costs O(log n + page) and a write O(log n).
	order   map[storage.TaskOrder]*btree.BTreeG[indexEntry]
	revs    map[string][]storage.RevisionRecord
	runIDs  map[string]int64
	results map[string]*taskResults
	events  map[string]*taskEvents
	eventID int64
	state   map[string]*taskState
	stateID int64
	leases  map[string]*lease
	hier    map[string]*hierNode // hierarchy state by Node (hierarchy.go)
	clk     clock.Clock

	inv *inmem.Inventory
}

type indexEntry struct {
	key, id string
}

func entryLess(a, b indexEntry) bool {
	if a.key != b.key {
		return a.key < b.key
	}
	return a.id < b.id
}

var orders = []storage.TaskOrder{storage.OrderByName, storage.OrderByCreatedAt, storage.OrderByID}

func newOrderIndexes() map[storage.TaskOrder]*btree.BTreeG[indexEntry] {
	m := make(map[storage.TaskOrder]*btree.BTreeG[indexEntry], len(orders))
	for _, o := range orders {
		m[o] = btree.NewG(32, entryLess)
	}
	return m
}

func (s *Store) indexAdd(t *storage.TaskRecord) {
	for _, o := range orders {
		s.order[o].ReplaceOrInsert(indexEntry{storage.OrderKey(t, o), t.ID})
	}
}

func (s *Store) indexRemove(t *storage.TaskRecord) {
	for _, o := range orders {
		s.order[o].Delete(indexEntry{storage.OrderKey(t, o), t.ID})
	}
}

type taskResults struct {
	// slot maps the 64-bit hash of a device id to its row in rows (the
	// row's DeviceID confirms the match): one integer-keyed probe per
	// update, rows updated in place, no allocation per device. A device
	// whose hash collides with an earlier device's goes to overflow.
	slot     map[uint64]int32
	overflow map[string]int32
	rows     []storage.ResultRecord
	counts   map[string]int
	restart  int
	// sorted caches the device ids in order for ListResults; nil after a
	// new device was added.
	sorted []string
}

// hashSeed keys the device hashes of this process.
var hashSeed = maphash.MakeSeed()

func (tr *taskResults) find(device string) (int32, bool) {
	i, ok := tr.slot[maphash.String(hashSeed, device)]
	if !ok {
		return 0, false
	}
	if tr.rows[i].DeviceID == device {
		return i, true
	}
	i, ok = tr.overflow[device]
	return i, ok
}

// add appends a row for a device find did not find.
func (tr *taskResults) add(r storage.ResultRecord) {
	i := int32(len(tr.rows))
	h := maphash.String(hashSeed, r.DeviceID)
	if _, taken := tr.slot[h]; taken {
		if tr.overflow == nil {
			tr.overflow = map[string]int32{}
		}
		tr.overflow[r.DeviceID] = i
	} else {
		tr.slot[h] = i
	}
	tr.rows = append(tr.rows, r)
	tr.sorted = nil
}

type taskEvents struct {
	list eventList // ascending ID
	keys eventKeys
}

// Config configures a Store made by NewWith. The zero value is the
// default New uses.
type Config struct {
	// Clock is the clock leader leases are judged by when a caller passes
	// no Now (storage.LeaderParams); default the real clock.
	Clock clock.Clock
}

// New returns an empty Store with the default Config.
func New() *Store { return NewWith(Config{}) }

// NewWith returns an empty Store configured by cfg.
func NewWith(cfg Config) *Store {
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	return &Store{
		leases:  map[string]*lease{},
		clk:     cfg.Clock,
		tasks:   map[string]*storage.TaskRecord{},
		unique:  map[string]string{},
		order:   newOrderIndexes(),
		revs:    map[string][]storage.RevisionRecord{},
		runIDs:  map[string]int64{},
		results: map[string]*taskResults{},
		events:  map[string]*taskEvents{},
		state:   map[string]*taskState{},
		inv:     inmem.New(),
	}
}

// Inventory implements scope.InventoryProvider.
func (s *Store) Inventory() scope.Inventory { return s.inv }

// Devices returns the store's in-memory inventory for writing (PutGroups,
// PutDevices, DeleteDevice): the same inventory Inventory returns.
func (s *Store) Devices() *inmem.Inventory { return s.inv }

func errClosed() error { return fmt.Errorf("memstore: %w", storage.ErrClosed) }

// read takes the read lock, or returns ErrClosed without holding it.
func (s *Store) read() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed()
	}
	return nil
}

// pageLimit applies the contract's default page size.
func pageLimit(n int) int {
	if n <= 0 {
		return storage.DefaultListLimit
	}
	return n
}

func cloneTask(t *storage.TaskRecord) storage.TaskRecord {
	c := *t
	c.Body = bytes.Clone(t.Body)
	return c
}

func cloneRev(r storage.RevisionRecord) storage.RevisionRecord {
	r.Body = bytes.Clone(r.Body)
	r.Diff = bytes.Clone(r.Diff)
	return r
}

// Close implements storage.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

// CreateTask implements storage.TaskStore.
func (s *Store) CreateTask(ctx context.Context, p storage.CreateTaskParams) error {
	if p.Task.ID == "" {
		return fmt.Errorf("memstore: create task: empty id: %w", storage.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed()
	}
	if _, ok := s.tasks[p.Task.ID]; ok {
		return fmt.Errorf("memstore: task %q exists: %w", p.Task.ID, storage.ErrConflict)
	}
	if u := p.Task.UniqueName; u != "" {
		if _, ok := s.unique[u]; ok {
			return fmt.Errorf("memstore: task name %q is taken: %w", p.Task.Name, storage.ErrConflict)
		}
		s.unique[u] = p.Task.ID
	}
	t := cloneTask(&p.Task)
	s.tasks[t.ID] = &t
	s.indexAdd(&t)
	r := cloneRev(p.Revision)
	r.TaskID = t.ID
	s.revs[t.ID] = []storage.RevisionRecord{r}
	return nil
}

// TaskIDByUniqueName implements storage.UniqueNameLookup.
func (s *Store) TaskIDByUniqueName(ctx context.Context, name string) (string, error) {
	if err := s.read(); err != nil {
		return "", err
	}
	defer s.mu.RUnlock()
	if id, ok := s.unique[name]; ok {
		return id, nil
	}
	return "", fmt.Errorf("memstore: no task named %q: %w", name, storage.ErrNotFound)
}

// GetTask implements storage.TaskStore.
func (s *Store) GetTask(ctx context.Context, id string) (storage.TaskRecord, error) {
	if err := s.read(); err != nil {
		return storage.TaskRecord{}, err
	}
	defer s.mu.RUnlock()
	t, ok := s.tasks[id]
	if !ok {
		return storage.TaskRecord{}, fmt.Errorf("memstore: task %q: %w", id, storage.ErrNotFound)
	}
	return cloneTask(t), nil
}

// UpdateTask implements storage.TaskStore.
func (s *Store) UpdateTask(ctx context.Context, p storage.UpdateTaskParams) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed()
	}
	old, ok := s.tasks[p.Task.ID]
	if !ok {
		return fmt.Errorf("memstore: task %q: %w", p.Task.ID, storage.ErrNotFound)
	}
	if old.Revision != p.ExpectRevision {
		return fmt.Errorf("memstore: task %q is at revision %d, not %d: %w", p.Task.ID, old.Revision, p.ExpectRevision, storage.ErrConflict)
	}
	if u := p.Task.UniqueName; u != "" && u != old.UniqueName {
		if _, taken := s.unique[u]; taken {
			return fmt.Errorf("memstore: task name %q is taken: %w", p.Task.Name, storage.ErrConflict)
		}
	}
	if old.UniqueName != "" && old.UniqueName != p.Task.UniqueName {
		delete(s.unique, old.UniqueName)
	}
	if p.Task.UniqueName != "" {
		s.unique[p.Task.UniqueName] = p.Task.ID
	}
	t := cloneTask(&p.Task)
	s.indexRemove(old)
	s.tasks[t.ID] = &t
	s.indexAdd(&t)
	r := cloneRev(p.Revision)
	r.TaskID = t.ID
	s.revs[t.ID] = append(s.revs[t.ID], r)
	return nil
}

// DeleteTask implements storage.TaskStore.
func (s *Store) DeleteTask(ctx context.Context, p storage.DeleteTaskParams) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed()
	}
	t, ok := s.tasks[p.ID]
	if !ok {
		return fmt.Errorf("memstore: task %q: %w", p.ID, storage.ErrNotFound)
	}
	if p.ExpectRevision != 0 && t.Revision != p.ExpectRevision {
		return fmt.Errorf("memstore: task %q is at revision %d, not %d: %w", p.ID, t.Revision, p.ExpectRevision, storage.ErrConflict)
	}
	if t.UniqueName != "" {
		delete(s.unique, t.UniqueName)
	}
	s.indexRemove(t)
	delete(s.tasks, p.ID)
	delete(s.revs, p.ID)
	delete(s.runIDs, p.ID)
	delete(s.results, p.ID)
	delete(s.events, p.ID)
	delete(s.state, p.ID)
	return nil
}

// ListTasks implements storage.TaskStore.
func (s *Store) ListTasks(ctx context.Context, p storage.ListTasksParams) (storage.TaskPage, error) {
	if !storage.ValidOrder(p.Order) {
		return storage.TaskPage{}, fmt.Errorf("memstore: unknown order %q: %w", p.Order, storage.ErrInvalid)
	}
	order := p.Order
	if order == "" {
		order = storage.OrderByName
	}
	var after indexEntry
	if p.After != "" {
		var err error
		if after.key, after.id, err = storage.DecodeCursor(p.After); err != nil {
			return storage.TaskPage{}, err
		}
	}
	limit := pageLimit(p.Limit)
	if err := s.read(); err != nil {
		return storage.TaskPage{}, err
	}
	defer s.mu.RUnlock()
	idx := s.order[order]
	match := func(t *storage.TaskRecord) bool {
		return (p.Application == "" || t.Application == p.Application) &&
			(p.TaskType == "" || t.TaskType == p.TaskType) &&
			(p.Kind == "" || t.Kind == p.Kind) &&
			(p.GroupID == "" || t.GroupID == p.GroupID) &&
			(p.DeviceID == "" || t.DeviceID == p.DeviceID) &&
			(p.NameContains == "" || strings.Contains(t.SearchName, p.NameContains))
	}
	var page storage.TaskPage
	var last indexEntry
	take := func(e indexEntry) bool { // false: the page is full and another match exists
		t := s.tasks[e.id]
		if !match(t) {
			return true
		}
		if len(page.Tasks) == limit {
			page.Next = storage.EncodeCursor(last.key, last.id)
			return false
		}
		page.Tasks = append(page.Tasks, cloneTask(t))
		last = e
		return true
	}
	switch {
	case p.Descending && p.After == "":
		idx.Descend(take)
	case p.Descending:
		idx.DescendLessOrEqual(after, func(e indexEntry) bool {
			return e == after || take(e) // the cursor entry itself is not repeated
		})
	case p.After == "":
		idx.Ascend(take)
	default:
		idx.AscendGreaterOrEqual(after, func(e indexEntry) bool {
			return e == after || take(e)
		})
	}
	return page, nil
}

// ListRevisions implements storage.TaskStore.
func (s *Store) ListRevisions(ctx context.Context, p storage.ListRevisionsParams) ([]storage.RevisionRecord, error) {
	limit := pageLimit(p.Limit)
	if err := s.read(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []storage.RevisionRecord
	for _, r := range s.revs[p.TaskID] {
		if r.Number <= p.AfterNumber {
			continue
		}
		out = append(out, cloneRev(r))
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

// GetRevision implements storage.TaskStore.
func (s *Store) GetRevision(ctx context.Context, taskID string, n int64) (storage.RevisionRecord, error) {
	if err := s.read(); err != nil {
		return storage.RevisionRecord{}, err
	}
	defer s.mu.RUnlock()
	revs := s.revs[taskID]
	i, ok := slices.BinarySearchFunc(revs, n, func(r storage.RevisionRecord, n int64) int {
		switch {
		case r.Number < n:
			return -1
		case r.Number > n:
			return 1
		}
		return 0
	})
	if !ok {
		return storage.RevisionRecord{}, fmt.Errorf("memstore: task %q revision %d: %w", taskID, n, storage.ErrNotFound)
	}
	return cloneRev(revs[i]), nil
}

// AllocateRunID implements storage.TaskStore.
func (s *Store) AllocateRunID(ctx context.Context, taskID string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errClosed()
	}
	if _, ok := s.tasks[taskID]; !ok {
		return 0, fmt.Errorf("memstore: task %q: %w", taskID, storage.ErrNotFound)
	}
	s.runIDs[taskID]++
	return s.runIDs[taskID], nil
}

// UpsertResults implements storage.ResultStore.
func (s *Store) UpsertResults(ctx context.Context, p storage.UpsertResultsParams) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errClosed()
	}
	n := 0
	var tr *taskResults
	lastTask := ""
	for i := range p.Results {
		r := &p.Results[i]
		if tr == nil || r.TaskID != lastTask {
			if _, ok := s.tasks[r.TaskID]; !ok {
				tr, lastTask = nil, ""
				continue
			}
			tr = s.results[r.TaskID]
			if tr == nil {
				tr = &taskResults{slot: map[uint64]int32{}, counts: map[string]int{}}
				s.results[r.TaskID] = tr
			}
			lastTask = r.TaskID
		}
		if i, ok := tr.find(r.DeviceID); ok {
			cur := &tr.rows[i]
			if r.RunID < cur.RunID || (r.RunID == cur.RunID && r.Seq <= cur.Seq) {
				continue
			}
			tr.counts[cur.State]--
			if cur.RestartRequired {
				tr.restart--
			}
			*cur = *r
		} else {
			tr.add(*r)
		}
		tr.counts[r.State]++
		if r.RestartRequired {
			tr.restart++
		}
		n++
	}
	return n, nil
}

// GetResult implements storage.ResultStore.
func (s *Store) GetResult(ctx context.Context, taskID, deviceID string) (storage.ResultRecord, error) {
	if err := s.read(); err != nil {
		return storage.ResultRecord{}, err
	}
	defer s.mu.RUnlock()
	if tr := s.results[taskID]; tr != nil {
		if i, ok := tr.find(deviceID); ok {
			return tr.rows[i], nil
		}
	}
	return storage.ResultRecord{}, fmt.Errorf("memstore: result of task %q device %q: %w", taskID, deviceID, storage.ErrNotFound)
}

// ListResults implements storage.ResultStore.
func (s *Store) ListResults(ctx context.Context, p storage.ListResultsParams) ([]storage.ResultRecord, error) {
	limit := pageLimit(p.Limit)
	s.mu.RLock()
	tr := s.results[p.TaskID]
	if !s.closed && tr != nil && tr.sorted == nil {
		// Build the device order under the write lock, once per new device.
		s.mu.RUnlock()
		s.mu.Lock()
		if tr = s.results[p.TaskID]; tr != nil && tr.sorted == nil {
			ids := make([]string, 0, len(tr.rows))
			for _, r := range tr.rows {
				ids = append(ids, r.DeviceID)
			}
			slices.Sort(ids)
			tr.sorted = ids
		}
		s.mu.Unlock()
		s.mu.RLock()
		tr = s.results[p.TaskID]
	}
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed()
	}
	if tr == nil {
		return nil, nil
	}
	ids := tr.sorted
	if ids == nil { // a new device arrived between the locks: fall back
		for _, r := range tr.rows {
			ids = append(ids, r.DeviceID)
		}
		slices.Sort(ids)
	}
	i := 0
	if p.AfterDevice != "" {
		var found bool
		i, found = slices.BinarySearch(ids, p.AfterDevice)
		if found {
			i++
		}
	}
	var out []storage.ResultRecord
	for ; i < len(ids) && len(out) < limit; i++ {
		j, _ := tr.find(ids[i])
		r := tr.rows[j]
		if len(p.States) > 0 && !slices.Contains(p.States, r.State) {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// DueResults implements storage.ResultStore.
func (s *Store) DueResults(ctx context.Context, p storage.DueResultsParams) ([]storage.ResultRecord, error) {
	limit := pageLimit(p.Limit)
	if err := s.read(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []storage.ResultRecord
	for _, tr := range s.results {
		if tr.counts[p.State] == 0 {
			continue
		}
		for _, r := range tr.rows {
			if r.State == p.State && !r.DueAt.After(p.Before) {
				out = append(out, r)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if !a.DueAt.Equal(b.DueAt) {
			return a.DueAt.Before(b.DueAt)
		}
		if a.TaskID != b.TaskID {
			return a.TaskID < b.TaskID
		}
		return a.DeviceID < b.DeviceID
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// TaskStatistics implements storage.ResultStore.
func (s *Store) TaskStatistics(ctx context.Context, taskID string) (storage.Statistics, error) {
	if err := s.read(); err != nil {
		return storage.Statistics{}, err
	}
	defer s.mu.RUnlock()
	st := storage.Statistics{ByState: map[string]int{}}
	tr := s.results[taskID]
	if tr == nil {
		return st, nil
	}
	for k, v := range tr.counts {
		if v != 0 {
			st.ByState[k] = v
			st.Total += v
		}
	}
	st.RestartRequired = tr.restart
	return st, nil
}

// AppendEvents implements storage.EventStore.
func (s *Store) AppendEvents(ctx context.Context, p storage.AppendEventsParams) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errClosed()
	}
	n := 0
	for _, e := range p.Events {
		if _, ok := s.tasks[e.TaskID]; !ok {
			continue
		}
		te := s.events[e.TaskID]
		if te == nil {
			te = &taskEvents{}
			s.events[e.TaskID] = te
		}
		if e.Key != "" && !te.keys.add(&te.list, e.Key, s.eventID+1) {
			continue
		}
		s.eventID++
		e.ID = s.eventID
		te.list.append(e)
		n++
	}
	return n, nil
}

// ListEvents implements storage.EventStore.
func (s *Store) ListEvents(ctx context.Context, p storage.ListEventsParams) ([]storage.EventRecord, error) {
	limit := pageLimit(p.Limit)
	if err := s.read(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	te := s.events[p.TaskID]
	if te == nil {
		return nil, nil
	}
	var out []storage.EventRecord
	for i := te.list.search(p.AfterID + 1); i < te.list.len(); i++ {
		e := te.list.at(i)
		if (p.DeviceID != "" && e.DeviceID != p.DeviceID) ||
			(!p.From.IsZero() && e.At.Before(p.From)) ||
			(!p.To.IsZero() && !e.At.Before(p.To)) {
			continue
		}
		out = append(out, te.list.record(p.TaskID, e))
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

// PurgeEvents implements storage.EventStore.
func (s *Store) PurgeEvents(ctx context.Context, p storage.PurgeEventsParams) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errClosed()
	}
	te := s.events[p.TaskID]
	if te == nil {
		return 0, nil
	}
	// A purged event's Key stays reserved, so a late duplicate delivery
	// cannot bring it back into history.
	n := te.list.filter(func(e *storedEvent) bool {
		if e.At.Before(p.Before) {
			te.keys.purge(&te.list, e)
			return false
		}
		return true
	})
	return int64(n), nil
}
