package restart

import (
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// Action is what the device does when an operation needs an operating-system
// restart to complete.
type Action string

const (
	// DoNotRestart never restarts the device. The result records that a
	// restart is required (task results and device status), and the user or
	// another task restarts the device later.
	DoNotRestart Action = "do_not_restart"
	// Restart restarts the device at once, without asking the user.
	Restart Action = "restart"
	// Prompt asks the user to restart, repeats the prompt and, when
	// configured, forces the restart after a delay. It is the default.
	Prompt Action = "prompt"
)

// Valid reports whether a is one of the three actions.
func (a Action) Valid() bool {
	switch a {
	case DoNotRestart, Restart, Prompt:
		return true
	}
	return false
}

// The product documentation's defaults and ranges, written once.
const (
	// DefaultAction is the action of Default().
	DefaultAction = Prompt
	// DefaultRepeatPromptMinutes is the default prompt interval; the
	// "repeat prompt" toggle is on by default.
	DefaultRepeatPromptMinutes = 5
	// DefaultRestartAfterMinutes is the default delay of the forced
	// restart; the "restart after" toggle is on by default.
	DefaultRestartAfterMinutes = 30
	// MinMinutes and MaxMinutes bound both intervals (one minute to one
	// day). They are checked even while a toggle is off, because the value
	// is kept for when the toggle is switched on again.
	MinMinutes = 1
	MaxMinutes = 1440
	// MaxMessageLength is the longest prompt message, in characters.
	MaxMessageLength = 2048
)

// Interval is an optional number of minutes: a toggle and its value, as in
// the console ("Repeat prompt every (min)", "Restart after (min)").
type Interval struct {
	// Enabled switches the interval on.
	Enabled bool `json:"enabled"`
	// Minutes is the interval, MinMinutes..MaxMinutes.
	Minutes int `json:"minutes"`
}

// Policy is a task's operating-system restart settings.
//
// The zero Policy is not valid (its Action is empty); use Default() for
// the product documentation's defaults. IsZero lets an embedding type treat an unset policy as
// the default.
type Policy struct {
	// Action is the restart behaviour.
	Action Action `json:"action"`
	// Message is the prompt text shown to the user. Empty means the
	// host's default text. Used by Prompt only.
	Message string `json:"message"`
	// RepeatPrompt repeats the prompt every Minutes while enabled; when
	// disabled the prompt is shown once. Default: on, 5 minutes.
	RepeatPrompt Interval `json:"repeat_prompt"`
	// RestartAfter forces the restart Minutes after the first prompt
	// while enabled; when disabled the device only restarts when the user
	// accepts. Default: on, 30 minutes.
	RestartAfter Interval `json:"restart_after"`
	// ForceCloseLocked closes running applications in a locked session
	// before a forced restart (users may lose unsaved work). When off, a
	// device whose session is locked is not restarted and the result is
	// "restart required". Default: off.
	ForceCloseLocked bool `json:"force_close_locked"`
}

// Default returns the product documentation's default policy: prompt the user, repeat the
// prompt every 5 minutes, force the restart after 30 minutes, do not close
// applications in locked sessions.
func Default() Policy {
	return Policy{
		Action:       DefaultAction,
		RepeatPrompt: Interval{Enabled: true, Minutes: DefaultRepeatPromptMinutes},
		RestartAfter: Interval{Enabled: true, Minutes: DefaultRestartAfterMinutes},
	}
}

// IsZero reports whether p is the zero Policy (nothing set at all).
func (p Policy) IsZero() bool { return p == Policy{} }

// Validate checks every field and returns nil, a *ValidationError or
// ValidationErrors (all matching ErrInvalid) naming each bad field by its
// JSON path and the allowed values. Nothing is clamped or fixed up.
func (p Policy) Validate() error {
	var out ValidationErrors
	if !p.Action.Valid() {
		out = append(out, errs.Invalid("action", string(p.Action),
			`must be one of "do_not_restart", "restart", "prompt"`))
	}
	if e := validateMessage(p.Message); e != nil {
		out = append(out, e)
	}
	if p.RepeatPrompt.Minutes < MinMinutes || p.RepeatPrompt.Minutes > MaxMinutes {
		out = append(out, errs.Range("repeat_prompt.minutes", p.RepeatPrompt.Minutes, MinMinutes, MaxMinutes))
	}
	if p.RestartAfter.Minutes < MinMinutes || p.RestartAfter.Minutes > MaxMinutes {
		out = append(out, errs.Range("restart_after.minutes", p.RestartAfter.Minutes, MinMinutes, MaxMinutes))
	}
	return out.Err()
}

func validateMessage(m string) *ValidationError {
	if !utf8.ValidString(m) {
		return errs.Invalid("message", "", "must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(m); n > MaxMessageLength {
		return errs.Invalid("message", "", fmt.Sprintf("must be at most %d characters, got %d", MaxMessageLength, n))
	}
	for i, r := range m {
		if unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' {
			return &ValidationError{Field: "message", Reason: "must not contain control characters other than tab and line breaks", Column: utf8.RuneCountInString(m[:i]) + 1}
		}
	}
	return nil
}

// String describes the policy for logs and diffs, for example
// "prompt (repeat every 5 min, restart after 30 min, keep locked sessions)".
func (p Policy) String() string {
	switch p.Action {
	case DoNotRestart:
		return "do not restart"
	case Restart:
		return "restart (" + lockedText(p.ForceCloseLocked) + ")"
	case Prompt:
		rep := "prompt once"
		if p.RepeatPrompt.Enabled {
			rep = "repeat every " + strconv.Itoa(p.RepeatPrompt.Minutes) + " min"
		}
		after := "no forced restart"
		if p.RestartAfter.Enabled {
			after = "restart after " + strconv.Itoa(p.RestartAfter.Minutes) + " min"
		}
		return "prompt (" + rep + ", " + after + ", " + lockedText(p.ForceCloseLocked) + ")"
	}
	return "invalid restart policy " + strconv.Quote(string(p.Action))
}

func lockedText(force bool) string {
	if force {
		return "force-close locked sessions"
	}
	return "keep locked sessions"
}
