package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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

// leader reports whether this replica may do the singleton duties now
// (fire server-run activations, purge history). Stores without
// storage.Leader have one replica, which always leads. A replica that
// cannot reach the store does not lead.
func (s *Server) leader(ctx context.Context) bool {
	l, ok := s.cfg.Store.(storage.Leader)
	if !ok || s.cfg.SingleReplica {
		return true
	}
	got, err := l.AcquireLeader(ctx, storage.LeaderParams{Name: LeaderLease, Owner: s.owner, TTL: s.cfg.LeaseTTL})
	if err != nil {
		s.log.Error().Err(err).Msg("engine: leader lease")
		return false
	}
	s.leading = got.Held
	return got.Held
}

// taskFor returns the state of a task, loading it through the Manager
// when another replica created it after this one opened.
func (s *Server) taskFor(ctx context.Context, id string, now time.Time) *taskState {
	if ts := s.tasks[id]; ts != nil {
		return ts
	}
	t, err := s.m.Get(ctx, task.System, id)
	if err != nil {
		if !errors.Is(err, task.ErrNotFound) {
			s.log.Error().Err(err).Str("task", id).Msg("engine: load task for a claimed start")
		}
		return nil
	}
	ts := s.load(ctx, t, now)
	s.byDevice = nil
	return ts
}

// dispatchClaimed claims the due scheduled starts from the store in
// batches, marks them dispatched (pending) under the claim's fencing
// epoch and sends the accepted ones; resends stay with this replica. A
// claim of a suspended or unknown task is given back.
func (s *Server) dispatchClaimed(ctx context.Context, c storage.Claimer, now time.Time) {
	for {
		claims, err := c.ClaimDue(ctx, storage.ClaimParams{Owner: s.owner, State: string(task.Scheduled), Before: now, TTL: s.cfg.LeaseTTL, Limit: s.cfg.ClaimBatch})
		if err != nil {
			s.log.Error().Err(err).Msg("engine: claim due starts")
			return
		}
		if len(claims) == 0 {
			return
		}
		if s.afterClaim != nil {
			s.afterClaim() // tests: stall or die while holding the claims
		}
		var ok, back []storage.Claim
		for _, cl := range claims {
			if ts := s.taskFor(ctx, cl.TaskID, now); ts == nil || ts.t.Suspended {
				back = append(back, cl)
				continue
			}
			ok = append(ok, cl)
		}
		if len(back) > 0 {
			if err := c.ReleaseClaims(ctx, s.owner, back); err != nil {
				s.log.Error().Err(err).Msg("engine: release claims")
			}
		}
		done, err := c.CompleteClaims(ctx, storage.CompleteParams{Owner: s.owner, FromState: string(task.Scheduled), State: string(task.Pending), Seq: transport.SeqDispatched, At: now.UTC(), Claims: ok})
		if err != nil {
			s.log.Error().Err(err).Msg("engine: complete claims")
			return // the leases expire and a replica claims them again
		}
		s.stats.Fenced += int64(len(ok) - len(done))
		for _, cl := range done {
			ts := s.tasks[cl.TaskID]
			st := transport.Start{TaskID: cl.TaskID, RunID: cl.RunID, At: cl.DueAt, Due: cl.DueAt}
			if ts.lastFire != nil && ts.lastFire.RunID == cl.RunID {
				st = *ts.lastFire
				st.Due = cl.DueAt
			} else if ts.manual != nil && ts.manual.RunID == cl.RunID {
				st = *ts.manual
				st.Due = cl.DueAt
			}
			d := scope.DeviceID(cl.DeviceID)
			dp := &dispatch{start: st, device: d, sent: 1, next: now.Add(s.cfg.RetryInterval)}
			s.pending[dkey{cl.TaskID, d}] = dp
			if s.nextDisp.IsZero() || dp.next.Before(s.nextDisp) {
				s.nextDisp = dp.next
			}
			s.stats.Dispatched++
			_ = s.send(ctx, transport.Message{Key: fmt.Sprintf("s/%s/%d", cl.TaskID, cl.RunID), Kind: transport.StartRun, Device: d, Start: &st, Definition: s.definition(ts)})
		}
		if len(claims) < s.cfg.ClaimBatch || len(done) == 0 {
			return
		}
	}
}
