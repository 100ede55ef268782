package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

// The server's lifecycle: Open (bind, load every task, recover what a
// previous server left) and Close (flush, release, stop). Between them
// the server is driven by Tick or Run, by the Manager (task.Dispatcher)
// and by the transport (Handle).

// Open binds the server to its Manager (whose Config.Dispatcher is this
// server) and transport endpoint, loads every task, and recovers what a
// previous server left: scheduled and pending starts are dispatched again,
// and server-run activations of the last RecoveryWindow that were not
// fired are fired.
func (s *Server) Open(ctx context.Context, m *task.Manager, ep transport.ServerEndpoint) error {
	if m == nil || ep == nil {
		return errs.Invalid("manager", "", "Open needs the Manager and the transport endpoint")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("engine: Open after Close: %w", ErrClosed)
	}
	if s.opened {
		return ErrAlreadyOpen
	}
	// On a store without storage.Claimer only one replica may run: a
	// second one fails here, before it loads or sends anything.
	if s.claimer() == nil {
		if _, err := s.leader(ctx); err != nil {
			return err
		}
	}
	s.m, s.ep = m, ep
	now := s.clk.Now()
	p := task.ListParams{Order: storage.OrderByID, Limit: 1000}
	for {
		page, err := m.List(ctx, task.System, p)
		if err != nil {
			return fmt.Errorf("engine: load tasks: %w", err)
		}
		for _, u := range page.Undecodable {
			// One task whose settings no longer decode must not keep the
			// server from running every other task.
			s.stats.Undecodable++
			s.met.undecodable.Add(ctx, 1)
			s.log.Error().Err(u).Str("task", u.TaskID).Msg("engine: task skipped: its stored settings cannot be decoded")
		}
		for _, app := range page.Applications {
			for _, t := range app.Tasks {
				ts := s.load(ctx, t, now)
				s.log.Debug().Str("task", t.ID).Str("name", t.Name).Bool("server_run", ts.onServer).Int("devices", len(ts.devices)).Msg("engine: task loaded")
				if ts.slots != nil && !ts.onServer {
					// Rebuilt: the devices' reports of the places they
					// hold restore the layout (slotLayout).
					ts.slots.provisional = true
				}
				if ts.onServer {
					ts.cursor = now.Add(-s.cfg.RecoveryWindow)
					ts.next = time.Time{}
				}
			}
		}
		if page.Next == "" {
			break
		}
		p.After = page.Next
	}
	s.dev.invalidate()
	recovered := 0
	recover := []task.State{task.Scheduled, task.Pending}
	claims := s.claimer() != nil
	if claims {
		recover = recover[1:] // scheduled starts are dispatched from the store
	}
	states := make([]string, len(recover))
	for i, st := range recover {
		states[i] = string(st)
	}
	// Every task's unanswered starts, page by page: a server restarted
	// under a large run must resend them all, not one page of them.
	for _, id := range s.sortedIDs() {
		after := ""
		for {
			began := s.clk.Now()
			recs, err := s.cfg.Store.ListResults(ctx, storage.ListResultsParams{TaskID: id, States: states, AfterDevice: after, Limit: storage.MaxListLimit})
			s.storeCall(ctx, "ListResults", began)
			if err != nil {
				return fmt.Errorf("engine: recover starts of %q: %w", id, err)
			}
			for _, r := range recs {
				if claims && r.Seq >= transport.SeqDispatched {
					continue // leased to the replica that dispatched it; taken over when its lease expires
				}
				at := r.DueAt
				recovered++
				s.addDispatch(transport.Start{TaskID: r.TaskID, RunID: r.RunID, At: at, Due: at}, scope.DeviceID(r.DeviceID), at)
			}
			if len(recs) < storage.MaxListLimit {
				break
			}
			after = recs[len(recs)-1].DeviceID
		}
	}
	if err := s.recoverRuns(ctx, now, false); err != nil {
		return err
	}
	s.sched.nextScope = now.Add(s.cfg.ScopeRefresh)
	s.sched.nextPurge = now
	s.lead.nextReconcile = now.Add(s.cfg.ScopeRefresh)
	s.opened = true
	s.sched.openedAt = now
	s.log.Info().Str("replica", s.lead.owner).Int("tasks", len(s.cat.tasks)).Int("recovered_starts", recovered).Int64("undecodable", s.stats.Undecodable).Msg("engine: server opened")
	return nil
}

// Close stops the server: it records the results the intake buffered
// (and acknowledges them to their devices), releases this replica's
// leader lease so another replica takes the singleton duties over at
// once instead of after LeaseTTL, and from then on sends nothing. Device
// messages arriving after Close are dropped (their devices resend them to
// the next server); Tick, Run, Open, StartRun, StopRun, TaskSaved,
// TaskDeleted, UpdatesDownloaded and VirusOutbreak return an error
// wrapping ErrClosed. Starts this replica claimed stay leased until their
// lease expires, then another replica takes them over. Close is
// idempotent: a second call returns nil. The Manager and the transport
// endpoint are not closed (the host owns them).
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	var err error
	if s.opened {
		now := s.clk.Now()
		s.waitWrites()
		if ferr := s.flushResults(ctx, now); ferr != nil {
			err = fmt.Errorf("engine: close: buffered results not recorded (their devices resend them): %w", ferr)
		}
		s.releaseLeader(ctx)
		s.log.Info().Str("replica", s.lead.owner).Msg("engine: server closed")
	}
	s.closed = true
	return err
}

// live returns ErrClosed (wrapped, naming op) once Close ran.
func (s *Server) live(op string) error {
	if s.closed {
		return fmt.Errorf("engine: %s after Close: %w", op, ErrClosed)
	}
	return nil
}
