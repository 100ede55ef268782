package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/taskfleet/taskfleet/task/transport"
)

// The driver: Tick calls each part in a fixed order (intake flush,
// scopes, leadership, activations, dispatch, control orders, recovery
// reconcile, purge); Run calls Tick on a ticker.

// Tick does everything due now: fires server-run activations, sends due
// and retried starts and Wake-on-LAN, refreshes scopes, purges history.
func (s *Server) Tick(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.live("Tick"); err != nil {
		return err
	}
	if !s.opened {
		return fmt.Errorf("engine: Tick before Open: %w", ErrClosed)
	}
	now := s.clk.Now()
	if now.Before(s.sched.lastTick) {
		s.clockBack(now, s.sched.lastTick.Sub(now))
	}
	s.sched.lastTick = now
	_ = s.flushResults(ctx, now) // logged; devices resend what was not recorded
	if !now.Before(s.sched.nextScope) {
		s.sched.nextScope = now.Add(s.cfg.ScopeRefresh)
		s.refresh(ctx, now)
	}
	lead, err := s.leader(ctx)
	if err != nil {
		return err
	}
	for _, id := range s.sortedIDs() {
		ts := s.cat.tasks[id]
		if !ts.onServer || !ts.t.Schedule.Timed() {
			continue
		}
		if !lead {
			// A follower fires nothing but keeps its cursor within
			// RecoveryWindow, so when it takes over it fires what the
			// old leader may have missed (fire markers skip the rest).
			if floor := now.Add(-s.cfg.RecoveryWindow); ts.cursor.Before(floor) {
				ts.cursor, ts.next = floor, time.Time{}
			}
			continue
		}
		if ts.next.IsZero() || !ts.next.After(ts.cursor) {
			nx, ok := ts.t.Schedule.Next(ts.cursor, s.loc)
			if !ok {
				nx = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
			}
			ts.next = nx
		}
		if ts.next.After(now) {
			continue
		}
		for act := range ts.t.Schedule.Between(ts.cursor, now, s.loc) {
			ts.cursor = act
			if !ts.t.Suspended {
				s.fire(ctx, ts, act, now, transport.Scheduled)
			}
		}
		ts.next = time.Time{}
	}
	if lead {
		s.updatesFallback(ctx, now)
	}
	// Without storage.Claimer the starts are dispatched from memory, so
	// only the leader may send them (another replica is refused above).
	if c := s.claimer(); c != nil || lead {
		s.wake(ctx, now)
		if c != nil {
			s.dispatchClaimed(ctx, c, now)
		}
		s.dispatchDue(ctx, now)
		s.controlsDue(ctx, now)
	}
	if lead && s.claimer() != nil && !now.Before(s.lead.nextReconcile) {
		// With replicas, the leader rebuilds the pause, resume and stop
		// orders from the stored states every ScopeRefresh, so an order
		// whose replica died before its devices answered still arrives.
		s.lead.nextReconcile = now.Add(s.cfg.ScopeRefresh)
		if err := s.recoverRuns(ctx, now, true); err != nil {
			s.log.Error().Err(err).Msg("engine: reconcile pause, resume and stop orders")
		}
	}
	if lead && !now.Before(s.sched.nextPurge) {
		s.sched.nextPurge = now.Add(s.cfg.PurgeEvery)
		began := s.clk.Now()
		_, err := s.m.Runtime().PurgeHistory(ctx)
		s.storeCall(ctx, "PurgeHistory", began)
		if err != nil {
			s.log.Error().Err(err).Msg("engine: purge history")
		}
	}
	return nil
}

// Run ticks every interval until ctx is done or the server is closed
// (goroutine mode); after Close it returns an error wrapping ErrClosed.
func (s *Server) Run(ctx context.Context, interval time.Duration) error {
	tk := s.clk.Ticker(interval)
	defer tk.Stop()
	for {
		if err := s.Tick(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tk.C:
		}
	}
}
