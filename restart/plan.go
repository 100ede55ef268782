package restart

import (
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// MaxPlannedPrompts bounds the prompts Plan lists, so a policy that repeats
// forever (repeat on, restart after off) with a far horizon stays cheap.
const MaxPlannedPrompts = 10000

// Timeline is the planned course of events after a restart became
// required, as computed by Plan and followed by Runner.Run when nothing
// interrupts it (no user acceptance, no cancellation, no clock jump).
type Timeline struct {
	// RequiredAt is when the restart became required (UTC).
	RequiredAt time.Time `json:"required_at"`
	// Prompts lists the planned prompt times (UTC), in order, up to the
	// horizon passed to Plan.
	Prompts []time.Time `json:"prompts,omitempty"`
	// RestartAt is when the device restarts without asking (UTC): at
	// RequiredAt for Restart, RequiredAt + restart_after for Prompt with the
	// toggle on. Zero when no automatic restart is planned. A device whose
	// session is then locked and whose policy does not force-close
	// applications is not restarted (the result is RestartRequired).
	RestartAt time.Time `json:"restart_at,omitzero"`
	// Truncated is true when more prompts follow after the horizon (or
	// after MaxPlannedPrompts).
	Truncated bool `json:"truncated,omitempty"`
	// RestartRequired is true when the plan ends with the device still
	// needing a restart unless the user accepts a prompt: DoNotRestart,
	// and Prompt with restart_after off.
	RestartRequired bool `json:"restart_required,omitempty"`
}

// Plan computes, without running anything, the timeline that p produces
// for a restart required at requiredAt, listing events at or before until.
//
// For Prompt: prompts at requiredAt, requiredAt+repeat, requiredAt+2*repeat
// ... (only the first when repeat_prompt is off), strictly before the
// forced restart at requiredAt+restart_after when that toggle is on (a
// prompt due at the same instant as the restart is not shown). For
// Restart: a restart at requiredAt. For DoNotRestart: nothing, and
// RestartRequired.
//
// Plan returns the policy's ValidationErrors if p is invalid.
func Plan(p Policy, requiredAt, until time.Time) (Timeline, error) {
	if err := p.Validate(); err != nil {
		return Timeline{}, err
	}
	if until.Before(requiredAt) {
		return Timeline{}, errs.Invalid("until", until.UTC().Format(time.RFC3339), "must not be before the time the restart became required")
	}
	s := newSchedule(p, requiredAt)
	tl := Timeline{RequiredAt: s.t0}
	switch p.Action {
	case DoNotRestart:
		tl.RestartRequired = true
		return tl, nil
	case Restart:
		tl.RestartAt = s.t0
		return tl, nil
	}
	for k := int64(0); ; k++ {
		at, ok := s.prompt(k)
		if !ok {
			break
		}
		if at.After(until) || len(tl.Prompts) == MaxPlannedPrompts {
			tl.Truncated = true
			break
		}
		tl.Prompts = append(tl.Prompts, at)
	}
	if at, ok := s.restart(); ok {
		tl.RestartAt = at
	} else {
		tl.RestartRequired = true
	}
	return tl, nil
}

// schedule is the arithmetic shared by Plan and Runner, so the two agree by
// construction.
type schedule struct {
	p  Policy
	t0 time.Time
}

func newSchedule(p Policy, t0 time.Time) schedule { return schedule{p: p, t0: t0.UTC()} }

func (s schedule) repeat() time.Duration {
	return time.Duration(s.p.RepeatPrompt.Minutes) * time.Minute
}

// restart returns the forced restart time of a Prompt policy.
func (s schedule) restart() (time.Time, bool) {
	if !s.p.RestartAfter.Enabled {
		return time.Time{}, false
	}
	return s.t0.Add(time.Duration(s.p.RestartAfter.Minutes) * time.Minute), true
}

// prompt returns the time of prompt k (0-based), if there is one.
func (s schedule) prompt(k int64) (time.Time, bool) {
	if k < 0 || (k > 0 && !s.p.RepeatPrompt.Enabled) {
		return time.Time{}, false
	}
	at := s.t0.Add(time.Duration(k) * s.repeat())
	if r, ok := s.restart(); ok && !at.Before(r) {
		return time.Time{}, false
	}
	return at, true
}

// lastDue returns the index of the last prompt due at or before now, or -1.
func (s schedule) lastDue(now time.Time) int64 {
	if now.Before(s.t0) {
		return -1
	}
	k := int64(0)
	if s.p.RepeatPrompt.Enabled {
		k = int64(now.Sub(s.t0) / s.repeat())
	}
	for k >= 0 {
		if _, ok := s.prompt(k); ok {
			return k
		}
		k--
	}
	return -1
}
