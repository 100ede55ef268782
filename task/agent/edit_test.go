package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

// The device user's edit of a local task goes out as a LocalEdit naming
// the user and the base revision, carrying the edited TaskSpec.
func TestEditLocalTaskQueuesTheEditedSpec(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _, ep := newAgent(t, &exec{running: true}, nil)
	d := def("loc")
	d.Task.Scope = transport.ScopeSpec{Kind: transport.ScopeLocal}
	a.Handle(ctx, transport.Message{Kind: transport.Deliver, Definition: &d})
	edited := a.Tasks()[0].Task
	edited.Description = "mine"
	edited.Settings = json.RawMessage(`{"action":"disinfect"}`)
	if err := a.EditLocalTask(ctx, "alice", edited); err != nil {
		t.Fatal(err)
	}
	if err := a.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	var got *transport.Edit
	for _, m := range ep.sent {
		if m.Kind == transport.LocalEdit {
			got = m.Edit
		}
	}
	if got == nil || got.User != "alice" || got.BaseRevision != d.Task.Revision {
		t.Fatalf("edit sent: %+v", got)
	}
	var sp transport.TaskSpec
	if err := json.Unmarshal(got.Task, &sp); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(edited, sp, cmp.Comparer(func(a, b json.RawMessage) bool { return string(a) == string(b) })); diff != "" {
		t.Errorf("edited spec (-edited +sent):\n%s", diff)
	}
}

// What the server would refuse is refused on the device, with a
// validation error, and nothing is queued.
func TestEditAndEventInputIsCheckedOnTheDevice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, _, _ := newAgent(t, &exec{running: true}, nil)
	loc := def("loc")
	loc.Task.Scope = transport.ScopeSpec{Kind: transport.ScopeLocal}
	a.Handle(ctx, transport.Message{Kind: transport.Deliver, Definition: &loc})
	a.Handle(ctx, transport.Message{Kind: transport.Deliver, Definition: manualDef(restart.Default())})
	spec := func(id string) transport.TaskSpec {
		for _, d := range a.Tasks() {
			if d.Task.ID == id {
				return d.Task
			}
		}
		return transport.TaskSpec{ID: id}
	}
	badSettings := spec("loc")
	badSettings.Settings = json.RawMessage(`{"action":`)
	for name, err := range map[string]error{
		"a group task":                 a.EditLocalTask(ctx, "alice", spec("m")),
		"a task not held":              a.EditLocalTask(ctx, "alice", spec("nope")),
		"a user name too long":         a.EditLocalTask(ctx, strings.Repeat("u", transport.MaxUserBytes+1), spec("loc")),
		"a user name not UTF-8":        a.EditLocalTask(ctx, "al\xffice", spec("loc")),
		"settings not JSON":            a.EditLocalTask(ctx, "alice", badSettings),
		"an event of a task not held":  a.ReportEvent(ctx, "", agent.Event{TaskID: "nope", Level: transport.EventInfo, Severity: transport.SeverityInfo}),
		"an event without level":       a.ReportEvent(ctx, "", agent.Event{TaskID: "m", Severity: transport.SeverityInfo}),
		"an event of unknown severity": a.ReportEvent(ctx, "", agent.Event{TaskID: "m", Level: transport.EventInfo, Severity: "fatal"}),
	} {
		var ve *agent.ValidationError
		if !errors.Is(err, agent.ErrInvalid) || !errors.As(err, &ve) {
			t.Errorf("%s: %v, want a *ValidationError", name, err)
		}
	}
	if n := a.OutboxLen(ctx); n != 0 {
		t.Errorf("%d messages queued, want none", n)
	}
}
