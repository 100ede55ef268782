package hierarchy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// Defaults of SyncConfig.
const (
	DefaultSyncInterval = time.Minute
	DefaultMinBackoff   = time.Second
	DefaultMaxBackoff   = 5 * time.Minute
)

// TaskPuller is an optional interface of a Link over which the child
// fetches its task set (a secondary behind NAT that connects out to its
// primary): the sync loop of a server with a parent calls PullTasks each
// round and applies the set with Node.ReceiveTasks. ok is false when the
// parent has no set for it yet.
type TaskPuller interface {
	// PullTasks fetches the latest task set for server from its parent.
	PullTasks(ctx context.Context, server string) (m TaskSet, ok bool, err error)
}

// QueryServer is an optional interface of a Link on which a child must
// run something to answer its parent (a child that connects out, such as
// hierarchyhttp's, long-polls for the parent's per-device result
// queries). Node.Start runs Serve beside the sync loop of a server with a
// parent, until the loop stops.
type QueryServer interface {
	// Serve answers the parent until ctx ends.
	Serve(ctx context.Context) error
}

// SyncConfig configures Node.Start. The zero value is the documented
// defaults.
type SyncConfig struct {
	// Interval is the wait between two rounds that went well
	// (0: DefaultSyncInterval).
	Interval time.Duration
	// MinBackoff is the wait after the first failed round in a row
	// (0: DefaultMinBackoff); it doubles with each further failure up to
	// MaxBackoff (0: DefaultMaxBackoff). Each wait after a failure is
	// drawn uniformly from [w/2, w], so servers cut off together do not
	// come back in step.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives one line per failed round (default: none).
	Logger zerolog.Logger
	// OnRound, when set, is called after every round with its error (nil
	// when it went well), from the loop's goroutine.
	OnRound func(err error)
}

func (c SyncConfig) withDefaults() (SyncConfig, error) {
	var bad errs.ValidationErrors
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"interval", &c.Interval, DefaultSyncInterval}, {"min_backoff", &c.MinBackoff, DefaultMinBackoff}, {"max_backoff", &c.MaxBackoff, DefaultMaxBackoff}} {
		switch {
		case *d.v < 0:
			bad = append(bad, errs.Invalid(d.name, d.v.String(), "must not be negative"))
		case *d.v == 0:
			*d.v = d.def
		}
	}
	if c.MaxBackoff < c.MinBackoff {
		bad = append(bad, errs.Invalid("max_backoff", c.MaxBackoff.String(), "must not be less than min_backoff"))
	}
	return c, bad.Err()
}

// Sync is a running sync loop (Node.Start).
type Sync struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	rounds int
	err    error
}

// Start starts the Node's sync loop and returns at once. Each round it
// pulls its task set from its parent when the Link is a TaskPuller,
// distributes its tasks to its children (Distribute), and reports to its
// parent (Report); then it waits Interval. When the Link is a
// QueryServer it also runs its Serve, so one call runs a server's whole
// side of the hierarchy. After a failed round (a server
// unreachable, a store error) it retries after a jittered, doubling
// backoff. Every message is a complete state with a durable version, so
// the loop resumes where it stopped after a restart on either side and
// each report counts once. The loop stops when ctx ends or Stop is
// called. Waits use the Node's clock.
//
// Errors: ValidationErrors for a bad SyncConfig.
func (n *Node) Start(ctx context.Context, cfg SyncConfig) (*Sync, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Sync{cancel: cancel, done: make(chan struct{})}
	qs, serve := n.cfg.Link.(QueryServer)
	serve = serve && n.cfg.Parent != ""
	var wg sync.WaitGroup
	if serve {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := qs.Serve(ctx); err != nil && ctx.Err() == nil {
				cfg.Logger.Error().Err(err).Str("server", n.cfg.ID).Msg("hierarchy link stopped serving the parent")
			}
		}()
	}
	go func() {
		s.run(ctx, n, cfg)
		cancel()
		wg.Wait()
		close(s.done)
	}()
	return s, nil
}

// Stop stops the loop and waits until it has stopped. It is idempotent.
func (s *Sync) Stop() {
	s.cancel()
	<-s.done
}

// Done is closed when the loop has stopped.
func (s *Sync) Done() <-chan struct{} { return s.done }

// Rounds returns how many rounds ran and the last round's error.
func (s *Sync) Rounds() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rounds, s.err
}

func (s *Sync) run(ctx context.Context, n *Node, cfg SyncConfig) {
	failures := 0
	for ctx.Err() == nil {
		err := n.Round(ctx)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.rounds++
		s.err = err
		s.mu.Unlock()
		wait := cfg.Interval
		if err != nil {
			failures++
			wait = backoff(cfg.MinBackoff, cfg.MaxBackoff, failures)
			cfg.Logger.Warn().Err(err).Str("server", n.cfg.ID).Int("failures", failures).Dur("retry_in", wait).Msg("hierarchy sync round failed")
		} else {
			failures = 0
		}
		t := n.clk.Timer(wait) // before OnRound: a test may move the clock then
		if cfg.OnRound != nil {
			cfg.OnRound(err)
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// backoff is the jittered wait after the nth failure in a row: uniform in
// [w/2, w] with w = min·2^(n-1) capped at max.
func backoff(minB, maxB time.Duration, n int) time.Duration {
	w := minB
	for i := 1; i < n && w < maxB; i++ {
		w *= 2
	}
	w = min(w, maxB)
	half := w / 2
	if half <= 0 {
		return w
	}
	return half + rand.N(w-half+1)
}

// Round runs one sync round (what the loop does each time): pull the task
// set from the parent when the Link is a TaskPuller, distribute to the
// children, report to the parent. The steps' errors are joined; a failed
// step does not stop the next.
func (n *Node) Round(ctx context.Context) error {
	var failed []error
	if p, ok := n.cfg.Link.(TaskPuller); ok && n.cfg.Parent != "" {
		m, ok, err := p.PullTasks(ctx, n.cfg.ID)
		switch {
		case err != nil:
			failed = append(failed, fmt.Errorf("hierarchy: %q pulls tasks from %q: %w", n.cfg.ID, n.cfg.Parent, err))
		case ok:
			if err := n.ReceiveTasks(ctx, m); err != nil {
				failed = append(failed, err)
			}
		}
	}
	if len(n.cfg.Children) > 0 {
		if err := n.Distribute(ctx); err != nil {
			failed = append(failed, err)
		}
	}
	if err := n.Report(ctx); err != nil {
		failed = append(failed, err)
	}
	return errors.Join(failed...)
}
