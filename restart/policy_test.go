package restart

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultIsTheSeedsDefault(t *testing.T) {
	t.Parallel()
	want := Policy{
		Action:           Prompt,
		Message:          "",
		RepeatPrompt:     Interval{Enabled: true, Minutes: 5},
		RestartAfter:     Interval{Enabled: true, Minutes: 30},
		ForceCloseLocked: false,
	}
	if diff := cmp.Diff(want, Default()); diff != "" {
		t.Fatalf("Default() mismatch (-want +got):\n%s", diff)
	}
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if Default().IsZero() || !(Policy{}).IsZero() {
		t.Fatal("IsZero is wrong")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	with := func(f func(*Policy)) Policy { p := Default(); f(&p); return p }
	type fieldErr = struct{ Field, Value, Reason string }
	tests := []struct {
		name string
		p    Policy
		want []fieldErr // nil: valid
	}{
		{"default", Default(), nil},
		{"do not restart", with(func(p *Policy) { p.Action = DoNotRestart }), nil},
		{"restart", with(func(p *Policy) { p.Action = Restart }), nil},
		{"prompt", with(func(p *Policy) { p.Action = Prompt }), nil},
		{"empty action", with(func(p *Policy) { p.Action = "" }), []fieldErr{{"action", "", `must be one of "do_not_restart", "restart", "prompt"`}}},
		{"unknown action", with(func(p *Policy) { p.Action = "reboot" }), []fieldErr{{"action", "reboot", `must be one of "do_not_restart", "restart", "prompt"`}}},
		{"action is case sensitive", with(func(p *Policy) { p.Action = "Prompt" }), []fieldErr{{"action", "Prompt", `must be one of "do_not_restart", "restart", "prompt"`}}},
		{"repeat 1 (min)", with(func(p *Policy) { p.RepeatPrompt.Minutes = 1 }), nil},
		{"repeat 1440 (max)", with(func(p *Policy) { p.RepeatPrompt.Minutes = 1440 }), nil},
		{"repeat 0", with(func(p *Policy) { p.RepeatPrompt.Minutes = 0 }), []fieldErr{{"repeat_prompt.minutes", "0", "must be between 1 and 1440"}}},
		{"repeat 1441", with(func(p *Policy) { p.RepeatPrompt.Minutes = 1441 }), []fieldErr{{"repeat_prompt.minutes", "1441", "must be between 1 and 1440"}}},
		{"repeat -5", with(func(p *Policy) { p.RepeatPrompt.Minutes = -5 }), []fieldErr{{"repeat_prompt.minutes", "-5", "must be between 1 and 1440"}}},
		{"repeat off still range checked", with(func(p *Policy) { p.RepeatPrompt = Interval{Enabled: false, Minutes: 0} }), []fieldErr{{"repeat_prompt.minutes", "0", "must be between 1 and 1440"}}},
		{"repeat off in range", with(func(p *Policy) { p.RepeatPrompt.Enabled = false }), nil},
		{"after 1 (min)", with(func(p *Policy) { p.RestartAfter.Minutes = 1 }), nil},
		{"after 1440 (max)", with(func(p *Policy) { p.RestartAfter.Minutes = 1440 }), nil},
		{"after 0", with(func(p *Policy) { p.RestartAfter.Minutes = 0 }), []fieldErr{{"restart_after.minutes", "0", "must be between 1 and 1440"}}},
		{"after 1441", with(func(p *Policy) { p.RestartAfter.Minutes = 1441 }), []fieldErr{{"restart_after.minutes", "1441", "must be between 1 and 1440"}}},
		{"after off still range checked", with(func(p *Policy) { p.RestartAfter = Interval{Minutes: 99999} }), []fieldErr{{"restart_after.minutes", "99999", "must be between 1 and 1440"}}},
		{"after off in range", with(func(p *Policy) { p.RestartAfter.Enabled = false }), nil},
		{"force close on", with(func(p *Policy) { p.ForceCloseLocked = true }), nil},
		{"message", with(func(p *Policy) { p.Message = "Please restart.\nYour IT team\t:)" }), nil},
		{"message at max length", with(func(p *Policy) { p.Message = strings.Repeat("ä", MaxMessageLength) }), nil},
		{"message too long", with(func(p *Policy) { p.Message = strings.Repeat("ä", MaxMessageLength+1) }), []fieldErr{{"message", "", "must be at most 2048 characters, got 2049"}}},
		{"message control char", with(func(p *Policy) { p.Message = "a\x00b" }), []fieldErr{{"message", "", "must not contain control characters other than tab and line breaks"}}},
		{"message bad utf8", with(func(p *Policy) { p.Message = "a\xffb" }), []fieldErr{{"message", "", "must be valid UTF-8"}}},
		{"zero policy", Policy{}, []fieldErr{
			{"action", "", `must be one of "do_not_restart", "restart", "prompt"`},
			{"repeat_prompt.minutes", "0", "must be between 1 and 1440"},
			{"restart_after.minutes", "0", "must be between 1 and 1440"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.p.Validate()
			if diff := cmp.Diff(tt.want, fieldErrs(t, err)); diff != "" {
				t.Fatalf("Validate() errors mismatch (-want +got):\n%s\nerr: %v", diff, err)
			}
		})
	}
}

// fieldErrs flattens err into comparable triples, checking that it matches
// ErrInvalid.
func fieldErrs(t *testing.T, err error) []struct{ Field, Value, Reason string } {
	t.Helper()
	if err == nil {
		return nil
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v does not match ErrInvalid", err)
	}
	var list ValidationErrors
	var one *ValidationError
	switch {
	case errors.As(err, &list):
	case errors.As(err, &one):
		list = ValidationErrors{one}
	default:
		t.Fatalf("error %T is not a validation error", err)
	}
	var out []struct{ Field, Value, Reason string }
	for _, e := range list {
		out = append(out, struct{ Field, Value, Reason string }{e.Field, e.Value, e.Reason})
	}
	return out
}

func TestPolicyString(t *testing.T) {
	t.Parallel()
	p := Default()
	tests := []struct {
		p    Policy
		want string
	}{
		{Default(), "prompt (repeat every 5 min, restart after 30 min, keep locked sessions)"},
		{Policy{Action: Prompt, RepeatPrompt: Interval{Minutes: 5}, RestartAfter: Interval{Minutes: 30}, ForceCloseLocked: true}, "prompt (prompt once, no forced restart, force-close locked sessions)"},
		{Policy{Action: DoNotRestart}, "do not restart"},
		{Policy{Action: Restart}, "restart (keep locked sessions)"},
		{Policy{Action: "x"}, `invalid restart policy "x"`},
	}
	_ = p
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}
