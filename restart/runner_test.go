package restart

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"
)

// t0 is when the restart becomes required in these tests.
var t0 = time.Date(2026, 3, 29, 0, 50, 0, 0, time.UTC)

// fakeDevice records every call as "<minute after t0> <call>".
type fakeDevice struct {
	clock *clock.Mock

	mu          sync.Mutex
	calls       []string
	lockedFrom  int // session locked from this minute on; -1 never
	promptErr   error
	lockErr     error
	closeErr    error
	restartErr  error
	promptCount int
}

func (d *fakeDevice) minute() int { return int(d.clock.Now().Sub(t0) / time.Minute) }

func (d *fakeDevice) record(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, fmt.Sprintf("%d %s", d.minute(), s))
}

func (d *fakeDevice) ShowPrompt(_ context.Context, msg string) error {
	d.record("prompt " + msg)
	return d.promptErr
}

func (d *fakeDevice) SessionLocked(context.Context) (bool, error) {
	locked := d.lockedFrom >= 0 && d.minute() >= d.lockedFrom
	d.record(fmt.Sprintf("locked? %v", locked))
	return locked, d.lockErr
}

func (d *fakeDevice) CloseApplications(context.Context) error {
	d.record("close applications")
	return d.closeErr
}

func (d *fakeDevice) Restart(context.Context) error {
	d.record("restart")
	return d.restartErr
}

// script acts at a minute (after t0) while the runner is idle.
type script map[int]func(r *Runner, cancel context.CancelFunc)

type runResult struct {
	out Outcome
	err error
}

// drive runs a timeline on a mock clock, advancing it minute by minute and
// waiting for the runner to be idle before each step, so the test is
// deterministic. requiredAt is t0 + startOffset; the clock starts at t0.
func drive(t *testing.T, p Policy, dev *fakeDevice, requiredAt time.Time, sc script, maxMinutes int) (Outcome, error) {
	t.Helper()
	mock := clock.NewMock()
	mock.Set(t0)
	if dev == nil {
		dev = &fakeDevice{lockedFrom: -1}
	}
	dev.clock = mock
	waits := make(chan time.Time)
	r, err := NewRunner(Config{Policy: p, Device: dev, Clock: mock, Waiting: func(next time.Time) { waits <- next }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan runResult, 1)
	go func() {
		out, err := r.Run(ctx, requiredAt)
		done <- runResult{out, err}
	}()
	var next time.Time
	idle := false
	used := map[int]bool{}
	for {
		if !idle {
			select {
			case next = <-waits:
				idle = true
			case res := <-done:
				if r.Running() {
					t.Fatal("Running() is true after Run returned")
				}
				return res.out, res.err
			}
		}
		m := int(mock.Now().Sub(t0) / time.Minute)
		if act, ok := sc[m]; ok && !used[m] {
			used[m] = true
			act(r, cancel)
			idle = false
			continue
		}
		if m >= maxMinutes {
			t.Fatalf("timeline still running after %d minutes", maxMinutes)
		}
		mock.Add(time.Minute)
		if !next.IsZero() && !mock.Now().Before(next) {
			idle = false
		}
	}
}

func at(minutes ...int) []time.Time {
	var out []time.Time
	for _, m := range minutes {
		out = append(out, t0.Add(time.Duration(m)*time.Minute))
	}
	return out
}

func TestRunTimeline(t *testing.T) {
	t.Parallel()
	with := func(f func(*Policy)) Policy { p := Default(); f(&p); return p }
	accept := func(r *Runner, _ context.CancelFunc) {
		if !r.Accept() {
			panic("Accept() = false while running")
		}
	}
	stop := func(_ *Runner, cancel context.CancelFunc) { cancel() }
	tests := []struct {
		name      string
		p         Policy
		dev       *fakeDevice
		startAt   int // requiredAt = t0 + startAt minutes (negative: in the past)
		sc        script
		want      Outcome
		wantCalls []string
		wantErr   error
	}{
		{
			name: "default policy: prompts every 5 min, forced restart at 30",
			p:    Default(),
			want: Outcome{Result: Restarted, Reason: ReasonRestartAfter, RequiredAt: t0, Prompts: at(0, 5, 10, 15, 20, 25), RestartAt: at(30)[0]},
			wantCalls: []string{"0 prompt ", "5 prompt ", "10 prompt ", "15 prompt ", "20 prompt ", "25 prompt ",
				"30 locked? false", "30 restart"},
		},
		{
			name:      "message is passed to the prompt",
			p:         with(func(p *Policy) { p.Message = "save your work"; p.RepeatPrompt.Minutes = 20 }),
			want:      Outcome{Result: Restarted, Reason: ReasonRestartAfter, RequiredAt: t0, Prompts: at(0, 20), RestartAt: at(30)[0]},
			wantCalls: []string{"0 prompt save your work", "20 prompt save your work", "30 locked? false", "30 restart"},
		},
		{
			name:      "prompt due at the restart instant is not shown",
			p:         with(func(p *Policy) { p.RepeatPrompt.Minutes = 10 }),
			want:      Outcome{Result: Restarted, Reason: ReasonRestartAfter, RequiredAt: t0, Prompts: at(0, 10, 20), RestartAt: at(30)[0]},
			wantCalls: []string{"0 prompt ", "10 prompt ", "20 prompt ", "30 locked? false", "30 restart"},
		},
		{
			name:      "repeat longer than restart after",
			p:         with(func(p *Policy) { p.RepeatPrompt.Minutes = 60; p.RestartAfter.Minutes = 3 }),
			want:      Outcome{Result: Restarted, Reason: ReasonRestartAfter, RequiredAt: t0, Prompts: at(0), RestartAt: at(3)[0]},
			wantCalls: []string{"0 prompt ", "3 locked? false", "3 restart"},
		},
		{
			name:      "repeat off: one prompt",
			p:         with(func(p *Policy) { p.RepeatPrompt.Enabled = false }),
			want:      Outcome{Result: Restarted, Reason: ReasonRestartAfter, RequiredAt: t0, Prompts: at(0), RestartAt: at(30)[0]},
			wantCalls: []string{"0 prompt ", "30 locked? false", "30 restart"},
		},
		{
			name: "locked session, force-close off: no restart, restart required",
			p:    Default(),
			dev:  &fakeDevice{lockedFrom: 12},
			want: Outcome{Result: RestartRequired, Reason: ReasonSessionLocked, RequiredAt: t0, Prompts: at(0, 5, 10, 15, 20, 25)},
			wantCalls: []string{"0 prompt ", "5 prompt ", "10 prompt ", "15 prompt ", "20 prompt ", "25 prompt ",
				"30 locked? true"},
		},
		{
			name:      "locked session, force-close on: close applications then restart",
			p:         with(func(p *Policy) { p.ForceCloseLocked = true; p.RepeatPrompt.Minutes = 15 }),
			dev:       &fakeDevice{lockedFrom: 0},
			want:      Outcome{Result: Restarted, Reason: ReasonRestartAfter, RequiredAt: t0, Prompts: at(0, 15), ClosedApplications: true, RestartAt: at(30)[0]},
			wantCalls: []string{"0 prompt ", "15 prompt ", "30 locked? true", "30 close applications", "30 restart"},
		},
		{
			name:      "unlocked session, force-close on: applications are not closed",
			p:         with(func(p *Policy) { p.ForceCloseLocked = true; p.RepeatPrompt.Enabled = false }),
			want:      Outcome{Result: Restarted, Reason: ReasonRestartAfter, RequiredAt: t0, Prompts: at(0), RestartAt: at(30)[0]},
			wantCalls: []string{"0 prompt ", "30 locked? false", "30 restart"},
		},
		{
			name:      "do not restart: restart required, device untouched",
			p:         with(func(p *Policy) { p.Action = DoNotRestart }),
			want:      Outcome{Result: RestartRequired, Reason: ReasonDoNotRestart, RequiredAt: t0},
			wantCalls: nil,
		},
		{
			name:      "restart: at once",
			p:         with(func(p *Policy) { p.Action = Restart }),
			want:      Outcome{Result: Restarted, Reason: ReasonImmediate, RequiredAt: t0, RestartAt: t0},
			wantCalls: []string{"0 locked? false", "0 restart"},
		},
		{
			name:      "restart with locked session and force-close off",
			p:         with(func(p *Policy) { p.Action = Restart }),
			dev:       &fakeDevice{lockedFrom: 0},
			want:      Outcome{Result: RestartRequired, Reason: ReasonSessionLocked, RequiredAt: t0},
			wantCalls: []string{"0 locked? true"},
		},
		{
			name:      "user accepts at minute 7",
			p:         Default(),
			sc:        script{7: accept},
			want:      Outcome{Result: Restarted, Reason: ReasonUserAccepted, RequiredAt: t0, Prompts: at(0, 5), RestartAt: at(7)[0]},
			wantCalls: []string{"0 prompt ", "5 prompt ", "7 restart"},
		},
		{
			name:      "restart after off: prompts until the user accepts",
			p:         with(func(p *Policy) { p.RestartAfter.Enabled = false; p.RepeatPrompt.Minutes = 20 }),
			sc:        script{61: accept},
			want:      Outcome{Result: Restarted, Reason: ReasonUserAccepted, RequiredAt: t0, Prompts: at(0, 20, 40, 60), RestartAt: at(61)[0]},
			wantCalls: []string{"0 prompt ", "20 prompt ", "40 prompt ", "60 prompt ", "61 restart"},
		},
		{
			name:      "both toggles off: one prompt, then wait",
			p:         with(func(p *Policy) { p.RestartAfter.Enabled = false; p.RepeatPrompt.Enabled = false }),
			sc:        script{45: stop},
			want:      Outcome{Result: Canceled, Reason: ReasonStopped, RequiredAt: t0, Prompts: at(0)},
			wantCalls: []string{"0 prompt "},
			wantErr:   context.Canceled,
		},
		{
			name:      "agent shutdown at minute 12",
			p:         Default(),
			sc:        script{12: stop},
			want:      Outcome{Result: Canceled, Reason: ReasonStopped, RequiredAt: t0, Prompts: at(0, 5, 10)},
			wantCalls: []string{"0 prompt ", "5 prompt ", "10 prompt "},
			wantErr:   context.Canceled,
		},
		{
			name:    "resume after an agent restart: missed prompts collapse into one",
			p:       Default(),
			startAt: -17, // the restart became required 17 minutes ago
			want: Outcome{Result: Restarted, Reason: ReasonRestartAfter, RequiredAt: at(-17)[0],
				Prompts: at(0, 3, 8), RestartAt: at(13)[0]},
			wantCalls: []string{"0 prompt ", "3 prompt ", "8 prompt ", "13 locked? false", "13 restart"},
		},
		{
			name:      "resume with the forced restart overdue",
			p:         Default(),
			startAt:   -90,
			want:      Outcome{Result: Restarted, Reason: ReasonRestartAfter, RequiredAt: at(-90)[0], RestartAt: t0},
			wantCalls: []string{"0 locked? false", "0 restart"},
		},
		{
			name:      "required in the future: first prompt waits",
			p:         with(func(p *Policy) { p.RestartAfter.Minutes = 4 }),
			startAt:   2,
			want:      Outcome{Result: Restarted, Reason: ReasonRestartAfter, RequiredAt: at(2)[0], Prompts: at(2), RestartAt: at(6)[0]},
			wantCalls: []string{"2 prompt ", "6 locked? false", "6 restart"},
		},
		{
			name:      "prompt failures are counted, the timeline goes on",
			p:         with(func(p *Policy) { p.RepeatPrompt.Minutes = 10 }),
			dev:       &fakeDevice{lockedFrom: -1, promptErr: errors.New("no user session")},
			want:      Outcome{Result: Restarted, Reason: ReasonRestartAfter, RequiredAt: t0, PromptFailures: 3, RestartAt: at(30)[0]},
			wantCalls: []string{"0 prompt ", "10 prompt ", "20 prompt ", "30 locked? false", "30 restart"},
		},
		{
			name:      "restart failure",
			p:         with(func(p *Policy) { p.Action = Restart }),
			dev:       &fakeDevice{lockedFrom: -1, restartErr: errBoom},
			want:      Outcome{Result: Failed, Reason: ReasonRestartFailed, RequiredAt: t0},
			wantCalls: []string{"0 locked? false", "0 restart"},
			wantErr:   errBoom,
		},
		{
			name:      "session lock check failure",
			p:         with(func(p *Policy) { p.Action = Restart }),
			dev:       &fakeDevice{lockedFrom: -1, lockErr: errBoom},
			want:      Outcome{Result: Failed, Reason: ReasonSessionLockFailed, RequiredAt: t0},
			wantCalls: []string{"0 locked? false"},
			wantErr:   errBoom,
		},
		{
			name:      "close applications failure: no restart",
			p:         with(func(p *Policy) { p.Action = Restart; p.ForceCloseLocked = true }),
			dev:       &fakeDevice{lockedFrom: 0, closeErr: errBoom},
			want:      Outcome{Result: Failed, Reason: ReasonCloseAppsFailed, RequiredAt: t0},
			wantCalls: []string{"0 locked? true", "0 close applications"},
			wantErr:   errBoom,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dev := tt.dev
			if dev == nil {
				dev = &fakeDevice{lockedFrom: -1}
			}
			out, err := drive(t, tt.p, dev, t0.Add(time.Duration(tt.startAt)*time.Minute), tt.sc, 3000)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Run() error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, out); diff != "" {
				t.Errorf("Outcome mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCalls, dev.calls); diff != "" {
				t.Errorf("device calls mismatch (-want +got):\n%s", diff)
			}
			if out.RestartPending() != (out.Result != Restarted) {
				t.Error("RestartPending disagrees with Result")
			}
		})
	}
}

var errBoom = errors.New("boom")

// TestRunMatchesPlan checks, for random policies, that the timeline the
// runner follows minute by minute is exactly the one Plan computes, and
// that both match a brute-force minute-by-minute oracle written from
// the product documentation's wording.
func TestRunMatchesPlan(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(4, 2))
	for i := range 40 {
		p := Default()
		p.RepeatPrompt = Interval{Enabled: rng.IntN(4) != 0, Minutes: 1 + rng.IntN(12)}
		p.RestartAfter = Interval{Enabled: true, Minutes: 1 + rng.IntN(40)}
		t.Run(fmt.Sprint(i, " ", p), func(t *testing.T) {
			t.Parallel()
			plan, err := Plan(p, t0, t0.Add(24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			out, err := drive(t, p, nil, t0, nil, 100)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(plan.Prompts, out.Prompts); diff != "" {
				t.Errorf("prompts: Plan vs Run (-plan +run):\n%s", diff)
			}
			if !plan.RestartAt.Equal(out.RestartAt) {
				t.Errorf("restart: Plan %v, Run %v", plan.RestartAt, out.RestartAt)
			}
			// Oracle: walk the minutes; a prompt is shown at minute m when
			// m is the first minute or (repeat on and m is a multiple of
			// the interval), as long as the forced restart is not yet due.
			var oracle []time.Time
			for m := 0; m < p.RestartAfter.Minutes; m++ {
				if m == 0 || (p.RepeatPrompt.Enabled && m%p.RepeatPrompt.Minutes == 0) {
					oracle = append(oracle, at(m)[0])
				}
			}
			if diff := cmp.Diff(oracle, plan.Prompts); diff != "" {
				t.Errorf("prompts: oracle vs Plan (-oracle +plan):\n%s", diff)
			}
			if want := at(p.RestartAfter.Minutes)[0]; !plan.RestartAt.Equal(want) {
				t.Errorf("restart: Plan %v, oracle %v", plan.RestartAt, want)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	with := func(f func(*Policy)) Policy { p := Default(); f(&p); return p }
	tests := []struct {
		name  string
		p     Policy
		until time.Duration
		want  Timeline
	}{
		{"default", Default(), time.Hour, Timeline{RequiredAt: t0, Prompts: at(0, 5, 10, 15, 20, 25), RestartAt: at(30)[0]}},
		{"default, short horizon", Default(), 12 * time.Minute, Timeline{RequiredAt: t0, Prompts: at(0, 5, 10), RestartAt: at(30)[0], Truncated: true}},
		{"do not restart", with(func(p *Policy) { p.Action = DoNotRestart }), time.Hour, Timeline{RequiredAt: t0, RestartRequired: true}},
		{"restart", with(func(p *Policy) { p.Action = Restart }), 0, Timeline{RequiredAt: t0, RestartAt: t0}},
		{"no forced restart", with(func(p *Policy) { p.RestartAfter.Enabled = false; p.RepeatPrompt.Minutes = 25 }), time.Hour,
			Timeline{RequiredAt: t0, Prompts: at(0, 25, 50), Truncated: true, RestartRequired: true}},
		{"prompt once, no forced restart", with(func(p *Policy) { p.RestartAfter.Enabled = false; p.RepeatPrompt.Enabled = false }), time.Hour,
			Timeline{RequiredAt: t0, Prompts: at(0), RestartRequired: true}},
		{"max intervals", with(func(p *Policy) { p.RepeatPrompt.Minutes = 1440; p.RestartAfter.Minutes = 1440 }), 48 * time.Hour,
			Timeline{RequiredAt: t0, Prompts: at(0), RestartAt: at(1440)[0]}},
		{"every minute for a day", with(func(p *Policy) { p.RepeatPrompt.Minutes = 1; p.RestartAfter.Minutes = 3 }), time.Hour,
			Timeline{RequiredAt: t0, Prompts: at(0, 1, 2), RestartAt: at(3)[0]}},
	}
	for _, tt := range tests {
		got, err := Plan(tt.p, t0, t0.Add(tt.until))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
	// Prompts forever are bounded.
	got, err := Plan(with(func(p *Policy) { p.RestartAfter.Enabled = false; p.RepeatPrompt.Minutes = 1 }), t0, t0.AddDate(1, 0, 0))
	if err != nil || len(got.Prompts) != MaxPlannedPrompts || !got.Truncated {
		t.Errorf("unbounded plan: %d prompts, truncated %v, err %v", len(got.Prompts), got.Truncated, err)
	}
	// Zones do not matter: times come back in UTC.
	paris := time.FixedZone("CET", 3600)
	got, err = Plan(Default(), t0.In(paris), t0.Add(time.Hour))
	if err != nil || got.RequiredAt.Location() != time.UTC || got.RestartAt.Location() != time.UTC {
		t.Errorf("times not UTC: %+v, %v", got, err)
	}
	// Errors.
	if _, err := Plan(Policy{}, t0, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("invalid policy: err = %v", err)
	}
	if _, err := Plan(Default(), t0, t0.Add(-time.Second)); !errors.Is(err, ErrInvalid) {
		t.Errorf("until before requiredAt: err = %v", err)
	}
}

func TestNewRunnerValidates(t *testing.T) {
	t.Parallel()
	p := Default()
	p.RepeatPrompt.Minutes = 0
	_, err := NewRunner(Config{Policy: p})
	type fe = struct{ Field, Value, Reason string }
	want := []fe{{"policy.repeat_prompt.minutes", "0", "must be between 1 and 1440"}, {"device", "", "is required"}}
	if diff := cmp.Diff(want, fieldErrs(t, err)); diff != "" {
		t.Fatalf("mismatch (-want +got):\n%s", diff)
	}
}

func TestAcceptAndConcurrentRun(t *testing.T) {
	t.Parallel()
	mock := clock.NewMock()
	mock.Set(t0)
	dev := &fakeDevice{clock: mock, lockedFrom: -1}
	waiting := make(chan time.Time, 10)
	r, err := NewRunner(Config{Policy: Default(), Device: dev, Clock: mock, Waiting: func(n time.Time) { waiting <- n }})
	if err != nil {
		t.Fatal(err)
	}
	if r.Accept() {
		t.Fatal("Accept() = true with no timeline running")
	}
	done := make(chan runResult, 1)
	go func() {
		out, err := r.Run(t.Context(), t0)
		done <- runResult{out, err}
	}()
	if next := <-waiting; !next.Equal(at(5)[0]) {
		t.Fatalf("first wait until %v, want %v", next, at(5)[0])
	}
	if _, err := r.Run(t.Context(), t0); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: err = %v, want ErrRunning", err)
	}
	if !r.Accept() || !r.Accept() { // a second Accept is harmless
		t.Fatal("Accept() = false while running")
	}
	res := <-done
	if res.err != nil || res.out.Result != Restarted || res.out.Reason != ReasonUserAccepted {
		t.Fatalf("Run() = %+v, %v", res.out, res.err)
	}
	if r.Accept() {
		t.Fatal("Accept() = true after the timeline ended")
	}
	// The runner is reusable, and the pending second Accept does not leak
	// into the next timeline.
	go func() {
		out, err := r.Run(t.Context(), t0)
		done <- runResult{out, err}
	}()
	// Advance to each wake-up the runner asks for, only while it is idle.
	for loop := true; loop; {
		select {
		case next := <-waiting:
			mock.Add(next.Sub(mock.Now()))
		case res = <-done:
			loop = false
		}
	}
	if res.out.Reason != ReasonRestartAfter {
		t.Fatalf("second timeline ended with %q, want %q", res.out.Reason, ReasonRestartAfter)
	}
}

func TestRunCanceledBeforeStart(t *testing.T) {
	t.Parallel()
	dev := &fakeDevice{clock: clock.NewMock(), lockedFrom: -1}
	r, err := NewRunner(Config{Policy: Default(), Device: dev, Clock: dev.clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	out, err := r.Run(ctx, t0)
	if !errors.Is(err, context.Canceled) || out.Result != Canceled || len(dev.calls) != 0 {
		t.Fatalf("Run() = %+v, %v; calls %v", out, err, dev.calls)
	}
}
