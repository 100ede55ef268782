package restart

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// Device is what the host's agent provides to run a restart timeline on one
// device. Runner calls its methods from the goroutine that called Run, one
// at a time; an implementation need not be safe for concurrent use unless
// the host shares it between Runners. Every method must return promptly
// once ctx is done.
type Device interface {
	// ShowPrompt shows the restart reminder with message (empty: the
	// host's default text). An error is logged and counted in
	// Outcome.PromptFailures; the timeline goes on (a forced restart is
	// still due).
	ShowPrompt(ctx context.Context, message string) error
	// SessionLocked reports whether the user session is locked. An error
	// ends the timeline with Result Failed.
	SessionLocked(ctx context.Context) (bool, error)
	// CloseApplications force-closes the running applications of a locked
	// session (unsaved work is lost). Called only when the policy's
	// ForceCloseLocked is on and the session is locked. An error ends the
	// timeline with Result Failed and no restart.
	CloseApplications(ctx context.Context) error
	// Restart restarts the operating system. An error ends the timeline
	// with Result Failed.
	Restart(ctx context.Context) error
}

// Result is how a restart timeline ended.
type Result string

const (
	// Restarted: Device.Restart was called and succeeded.
	Restarted Result = "restarted"
	// RestartRequired: the device was not restarted and still needs a
	// restart (DoNotRestart, or a locked session without force-close).
	// It is recorded in the task result and the device status.
	RestartRequired Result = "restart_required"
	// Canceled: ctx was done before the timeline ended (agent shutdown).
	// The device still needs a restart; call Run again with the same
	// requiredAt to resume the timeline.
	Canceled Result = "canceled"
	// Failed: a Device method failed; the device still needs a restart.
	Failed Result = "failed"
)

// Reason says why a timeline ended with its Result.
type Reason string

const (
	// ReasonDoNotRestart: the policy does not restart; the restart stays
	// required.
	ReasonDoNotRestart Reason = "policy_do_not_restart"
	// ReasonImmediate: the policy restarts without asking.
	ReasonImmediate Reason = "policy_restart"
	// ReasonUserAccepted: the user chose to restart at a prompt.
	ReasonUserAccepted Reason = "user_accepted"
	// ReasonRestartAfter: the policy's "restart after" time elapsed.
	ReasonRestartAfter Reason = "restart_after_elapsed"
	// ReasonSessionLocked: the forced restart was due but the session was
	// locked and the policy does not close applications.
	ReasonSessionLocked Reason = "session_locked"
	// ReasonStopped: the timeline was stopped (the run or agent stopped).
	ReasonStopped Reason = "stopped"
	// ReasonSessionLockFailed: the session-lock check returned an error.
	ReasonSessionLockFailed Reason = "session_lock_check_failed"
	// ReasonCloseAppsFailed: closing the applications returned an error.
	ReasonCloseAppsFailed Reason = "close_applications_failed"
	// ReasonRestartFailed: the restart itself returned an error.
	ReasonRestartFailed Reason = "restart_failed"
)

// Outcome is the record of one Run, for the task result and device status.
// Times are UTC readings of the Runner's clock.
type Outcome struct {
	// Result is how the restart timeline ended.
	Result Result `json:"result"`
	// Reason says why it ended so.
	Reason Reason `json:"reason"`
	// RequiredAt is the requiredAt passed to Run, in UTC.

	RequiredAt time.Time `json:"required_at"`
	// Prompts are the times prompts were shown successfully.
	Prompts []time.Time `json:"prompts,omitempty"`
	// PromptFailures counts ShowPrompt errors.
	PromptFailures int `json:"prompt_failures,omitempty"`
	// ClosedApplications is true when CloseApplications succeeded.
	ClosedApplications bool `json:"closed_applications,omitempty"`
	// RestartAt is when Device.Restart was called (zero if it was not).
	RestartAt time.Time `json:"restart_at,omitzero"`
}

// RestartPending reports whether the device still needs a restart after
// this outcome.
func (o Outcome) RestartPending() bool { return o.Result != Restarted }

// Config configures a Runner. The zero value of every optional field means
// the documented default.
type Config struct {
	// Policy is the restart policy; it must be valid.
	Policy Policy
	// Device is required.
	Device Device
	// Clock drives the timeline; nil means the real clock.
	Clock clock.Clock
	// Logger receives one event per step; the zero Logger logs nothing.
	Logger zerolog.Logger
	// Waiting, when set, is called from Run's goroutine each time Run has
	// armed its timer and is about to block until next (zero next: no
	// timer, Run waits only for Accept or ctx). Tests that drive a
	// clock.Mock use it to know when advancing the clock is safe; hosts may
	// use it for a countdown. It must not block for long.
	Waiting func(next time.Time)
}

// Runner runs restart timelines on one device. Create it with NewRunner.
// Run may be called again after it returns (for the next operation that
// requires a restart); Accept and Running are safe for concurrent use with
// Run.
type Runner struct {
	cfg Config

	mu      sync.Mutex
	running bool
	accept  chan struct{}
}

// ErrRunning is returned by Run when another Run of the same Runner is in
// progress.
var ErrRunning = errors.New("restart: a timeline is already running on this runner")

// NewRunner validates cfg and returns a Runner. An invalid policy returns
// its ValidationErrors with the field paths prefixed by "policy."; a nil
// Device is a *ValidationError for "device".
func NewRunner(cfg Config) (*Runner, error) {
	var bad ValidationErrors
	if err := cfg.Policy.Validate(); err != nil {
		bad = append(bad, asList(errs.Prefix("policy", err))...)
	}
	if cfg.Device == nil {
		bad = append(bad, &ValidationError{Field: "device", Reason: "is required"})
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	return &Runner{cfg: cfg, accept: make(chan struct{}, 1)}, nil
}

// Accept records that the user accepted the prompt and wants to restart
// now. It reports whether a running Prompt timeline received it; an Accept
// while no timeline runs is discarded, so a stale click cannot restart the
// device during a later timeline.
func (r *Runner) Accept() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.running || r.cfg.Policy.Action != Prompt {
		return false
	}
	select {
	case r.accept <- struct{}{}:
	default: // already pending
	}
	return true
}

// Running reports whether a Run is in progress.
func (r *Runner) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running
}

// Run follows the policy's timeline for a restart that became required at
// requiredAt and blocks until it ends. See Plan for the timeline. Run can
// resume a timeline after an agent restart: pass the original requiredAt;
// prompts missed while the agent was stopped (or the device slept) are
// collapsed into one prompt shown at once, and an overdue forced restart
// happens at once.
//
// The returned error is nil for Restarted and RestartRequired; for Canceled
// it is ctx's error, for Failed the Device error (wrapped), and ErrRunning
// if another Run of r is in progress. The Outcome is complete in every
// case.
func (r *Runner) Run(ctx context.Context, requiredAt time.Time) (Outcome, error) {
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return Outcome{}, ErrRunning
	}
	r.running = true
	select { // drop an Accept left from a previous timeline
	case <-r.accept:
	default:
	}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running = false
		r.mu.Unlock()
	}()

	s := newSchedule(r.cfg.Policy, requiredAt)
	out := Outcome{RequiredAt: s.t0}
	log := r.cfg.Logger.With().Str("component", "restart").Time("required_at", s.t0).Logger()
	if err := ctx.Err(); err != nil {
		return r.stopped(out, err, log)
	}
	switch r.cfg.Policy.Action {
	case DoNotRestart:
		out.Result, out.Reason = RestartRequired, ReasonDoNotRestart
		log.Info().Str("result", string(out.Result)).Msg("restart required; policy does not restart")
		return out, nil
	case Restart:
		return r.forced(ctx, out, ReasonImmediate, log)
	}

	next := int64(0) // index of the next prompt not yet shown
	for {
		now := r.cfg.Clock.Now()
		if at, ok := s.restart(); ok && !now.Before(at) {
			return r.forced(ctx, out, ReasonRestartAfter, log)
		}
		if k := s.lastDue(now); k >= next {
			r.prompt(ctx, &out, now, log)
			next = k + 1
			continue
		}
		// Sleep until the next prompt or the forced restart.
		var wake time.Time
		if at, ok := s.prompt(next); ok {
			wake = at
		}
		if at, ok := s.restart(); ok && (wake.IsZero() || at.Before(wake)) {
			wake = at
		}
		var timer *clock.Timer
		var timerC <-chan time.Time
		if !wake.IsZero() {
			timer = r.cfg.Clock.Timer(wake.Sub(now))
			timerC = timer.C
		}
		if r.cfg.Waiting != nil {
			r.cfg.Waiting(wake)
		}
		accepted := false
		select {
		case <-ctx.Done():
		case <-r.accept:
			accepted = true
		case <-timerC:
		}
		if timer != nil {
			timer.Stop()
		}
		if accepted {
			return r.restartNow(ctx, out, ReasonUserAccepted, log)
		}
		if err := ctx.Err(); err != nil {
			return r.stopped(out, err, log)
		}
	}
}

func (r *Runner) prompt(ctx context.Context, out *Outcome, now time.Time, log zerolog.Logger) {
	if err := r.cfg.Device.ShowPrompt(ctx, r.cfg.Policy.Message); err != nil {
		out.PromptFailures++
		log.Warn().Err(err).Msg("showing the restart prompt failed")
		return
	}
	out.Prompts = append(out.Prompts, now.UTC())
	log.Debug().Time("at", now.UTC()).Msg("restart prompt shown")
}

// forced restarts without asking, honouring the locked-session rule.
func (r *Runner) forced(ctx context.Context, out Outcome, reason Reason, log zerolog.Logger) (Outcome, error) {
	locked, err := r.cfg.Device.SessionLocked(ctx)
	if err != nil {
		return r.failed(out, ReasonSessionLockFailed, fmt.Errorf("restart: checking the session lock: %w", err), log)
	}
	if locked {
		if !r.cfg.Policy.ForceCloseLocked {
			out.Result, out.Reason = RestartRequired, ReasonSessionLocked
			log.Info().Str("result", string(out.Result)).Msg("session locked and force-close is off; not restarting")
			return out, nil
		}
		if err := r.cfg.Device.CloseApplications(ctx); err != nil {
			return r.failed(out, ReasonCloseAppsFailed, fmt.Errorf("restart: closing applications of the locked session: %w", err), log)
		}
		out.ClosedApplications = true
	}
	return r.restartNow(ctx, out, reason, log)
}

func (r *Runner) restartNow(ctx context.Context, out Outcome, reason Reason, log zerolog.Logger) (Outcome, error) {
	at := r.cfg.Clock.Now().UTC()
	if err := r.cfg.Device.Restart(ctx); err != nil {
		return r.failed(out, ReasonRestartFailed, fmt.Errorf("restart: restarting the device: %w", err), log)
	}
	out.Result, out.Reason, out.RestartAt = Restarted, reason, at
	log.Info().Str("reason", string(reason)).Time("at", at).Msg("device restarted")
	return out, nil
}

func (r *Runner) failed(out Outcome, reason Reason, err error, log zerolog.Logger) (Outcome, error) {
	out.Result, out.Reason = Failed, reason
	log.Error().Err(err).Str("reason", string(reason)).Msg("restart timeline failed")
	return out, err
}

func (r *Runner) stopped(out Outcome, err error, log zerolog.Logger) (Outcome, error) {
	out.Result, out.Reason = Canceled, ReasonStopped
	log.Info().Msg("restart timeline stopped before it ended")
	return out, err
}
