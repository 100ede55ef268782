package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Replica defaults.
const (
	// DefaultLeaseTTL is how long a replica's claim on due starts and its
	// leader lease last without renewal (judged by the database's clock).
	DefaultLeaseTTL = 30 * time.Second
	// DefaultClaimBatch is how many due starts one claim takes.
	DefaultClaimBatch = 2000
	// DefaultDispatchWorkers is how many store connections dispatch at
	// once; MaxDispatchWorkers is the most a Config may ask for.
	DefaultDispatchWorkers = 2
	MaxDispatchWorkers     = 16
	// LeaderLease is the name of the engine's leader lease.
	LeaderLease = "taskfleet/engine"
)

// replicaOwner returns cfg.ReplicaID or a random id for this process.
func replicaOwner(id string) string {
	if id != "" {
		return id
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "replica-" + hex.EncodeToString(b[:])
}

// claimer returns the store's claim layer when replicas are on.
func (s *Server) claimer() storage.Claimer {
	if s.cfg.SingleReplica {
		return nil
	}
	c, _ := s.cfg.Store.(storage.Claimer)
	return c
}

// ErrOtherReplica: another server replica holds the leader lease on a
// store without storage.Claimer, where only one replica may dispatch.
// Errors of type *ReplicaError match it.
var ErrOtherReplica = errors.New("engine: another replica leads on a store without storage.Claimer")

// ReplicaError is returned by Open and Tick when this replica finds
// another one leading on a store that cannot share dispatch (no
// storage.Claimer): rather than dispatch twice, it refuses to run.
type ReplicaError struct {
	// Replica is this server's ReplicaID; Leader the one holding the lease.
	Replica, Leader string
}

// Error implements error.
func (e *ReplicaError) Error() string {
	return fmt.Sprintf("engine: replica %q cannot run beside replica %q: the store has no storage.Claimer, so only the leader may dispatch "+
		"(share a store with storage.Claimer, such as sqlstore, or run one server with a stable Config.ReplicaID)", e.Replica, e.Leader)
}

// Is reports whether target is ErrOtherReplica.
func (e *ReplicaError) Is(target error) bool { return target == ErrOtherReplica }

// leaseNow is the Now of the engine's lease calls: its Clock's time with
// Config.EngineClockLeases, else nil (the store's clock judges).
func (s *Server) leaseNow() *time.Time {
	if !s.cfg.EngineClockLeases {
		return nil
	}
	t := s.clk.Now().UTC()
	return &t
}

// leader reports whether this replica may do the singleton duties now
// (fire server-run activations, purge history, and on a store without
// storage.Claimer dispatch at all). The leader renews its lease when
// LeaseTTL/4 has passed since its last renewal, not at every Tick (each
// renewal is a store write); a replica that does not lead asks at every
// Tick. A replica that cannot reach the store does not lead. On a store
// without storage.Claimer, another replica holding the lease is an error
// (*ReplicaError): the engine never falls back silently to a path that
// would dispatch twice.
func (s *Server) leader(ctx context.Context) (bool, error) {
	if s.cfg.SingleReplica {
		s.lead.leading = true
		return true, nil
	}
	began := s.clk.Now()
	if s.lead.leading && !began.Before(s.lead.renewedAt) && began.Sub(s.lead.renewedAt) < s.cfg.LeaseTTL/4 {
		// Renewed less than LeaseTTL/4 ago: still held for at least
		// three quarters of LeaseTTL, so this Tick does not write.
		return true, nil
	}
	got, err := s.cfg.Store.AcquireLeader(ctx, storage.LeaderParams{Name: LeaderLease, Owner: s.lead.owner, TTL: s.cfg.LeaseTTL, Now: s.leaseNow()})
	s.storeCall(ctx, "AcquireLeader", began)
	s.lead.renewedAt = time.Time{}
	if err == nil && got.Held {
		s.lead.renewedAt = began // the lease runs from no earlier than this
	}
	if err != nil {
		if s.lead.leading {
			s.log.Warn().Str("replica", s.lead.owner).Msg("engine: leader lease lost: the store cannot be reached")
		}
		s.log.Error().Err(err).Msg("engine: leader lease")
		s.lead.leading = false
		return false, nil
	}
	switch {
	case got.Held && !s.lead.leading:
		s.log.Info().Str("replica", s.lead.owner).Int64("epoch", got.Epoch).Msg("engine: leader lease taken")
	case !got.Held && s.lead.leading:
		s.log.Warn().Str("replica", s.lead.owner).Str("leader", got.Owner).Msg("engine: leader lease lost to another replica")
	}
	s.lead.leading = got.Held
	if !got.Held && s.claimer() == nil {
		return false, &ReplicaError{Replica: s.lead.owner, Leader: got.Owner}
	}
	return got.Held, nil
}

// releaseLeader gives this replica's leader lease up (Close): it is
// renewed for one nanosecond, so it has expired by the time another
// replica asks for it. The storage contract has no separate release call;
// a renewal by its holder is the one change of a lease it allows.
func (s *Server) releaseLeader(ctx context.Context) {
	if s.cfg.SingleReplica || !s.lead.leading {
		return
	}
	s.lead.leading = false
	if _, err := s.cfg.Store.AcquireLeader(ctx, storage.LeaderParams{Name: LeaderLease, Owner: s.lead.owner, TTL: time.Nanosecond, Now: s.leaseNow()}); err != nil {
		s.log.Error().Err(err).Msg("engine: release the leader lease")
		return
	}
	s.log.Info().Str("replica", s.lead.owner).Msg("engine: leader lease released")
}

// taskFor returns the state of a task, loading it through the Manager
// when another replica created it after this one opened, or changed it
// (the claim carries the task's revision in the store).
func (s *Server) taskFor(ctx context.Context, id string, rev int64, now time.Time) *taskState {
	if ts := s.cat.tasks[id]; ts != nil && ts.t.Revision >= rev {
		return ts
	}
	t, err := s.m.Get(ctx, task.System, id)
	if err != nil {
		if errors.Is(err, task.ErrUndecodable) {
			s.stats.Undecodable++
			s.met.undecodable.Add(ctx, 1)
		}
		if !errors.Is(err, task.ErrNotFound) {
			s.log.Error().Err(err).Str("task", id).Msg("engine: load task for a claimed start")
		}
		return s.cat.tasks[id]
	}
	ts := s.load(ctx, t, now)
	s.dev.invalidate()
	return ts
}

// dispatchTTL is the lease of a dispatched start that no device answered
// yet: the replica renews it at every resend (each RetryInterval), so
// another replica takes it over LeaseTTL after the replica stopped.
func (s *Server) dispatchTTL() time.Duration { return s.cfg.RetryInterval + s.cfg.LeaseTTL }

// dispatchClaimed dispatches the due scheduled starts from the store in
// batches of ClaimBatch (growing while they come back full, see
// Config.ClaimBatch; called with s.mu held; it releases the lock during
// the store calls, so device messages answering earlier batches are
// taken meanwhile): DispatchWorkers goroutines each dispatch batches, every
// batch claimed, marked dispatched (pending) and written to the dispatch
// ledger in one atomic store call, and this goroutine sends them. Every
// LeaseTTL the leader also takes over the dispatched starts of replicas
// whose leases expired (dead or stalled) and resends them.
func (s *Server) dispatchClaimed(ctx context.Context, c storage.Claimer, now time.Time) {
	p := storage.DispatchParams{Owner: s.lead.owner, FromState: string(task.Scheduled), State: string(task.Pending),
		Seq: transport.SeqDispatched, At: now.UTC(), Before: now, TTL: s.dispatchTTL(), Limit: s.cfg.ClaimBatch, Now: s.leaseNow()}
	// One batch first; the parallel workers start only when it came back
	// full (more is due), so an idle Tick costs one store call.
	s.mu.Unlock()
	began := s.clk.Now()
	first, err := c.DispatchDue(ctx, p)
	s.storeCall(ctx, "DispatchDue", began)
	if err == nil && len(first) > 0 && s.lead.afterClaim != nil {
		s.lead.afterClaim() // tests: stall or die after the dispatch, before the sends
	}
	s.mu.Lock()
	if err != nil {
		s.log.Error().Err(err).Msg("engine: dispatch due starts")
		first = nil
	}
	// Sent at the time they went out (a fan-out takes a while), so their
	// resends and lease renewals count from then.
	s.sendClaimed(ctx, first, s.clk.Now(), false)
	workers := s.cfg.DispatchWorkers
	if err != nil || len(first) < p.Limit {
		workers = 0
	}
	batches := make(chan []storage.Claim, max(workers, 1))
	var wg sync.WaitGroup
	var stop atomic.Bool // a worker found the queue drained or failed
	for range workers {
		wg.Go(func() {
			// A backlog (the first claim came back full: a start on many
			// devices): with the default ClaimBatch each claim takes
			// twice as many as the last, up to storage.MaxListLimit, so
			// a fan-out of 100,000 starts takes a dozen turns at the
			// store's writer, not fifty, while device results compete
			// for it.
			p := p
			for !stop.Load() {
				if s.lead.growClaims {
					p.Limit = min(2*p.Limit, storage.MaxListLimit)
				}
				began := s.clk.Now()
				claims, err := c.DispatchDue(ctx, p)
				s.storeCall(ctx, "DispatchDue", began)
				if err != nil {
					s.log.Error().Err(err).Msg("engine: dispatch due starts")
					stop.Store(true) // nothing changed in the store: the next Tick tries again
					return
				}
				if len(claims) > 0 {
					batches <- claims
				}
				if len(claims) < p.Limit {
					stop.Store(true)
					return
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(batches)
	}()
	s.mu.Unlock()
	for claims := range batches {
		if s.lead.afterClaim != nil {
			s.lead.afterClaim()
		}
		s.mu.Lock()
		s.sendClaimed(ctx, claims, s.clk.Now(), false)
		s.mu.Unlock()
	}
	s.mu.Lock()
	if !s.lead.leading || now.Before(s.lead.nextStale) {
		return // the sweep is a singleton duty: it scans the pending results
	}
	s.lead.nextStale = now.Add(s.cfg.LeaseTTL)
	for {
		s.mu.Unlock()
		began := s.clk.Now()
		claims, err := c.ClaimStale(ctx, storage.StaleParams{Owner: s.lead.owner, State: string(task.Pending), Seq: transport.SeqDispatched, TTL: s.dispatchTTL(), Limit: s.cfg.ClaimBatch, Now: s.leaseNow()})
		s.storeCall(ctx, "ClaimStale", began)
		s.mu.Lock()
		if err != nil {
			s.log.Error().Err(err).Msg("engine: take over expired dispatches")
			return
		}
		if len(claims) == 0 {
			return
		}
		s.sendClaimed(ctx, claims, now, true)
		if len(claims) < s.cfg.ClaimBatch {
			return
		}
	}
}

// sendClaimed sends the starts of dispatched claims and keeps them for
// resending until their devices answer.
//
// A stale claim (takeover) of a start this replica already holds for the
// same run is its own: its lease expired because this replica's Tick
// lagged (a long fan-out under load), not because it died. It keeps the
// dispatch under the new epoch and lease, and neither counts it taken
// over nor sends it again (it is resent on its own schedule).
func (s *Server) sendClaimed(ctx context.Context, claims []storage.Claim, now time.Time, takeover bool) {
	took := 0
	defer func() {
		if took > 0 {
			s.log.Info().Str("replica", s.lead.owner).Int("starts", took).Msg("engine: took over dispatched starts of a replica whose lease expired")
		}
	}()
	for _, cl := range claims {
		if takeover {
			if cur := s.disp.pending[dkey{cl.TaskID, scope.DeviceID(cl.DeviceID)}]; cur != nil && cur.epoch > 0 && cur.start.RunID == cl.RunID {
				cur.epoch = cl.Epoch
				s.stats.Reclaimed++
				continue
			}
			took++
		}
		ts := s.taskFor(ctx, cl.TaskID, cl.TaskRevision, now)
		if ts == nil {
			// Deleted after the dispatch: its results are deleted with it.
			continue
		}
		st := transport.Start{TaskID: cl.TaskID, RunID: cl.RunID, At: cl.DueAt, Due: cl.DueAt}
		if ts.lastFire != nil && ts.lastFire.RunID == cl.RunID {
			st = *ts.lastFire
			st.Due = cl.DueAt
		} else if ts.manual != nil && ts.manual.RunID == cl.RunID {
			st = *ts.manual
			st.Due = cl.DueAt
		}
		d := scope.DeviceID(cl.DeviceID)
		dp := &dispatch{start: st, device: d, sent: 1, tries: 1, lastSend: now, epoch: cl.Epoch, next: now.Add(s.cfg.RetryInterval)}
		s.disp.put(dkey{cl.TaskID, d}, dp)
		if s.disp.nextDisp.IsZero() || dp.next.Before(s.disp.nextDisp) {
			s.disp.nextDisp = dp.next
		}
		if takeover {
			s.stats.TakenOver++
			s.met.takeovers.Add(ctx, 1)
		} else {
			s.stats.Dispatched++
			s.met.dispatched.Add(ctx, 1, s.met.firstSend...)
			s.met.lag.Record(ctx, max(now.Sub(cl.DueAt), 0).Seconds())
		}
		if !s.sendStart(ctx, transport.Message{Key: startKey(cl.TaskID, cl.RunID), Kind: transport.StartRun, Device: d, Start: &st, Definition: s.definition(ts)}, now) {
			s.stats.Unreachable++
		}
	}
}

// renewClaimed renews the leases of the claimed starts about to be resent
// and returns the keys this replica no longer holds (another replica took
// them over, or the device answered in the meantime): those are not resent.
func (s *Server) renewClaimed(ctx context.Context, c storage.Claimer, keys []dkey) map[dkey]bool {
	var cs []storage.Claim
	for _, k := range keys {
		if dp := s.disp.pending[k]; dp != nil && dp.epoch > 0 && dp.sent > 0 {
			cs = append(cs, storage.Claim{TaskID: k.task, DeviceID: string(k.device), RunID: dp.start.RunID, Epoch: dp.epoch})
		}
	}
	if len(cs) == 0 {
		return nil
	}
	began := s.clk.Now()
	held, err := c.RenewClaims(ctx, storage.RenewParams{Owner: s.lead.owner, State: string(task.Pending), Seq: transport.SeqDispatched, TTL: s.dispatchTTL(), Claims: cs, Now: s.leaseNow()})
	s.storeCall(ctx, "RenewClaims", began)
	if err != nil {
		s.log.Error().Err(err).Msg("engine: renew dispatch leases")
		return nil // resend anyway: devices de-duplicate, and the lease check repeats next time
	}
	ok := make(map[dkey]bool, len(held))
	for _, h := range held {
		ok[dkey{h.TaskID, scope.DeviceID(h.DeviceID)}] = true
	}
	lost := map[dkey]bool{}
	for _, c := range cs {
		if k := (dkey{c.TaskID, scope.DeviceID(c.DeviceID)}); !ok[k] {
			lost[k] = true
		}
	}
	return lost
}

// startKey is the idempotency key of a StartRun.
func startKey(taskID string, runID int64) string {
	return "s/" + taskID + "/" + strconv.FormatInt(runID, 10)
}
