// Package restart implements the operating-system restart settings of a
// task and the device-side timeline that carries them out.
//
// # Concepts
//
// A Policy is one of three actions (the product documentation's "Operating system restart
// settings"):
//
//   - DoNotRestart: the device is never restarted; the Outcome records that
//     a restart is required (for the task result and the device status).
//   - Restart: the device restarts at once.
//   - Prompt (the default): the user is prompted with Message; the prompt
//     repeats every RepeatPrompt.Minutes (default on, 5, 1..1440; once when
//     off) and the restart is forced RestartAfter.Minutes after the first
//     prompt (default on, 30, 1..1440; never forced when off).
//
// ForceCloseLocked (default off) decides what a forced restart does when the
// user session is locked: off, the device is not restarted and the result is
// RestartRequired; on, the session's applications are closed first.
//
//	p := restart.Default()          // prompt, every 5 min, restart after 30
//	p.RestartAfter.Minutes = 60
//	if err := p.Validate(); err != nil { ... } // typed, never clamped
//
// # Timeline
//
// Plan computes the timeline without running it: prompts at t, t+repeat,
// t+2*repeat ... strictly before the forced restart at t+restart_after. A
// Runner follows the same timeline on a device through the host's Device
// interface, driven by a clock.Clock:
//
//	r, _ := restart.NewRunner(restart.Config{Policy: p, Device: dev, Clock: clk})
//	go func() { <-userClickedRestartNow; r.Accept() }()
//	out, err := r.Run(ctx, requiredAt) // blocks until restarted, required, canceled or failed
//
// Run is cancellable through ctx (agent shutdown: Result Canceled) and
// resumable: calling it again with the original requiredAt collapses missed
// prompts into one and performs an overdue restart at once.
//
// # Time semantics
//
// Library code never reads the wall clock: Runner uses Config.Clock (the
// real clock when nil); tests pass clock.NewMock() and use Config.Waiting to
// advance it only while the runner is idle. All recorded times are UTC.
// Intervals are elapsed minutes, unaffected by time zones and DST.
//
// # JSON
//
// Policy encodes with every field present in a fixed order (see
// MarshalJSON and testdata/default_policy.json). Decoding is strict: an
// omitted field keeps the product documentation's default (the default-on toggles stay on),
// and unknown or duplicate fields, null, wrong types and out-of-range values
// are ValidationErrors naming the JSON path.
//
// # Errors
//
// Validation failures are *ValidationError or ValidationErrors (aliases of
// the shared taskfleet vocabulary) matching ErrInvalid, with Field the
// dotted JSON path and Reason the allowed range. Run returns the Device's
// error wrapped (Result Failed), ctx's error (Result Canceled), or
// ErrRunning.
package restart
