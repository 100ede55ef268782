package task_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/taskfleet/taskfleet/task"
)

type apiSettings struct {
	APIToken string `json:"api_token" validate:"omitempty,min=40"`
	Key      string `json:"k" taskfleet:"secret" validate:"omitempty,len=8"`
	Hosts    []struct {
		Pass string `json:"pass" taskfleet:"secret" validate:"max=3"`
	} `json:"hosts" validate:"dive"`
	Mode string `json:"mode" validate:"oneof=fast slow"`
}

// A settings value that is secret (by its name, its look, or the
// `taskfleet:"secret"` tag) is never quoted in a validation error (today:
// invalid settings.api_token "tok-…") nor shown in a revision diff; other
// values still are.
func TestSecretSettingsNeverInErrorsOrDiffs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	must(t, b.m.Registry().Register(task.TaskType{Application: appES, Name: "api", Settings: apiSettings{Mode: "fast"}}))
	bad := apiSettings{APIToken: "tok-live-0123", Key: "hunter22x", Mode: "warp"}
	bad.Hosts = append(bad.Hosts, struct {
		Pass string `json:"pass" taskfleet:"secret" validate:"max=3"`
	}{Pass: "swordfish"})
	in := task.Task{Name: "API", Application: appES, Type: "api", Scope: devicesScope("dev-01"), Settings: bad}
	_, err := b.m.Create(b.ctx, b.admin, in)
	err2 := b.m.Registry().ValidateSettings(appES, "api", bad)
	for _, e := range []error{err, err2} {
		if !errors.Is(e, task.ErrInvalid) {
			t.Fatalf("err = %v, want ErrInvalid", e)
		}
		msg := e.Error()
		for _, secret := range []string{"tok-live", "hunter22x", "swordfish"} {
			if strings.Contains(msg, secret) {
				t.Errorf("the error quotes the secret %q: %s", secret, msg)
			}
		}
		for _, field := range []string{"settings.api_token", "settings.k", "settings.hosts[0].pass", `settings.mode "warp"`} {
			if !strings.Contains(msg, field) {
				t.Errorf("the error does not name %s: %s", field, msg)
			}
		}
	}
	good := apiSettings{Key: "abcdefgh", Mode: "fast"}
	in.Settings = good
	created, err := b.m.Create(b.ctx, b.admin, in)
	must(t, err)
	upd := *created
	good.Key = "zyxwvuts"
	upd.Settings = good
	_, err = b.m.Update(b.ctx, b.admin, upd)
	must(t, err)
	rev, err := b.m.Revision(b.ctx, b.admin, created.ID, 2)
	must(t, err)
	out, err := json.Marshal(rev.Changes)
	must(t, err)
	if strings.Contains(string(out), "abcdefgh") || strings.Contains(string(out), "zyxwvuts") || !strings.Contains(string(out), "settings.k") {
		t.Fatalf("revision diff: %s", out)
	}
}
