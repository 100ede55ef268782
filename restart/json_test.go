package restart

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPolicyJSONGolden(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file string
		p    Policy
	}{
		{"default_policy.json", Default()},
		{"custom_policy.json", Policy{
			Action:           Prompt,
			Message:          "Updates were installed. Please restart \"now\".",
			RepeatPrompt:     Interval{Enabled: false, Minutes: 15},
			RestartAfter:     Interval{Enabled: true, Minutes: 1440},
			ForceCloseLocked: true,
		}},
	} {
		got, err := json.MarshalIndent(tc.p, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", tc.file)
		if os.Getenv("UPDATE_GOLDEN") != "" {
			if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), string(got)+"\n"); diff != "" {
			t.Errorf("%s: encoding changed (-golden +got):\n%s", tc.file, diff)
		}
		var back Policy
		if err := json.Unmarshal(want, &back); err != nil {
			t.Fatalf("%s: decoding the golden file: %v", tc.file, err)
		}
		if diff := cmp.Diff(tc.p, back); diff != "" {
			t.Errorf("%s: round trip mismatch (-want +got):\n%s", tc.file, diff)
		}
	}
}

func TestPolicyJSONOmittedFieldsAreDefaults(t *testing.T) {
	t.Parallel()
	with := func(f func(*Policy)) Policy { p := Default(); f(&p); return p }
	tests := []struct {
		doc  string
		want Policy
	}{
		{`{}`, Default()},
		{` { } `, Default()},
		{`{"action":"restart"}`, with(func(p *Policy) { p.Action = Restart })},
		{`{"action":"do_not_restart"}`, with(func(p *Policy) { p.Action = DoNotRestart })},
		{`{"repeat_prompt":{}}`, Default()},
		{`{"repeat_prompt":{"minutes":10}}`, with(func(p *Policy) { p.RepeatPrompt.Minutes = 10 })},
		{`{"repeat_prompt":{"enabled":false}}`, with(func(p *Policy) { p.RepeatPrompt.Enabled = false })},
		{`{"restart_after":{"enabled":false}}`, with(func(p *Policy) { p.RestartAfter.Enabled = false })},
		{`{"restart_after":{"minutes":1440}}`, with(func(p *Policy) { p.RestartAfter.Minutes = 1440 })},
		{`{"force_close_locked":true}`, with(func(p *Policy) { p.ForceCloseLocked = true })},
		{`{"message":"hi"}`, with(func(p *Policy) { p.Message = "hi" })},
	}
	for _, tt := range tests {
		var got Policy
		if err := json.Unmarshal([]byte(tt.doc), &got); err != nil {
			t.Errorf("%s: %v", tt.doc, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: mismatch (-want +got):\n%s", tt.doc, diff)
		}
	}
}

func TestPolicyJSONStrict(t *testing.T) {
	t.Parallel()
	type fe = struct{ Field, Value, Reason string }
	tests := []struct {
		doc  string
		want []fe
	}{
		{`{"acton":"prompt"}`, []fe{{"acton", "", "unknown field; allowed: action, message, repeat_prompt, restart_after, force_close_locked"}}},
		{`{"repeat_prompt":{"minute":5}}`, []fe{{"repeat_prompt.minute", "", "unknown field; allowed: enabled, minutes"}}},
		{`{"action":"reboot"}`, []fe{{"action", "reboot", `must be one of "do_not_restart", "restart", "prompt"`}}},
		{`{"action":null}`, []fe{{"action", "", "must be a string, not null"}}},
		{`{"action":1}`, []fe{{"action", "", "must be a string"}}},
		{`{"message":null}`, []fe{{"message", "", "must be a string, not null"}}},
		{`{"force_close_locked":"yes"}`, []fe{{"force_close_locked", "", "must be true or false"}}},
		{`{"force_close_locked":null}`, []fe{{"force_close_locked", "", "must be true or false, not null"}}},
		{`{"repeat_prompt":null}`, []fe{{"repeat_prompt", "", "must be a JSON object, got null"}}},
		{`{"repeat_prompt":5}`, []fe{{"repeat_prompt", "", "must be a JSON object, got a number"}}},
		{`{"repeat_prompt":{"enabled":1}}`, []fe{{"repeat_prompt.enabled", "", "must be true or false"}}},
		{`{"repeat_prompt":{"minutes":0}}`, []fe{{"repeat_prompt.minutes", "0", "must be between 1 and 1440"}}},
		{`{"repeat_prompt":{"minutes":1441}}`, []fe{{"repeat_prompt.minutes", "1441", "must be between 1 and 1440"}}},
		{`{"repeat_prompt":{"minutes":5.5}}`, []fe{{"repeat_prompt.minutes", "5.5", "must be an integer between 1 and 1440"}}},
		{`{"repeat_prompt":{"minutes":5e0}}`, []fe{{"repeat_prompt.minutes", "5e0", "must be an integer between 1 and 1440"}}},
		{`{"repeat_prompt":{"minutes":"5"}}`, []fe{{"repeat_prompt.minutes", `"5"`, "must be an integer between 1 and 1440"}}},
		{`{"repeat_prompt":{"minutes":null}}`, []fe{{"repeat_prompt.minutes", "null", "must be an integer between 1 and 1440"}}},
		{`{"restart_after":{"minutes":99999999999999999999}}`, []fe{{"restart_after.minutes", "99999999999999999999", "must be an integer between 1 and 1440"}}},
		{`{"restart_after":{"minutes":-1}}`, []fe{{"restart_after.minutes", "-1", "must be between 1 and 1440"}}},
		{`{"action":"prompt","action":"restart"}`, []fe{{"action", "", "duplicate field"}}},
		{`{"repeat_prompt":{"minutes":5,"minutes":6}}`, []fe{{"repeat_prompt.minutes", "", "duplicate field"}}},
		{`[]`, []fe{{"", "", "must be a JSON object, got an array"}}},
		{`null`, []fe{{"", "", "must be a JSON object, got null"}}},
		{`"prompt"`, []fe{{"", "", "must be a JSON object, got a string"}}},
		{`{"action":"x","force_close_locked":0,"bogus":1}`, []fe{
			{"force_close_locked", "", "must be true or false"},
			{"bogus", "", "unknown field; allowed: action, message, repeat_prompt, restart_after, force_close_locked"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.doc, func(t *testing.T) {
			t.Parallel()
			// Through UnmarshalJSON directly, so documents encoding/json
			// would reject before calling us are covered too.
			p := Default()
			p.Message = "unchanged"
			err := p.UnmarshalJSON([]byte(tt.doc))
			if err == nil {
				t.Fatalf("no error; decoded %+v", p)
			}
			if diff := cmp.Diff(tt.want, fieldErrs(t, err)); diff != "" {
				t.Fatalf("errors mismatch (-want +got):\n%s\nerr: %v", diff, err)
			}
			if p.Message != "unchanged" {
				t.Fatal("a failed decode modified the policy")
			}
		})
	}
}

func TestPolicyJSONMalformed(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{``, `{`, `{"action"`, `{"action":}`, `{"action":"prompt"} {}`, `{"action":"prompt"}x`, `{1:2}`, strings.Repeat(" ", MaxPolicyJSONSize+1)} {
		var p Policy
		err := p.UnmarshalJSON([]byte(doc))
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%.40q: err = %v, want ErrInvalid", doc, err)
		}
	}
}

func TestPolicyJSONInsideStruct(t *testing.T) {
	t.Parallel()
	// The error reaches a caller decoding an enclosing document unchanged.
	var doc struct {
		Restart Policy `json:"restart"`
	}
	err := json.Unmarshal([]byte(`{"restart":{"restart_after":{"minutes":0}}}`), &doc)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "restart_after.minutes" {
		t.Fatalf("err = %#v, want a *ValidationError for restart_after.minutes", err)
	}
}

func TestOutcomeJSON(t *testing.T) {
	t.Parallel()
	out := Outcome{Result: RestartRequired, Reason: ReasonSessionLocked, RequiredAt: t0, Prompts: at(0, 5)}
	js, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"result":"restart_required","reason":"session_locked","required_at":"2026-03-29T00:50:00Z","prompts":["2026-03-29T00:50:00Z","2026-03-29T00:55:00Z"]}`
	if string(js) != want {
		t.Fatalf("Outcome JSON:\n got %s\nwant %s", js, want)
	}
}
