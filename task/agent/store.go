package agent

import (
	"context"
	"sync"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/task/transport"
)

// LocalTask is a task as the agent keeps it, with its local schedule state.
type LocalTask struct {
	// Def is the task as the server last delivered it.
	Def transport.Definition
	// Transient marks a task the server runs (device selections, started
	// by StartRun): the agent keeps it, without evaluating its schedule,
	// to remember which runs it did, until the server withdraws it.
	Transient bool
	// ReceivedAt is when this agent first received the task, and SentAt
	// when the server sent it (the message's SentAt, zero if it carried
	// none): the device was visible for the task from the earlier of the
	// two (activations before that are missed).
	ReceivedAt time.Time
	SentAt     time.Time
	// Cursor: every activation at or before it has been handled.
	Cursor time.Time
	// LastManualDone is the newest manual run id handled.
	LastManualDone int64
	// Done lists recent run ids handled (newest last, bounded), so a
	// repeated StartRun is not run twice.
	Done []int64
	// Queue holds starts received but not begun.
	Queue []transport.Start
	// Waiting is a start that found the task's application not running
	// while the task runs missed tasks: it begins the next time the
	// application runs (checked every RetryInterval, and at once after
	// Agent.ApplicationStarted). A newer start replaces it (the replaced
	// one is recorded missed).
	Waiting *transport.Start
	// Running is the run in progress, if any.
	Running *RunState
	// Slot is the device's place in the task's automatic randomized delay
	// (nil: plain random offset).
	Slot *transport.Slot
	// Control is the order (a task revision) of the newest PauseRun or
	// ResumeRun applied, and Held what it said: the task is suspended.
	// Whichever of Control and the definition's revision is newer decides
	// whether the task is suspended on this device.
	Control int64
	// Held: see Control.
	Held bool

	// nextDue caches the next activation's start (not stored).
	nextDue time.Time
	nextOK  bool
	// appCheck is when Waiting's application is checked next (not
	// stored; zero: at the next visit).
	appCheck time.Time
	// spareRun is a RunState no longer in use, kept by the copy it
	// belongs to (the agent's or MemStore's, never shared between them)
	// for the next run (not stored).
	spareRun *RunState
	// idx is the task's place in the agent's order (and wakes) as of its
	// last rebuild (not stored; trusted only where order[idx] is the
	// task).
	idx int
}

// RunState is a run in progress.
type RunState struct {
	// RunID identifies the run.
	RunID int64
	// At is the run's nominal start (the activation).
	At time.Time
	// Due is when it was due (At plus the randomized delay).
	Due time.Time
	// StartedAt is when the Executor started it.
	StartedAt time.Time
	// Manual is true for a start by an administrator.
	Manual bool
	// Seq is the last result seq sent for the run.
	Seq int64
	// RestartAt is the pending forced restart (restart policy), and
	// RequiredAt when it became required; Prompts counts prompts shown.
	RequiredAt time.Time
	RestartAt  time.Time
	// NextPrompt is when the restart prompt is shown next.
	NextPrompt time.Time
	// Prompts counts the restart prompts shown.
	Prompts int
	// Executing: the Executor has the run and has not called done yet.
	Executing bool
	// Paused: the executor paused the run (the task was suspended) at
	// PausedAt; PausedFor is the time it spent paused before, which the
	// task's maximum run time does not count.
	Paused bool
	// PausedAt is when the run was paused (see Paused).
	PausedAt time.Time
	// PausedFor is the time spent paused before (see Paused).
	PausedFor time.Duration
}

// Store is the agent's local store: the tasks delivered to its device and
// the durable outbox. Implementations must be safe for concurrent use; the
// agent calls them with its own lock held. MemStore keeps everything in
// memory; agentsqlite.Store (agentsqlite.Open) survives agent restarts.
// agenttest.RunStore is the conformance suite.
type Store interface {
	// Tasks returns every stored task, in any order.
	Tasks(ctx context.Context) ([]LocalTask, error)
	// PutTask inserts or replaces a task by Def.Task.ID.
	PutTask(ctx context.Context, t LocalTask) error
	// DeleteTask removes a task; a missing task is not an error.
	DeleteTask(ctx context.Context, id string) error
	// Enqueue appends m to the outbox. A message whose Key is already in
	// the outbox is ignored; an empty Key is an ErrInvalid error.
	Enqueue(ctx context.Context, m transport.Message) error
	// Outbox returns the queued messages in the order they were queued.
	Outbox(ctx context.Context) ([]transport.Message, error)
	// Remove deletes acknowledged messages by key; unknown keys are
	// ignored.
	Remove(ctx context.Context, keys []string) error
	// Meta returns the small named value name (the zero values when it
	// was never set), used for the "updates downloaded" state.
	Meta(ctx context.Context, name string) (time.Time, int64, error)
	// SetMeta sets the named value name.
	SetMeta(ctx context.Context, name string, t time.Time, n int64) error

	// Close releases the store; later calls fail with ErrClosed.
	Close() error
}

// MemStore is an in-memory Store. It survives an Agent being replaced
// (simulating a restart) but not the process.
type MemStore struct {
	mu sync.Mutex
	// tasks holds the store's own copies, by pointer: PutTask overwrites
	// one in place (one map lookup, no copy of the task out of the map).
	tasks map[string]*LocalTask
	// outbox maps the keys waiting for acknowledgement to the order of
	// their queue entry (messages are stored once, in queue: a map
	// value of a Message's size would be allocated on every Enqueue).
	outbox map[string]int64
	// queue holds the outbox in enqueue order; entries whose key was
	// removed (or re-enqueued later) are dropped lazily, by Outbox and
	// by Remove (see there), so reading the outbox needs no sort.
	queue  []outboxEntry
	order  int64
	meta   map[string]metaValue
	closed bool
}

type outboxEntry struct {
	m     transport.Message
	order int64
}

type metaValue struct {
	t time.Time
	n int64
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{tasks: map[string]*LocalTask{}, outbox: map[string]int64{}, meta: map[string]metaValue{}}
}

func (s *MemStore) check() error {
	if s.closed {
		return errs.ErrClosed
	}
	return nil
}

// Tasks implements Store.
func (s *MemStore) Tasks(context.Context) ([]LocalTask, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return nil, err
	}
	out := make([]LocalTask, 0, len(s.tasks))
	for _, t := range s.tasks {
		out = append(out, cloneTask(*t))
	}
	return out, nil
}

func cloneTask(t LocalTask) LocalTask {
	t.Done = append([]int64(nil), t.Done...)
	t.Queue = append([]transport.Start(nil), t.Queue...)
	if t.Running != nil {
		r := *t.Running
		t.Running = &r
	}
	t.spareRun = nil
	return t
}

// PutTask implements Store.
func (s *MemStore) PutTask(_ context.Context, t LocalTask) error {
	return s.putTask(&t)
}

// putTask is PutTask from *t, which it does not change or keep: the
// agent's save on a MemStore (Agent.mem) copies the task once, not twice
// (into the argument, then into the store's copy).
func (s *MemStore) putTask(t *LocalTask) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return err
	}
	// The stored copy's slices and run state belong to the store (Tasks
	// returns clones): copy into them rather than allocate new ones.
	old := s.tasks[t.Def.Task.ID]
	if old == nil {
		c := cloneTask(*t)
		s.tasks[t.Def.Task.ID] = &c
		return nil
	}
	done := copyInto(old.Done, t.Done)
	queue := copyInto(old.Queue, t.Queue)
	// The stored run state is the store's: updated in place, kept
	// as a spare when the run ends, reused when the next one begins.
	spare, run := old.spareRun, old.Running
	if t.Running != nil {
		if run == nil {
			run, spare = spare, nil
			if run == nil {
				run = new(RunState)
			}
		}
		*run = *t.Running
	} else if run != nil {
		spare, run = run, nil
	}
	*old = *t
	old.Done, old.Queue, old.Running, old.spareRun = done, queue, run, spare
	return nil
}

// copyInto returns a copy of src, in dst's array when it is large enough
// (empty, keeping dst's array, for an empty src).
func copyInto[T any](dst, src []T) []T {
	if len(src) == 0 {
		// Keep the array for the next copy (a task's queue empties
		// and fills again with every run); Tasks clones empty as nil.
		clear(dst)
		return dst[:0]
	}
	return append(dst[:0], src...)
}

// DeleteTask implements Store.
func (s *MemStore) DeleteTask(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return err
	}
	delete(s.tasks, id)
	return nil
}

// Enqueue implements Store.
func (s *MemStore) Enqueue(_ context.Context, m transport.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return err
	}
	if m.Key == "" {
		return errs.Invalid("key", "", "an outbox message needs an idempotency key")
	}
	if _, ok := s.outbox[m.Key]; ok {
		return nil
	}
	s.order++
	s.outbox[m.Key] = s.order
	s.queue = append(s.queue, outboxEntry{m, s.order})
	return nil
}

// Outbox implements Store.
func (s *MemStore) Outbox(context.Context) ([]transport.Message, error) {
	return s.appendOutbox(nil)
}

// outboxAppender is a Store that appends its outbox to a caller's slice,
// so the agent's flush reuses one buffer instead of a new slice each time.
type outboxAppender interface {
	appendOutbox(dst []transport.Message) ([]transport.Message, error)
}

// appendOutbox appends the queued messages to dst, in the order they were
// queued.
func (s *MemStore) appendOutbox(dst []transport.Message) ([]transport.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return nil, err
	}
	out := dst
	if out == nil {
		out = make([]transport.Message, 0, len(s.outbox))
	}
	live := s.queue[:0]
	for _, e := range s.queue {
		if order, ok := s.outbox[e.m.Key]; ok && order == e.order {
			live = append(live, e)
			out = append(out, e.m)
		}
	}
	clear(s.queue[len(live):])
	s.queue = live
	return out, nil
}

// outboxEmpty reports whether no message waits for acknowledgement: on a
// MemStore (Agent.mem) an acknowledgement of the last message ends the
// outbox's retries at once (rather than at a retry that finds nothing to
// send).
func (s *MemStore) outboxEmpty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.outbox) == 0
}

// Remove implements Store.
func (s *MemStore) Remove(_ context.Context, keys []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return err
	}
	for _, k := range keys {
		delete(s.outbox, k)
	}
	// Removed entries are dropped from the queue here too, not only when
	// the outbox is read (an agent that sends what it enqueued does not
	// read it back): at once when the outbox is empty, otherwise once
	// they are most of the queue.
	switch {
	case len(s.outbox) == 0:
		clear(s.queue)
		s.queue = s.queue[:0]
	case len(s.queue) > 2*len(s.outbox)+16:
		s.compact()
	}
	return nil
}

// compact drops the queue's entries whose key was removed (or enqueued
// again later), keeping the order of the others.
func (s *MemStore) compact() {
	live := s.queue[:0]
	for _, e := range s.queue {
		if order, ok := s.outbox[e.m.Key]; ok && order == e.order {
			live = append(live, e)
		}
	}
	clear(s.queue[len(live):])
	s.queue = live
}

// Meta implements Store.
func (s *MemStore) Meta(_ context.Context, name string) (time.Time, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return time.Time{}, 0, err
	}
	v := s.meta[name]
	return v.t, v.n, nil
}

// SetMeta implements Store.
func (s *MemStore) SetMeta(_ context.Context, name string, t time.Time, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(); err != nil {
		return err
	}
	s.meta[name] = metaValue{t, n}
	return nil
}

// Close implements Store.
func (s *MemStore) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

var _ Store = (*MemStore)(nil)
