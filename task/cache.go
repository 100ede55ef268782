package task

import (
	"context"
	"hash/maphash"
	"reflect"
	"sync"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
)

// DefaultCacheSize is the number of decoded tasks a Manager keeps when
// Config.CacheSize is zero.
const DefaultCacheSize = 1 << 17

// decodedCache keeps decoded tasks by id. An entry is used only while the
// stored record still has the revision, update time and body it was
// decoded from, and the registry has not changed since: every read still reads
// the stored record (so a change made by another replica on a shared SQL
// database is seen at once), but its JSON is decoded only once per
// revision. Cached tasks are shared and never modified; callers get deep
// copies (cloneTask).
type decodedCache struct {
	mu    sync.RWMutex
	max   int // <0: off
	tasks map[string]cacheEntry
}

type cacheEntry struct {
	rev  int64
	upd  time.Time
	gen  uint64 // registry generation
	body uint64 // hash of the stored body: a task deleted and created again under its id is not mistaken for the old one
	t    *Task
}

// bodySeed keys the body hashes of this process.
var bodySeed = maphash.MakeSeed()

func (c *decodedCache) get(rec *storage.TaskRecord, gen uint64) *Task {
	if c.max < 0 {
		return nil
	}
	c.mu.RLock()
	e, ok := c.tasks[rec.ID]
	c.mu.RUnlock()
	if !ok || e.rev != rec.Revision || !e.upd.Equal(rec.UpdatedAt) || e.gen != gen || e.body != maphash.Bytes(bodySeed, rec.Body) {
		return nil
	}
	return e.t
}

func (c *decodedCache) put(rec *storage.TaskRecord, gen uint64, t *Task) {
	if c.max < 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tasks == nil {
		c.tasks = make(map[string]cacheEntry, 1024)
	}
	if _, ok := c.tasks[rec.ID]; !ok && len(c.tasks) >= c.max {
		for id := range c.tasks { // evict one entry at random
			delete(c.tasks, id)
			break
		}
	}
	c.tasks[rec.ID] = cacheEntry{rev: rec.Revision, upd: rec.UpdatedAt, gen: gen, body: maphash.Bytes(bodySeed, rec.Body), t: t}
}

func (c *decodedCache) drop(id string) {
	c.mu.Lock()
	delete(c.tasks, id)
	c.mu.Unlock()
}

// decodeShared returns the decoded task of a stored record, decoded once
// per revision. The result is shared: callers must not modify it or hand
// it out (use cloneTask). A record that cannot be decoded returns a
// *DecodeError (and is not cached, so a migration hook or type registered
// later is tried at the next read).
func (m *Manager) decodeShared(rec *storage.TaskRecord) (*Task, error) {
	gen := m.reg.generation()
	if t := m.cache.get(rec, gen); t != nil {
		return t, nil
	}
	t, partial, err := m.decodeParts(rec.Body)
	if err != nil {
		if partial == nil {
			partial = stubTask(rec)
		}
		return nil, &undecodedTask{DecodeError: m.decodeError(rec, err), partial: partial}
	}
	m.cache.put(rec, gen, t)
	return t, nil
}

// warm decodes a record just written into the cache, so that the reads
// that follow find it decoded (decoding the stored body, not reusing the
// caller's value, keeps the cached task exactly what a read would
// decode).
//
// It returns the cached task (shared: never to be modified), or nil when
// the cache is off or the body does not decode.
func (m *Manager) warm(rec *storage.TaskRecord) *Task {
	if m.cache.max < 0 {
		return nil
	}
	t, err := m.decodeShared(rec)
	if err != nil {
		return nil
	}
	return t
}

// loadShared returns the current task, decoded once per revision. The
// result is shared: callers must not modify it or return it.
func (m *Manager) loadShared(ctx context.Context, id string) (*Task, error) {
	rec, err := m.store.GetTask(ctx, id)
	if err != nil {
		return nil, m.storeErr(err, "get task %q", id)
	}
	return m.decodeShared(&rec)
}

// stubTask is what the store's record tells of a task whose body is not
// even JSON. Its access list is unknown: it is given one that allows
// only System, so ACLAuthorizer lets no one else read or delete it.
func stubTask(rec *storage.TaskRecord) *Task {
	t := &Task{ID: rec.ID, Name: rec.Name, Application: rec.Application, Type: rec.TaskType, Revision: rec.Revision,
		Security: Security{ACL: []AccessEntry{{Principal: System.ID, Allow: []Permission{PermRead, PermModify, PermExecute, PermDelete}}}}}
	switch Kind(rec.Kind) {
	case Group:
		t.Scope = scope.Scope{Kind: scope.Group, Group: scope.GroupID(rec.GroupID)}
		t.Security = Security{}
	case Local:
		t.Scope = scope.Scope{Kind: scope.Local, Device: scope.DeviceID(rec.DeviceID)}
	case Server:
		t.Scope = scope.Scope{Kind: scope.Server}
	default:
		t.Scope = scope.Scope{Kind: scope.Devices}
	}
	return t
}

// cloneTask returns a deep copy of t: nothing of it (slices, maps,
// pointers, the settings value) is shared with t.
func cloneTask(t *Task) *Task {
	c := new(Task)
	deepCopy(reflect.ValueOf(c).Elem(), reflect.ValueOf(t).Elem(), 0)
	return c
}

// maxCopyDepth bounds deepCopy (settings decoded from JSON are trees, but
// a host's registered default could hold a cycle).
const maxCopyDepth = 64

// deepCopy sets dst, which must be settable, to a deep copy of src.
// Exported fields are copied deeply; unexported ones (time.Time's
// location, netip.Addr's zone, a credentials.Sealed's bytes) are
// immutable values and stay shared.
func deepCopy(dst, src reflect.Value, depth int) {
	p := planFor(src.Type())
	if depth > maxCopyDepth || !p.refs {
		dst.Set(src)
		return
	}
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		n := reflect.New(src.Type().Elem())
		deepCopy(n.Elem(), src.Elem(), depth+1)
		dst.Set(n)
	case reflect.Slice:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		n := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		if p.elemRefs {
			for i := range src.Len() {
				deepCopy(n.Index(i), src.Index(i), depth+1)
			}
		} else {
			reflect.Copy(n, src)
		}
		dst.Set(n)
	case reflect.Map:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		n := reflect.MakeMapWithSize(src.Type(), src.Len())
		et := src.Type().Elem()
		for it := src.MapRange(); it.Next(); {
			v := reflect.New(et).Elem()
			deepCopy(v, it.Value(), depth+1)
			n.SetMapIndex(it.Key(), v)
		}
		dst.Set(n)
	case reflect.Interface:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		v := reflect.New(src.Elem().Type()).Elem()
		deepCopy(v, src.Elem(), depth+1)
		dst.Set(v)
	case reflect.Struct:
		dst.Set(src)
		for _, i := range p.fields {
			deepCopy(dst.Field(i), src.Field(i), depth+1)
		}
	case reflect.Array:
		dst.Set(src)
		for i := range src.Len() {
			deepCopy(dst.Index(i), src.Index(i), depth+1)
		}
	default:
		dst.Set(src)
	}
}

// copyPlan is what deepCopy needs to know of a type, computed once.
type copyPlan struct {
	refs     bool  // values can share memory through an exported path
	elemRefs bool  // for slices and arrays: the elements can
	fields   []int // for structs: the exported fields that can
}

var copyPlans sync.Map // reflect.Type -> *copyPlan

func planFor(t reflect.Type) *copyPlan {
	if p, ok := copyPlans.Load(t); ok {
		return p.(*copyPlan)
	}
	// Provisional while computing: a recursive type (through a pointer,
	// which has refs anyway) sees refs true.
	copyPlans.Store(t, &copyPlan{refs: true})
	p := &copyPlan{}
	switch t.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Interface:
		p.refs = true
	case reflect.Slice:
		p.refs = true
		p.elemRefs = planFor(t.Elem()).refs
	case reflect.Array:
		p.elemRefs = planFor(t.Elem()).refs
		p.refs = p.elemRefs
	case reflect.Struct:
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() && planFor(f.Type).refs {
				p.fields = append(p.fields, i)
			}
		}
		p.refs = len(p.fields) > 0
	}
	copyPlans.Store(t, p)
	return p
}
