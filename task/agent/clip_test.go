package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Texts are clipped to the protocol's limits before they are queued, so
// the server never rejects an honest agent's item: a 5 KB failure
// message, a 10 KB event message and a 1 KB event key all go out within
// transport.MaxText and MaxKeyBytes, valid UTF-8; and every message names
// the protocol version and no device in its items.
func TestTextsAreClippedBeforeQueuing(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é stack frame\n", 5000/15+1)
	x := &exec{running: true, out: agent.Outcome{State: transport.StateFailed, Message: long}}
	a, clk, ep := newAgent(t, x, nil)
	d := manualDef(restart.Policy{Action: restart.DoNotRestart})
	start(a, d, 5)
	if err := a.ReportEvent(context.Background(), strings.Repeat("k", 1024), agent.Event{TaskID: "m", Level: transport.EventInfo, Severity: transport.SeverityInfo, Message: strings.Repeat("x", 10<<10)}); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute)
	if err := a.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	var results, events int
	for _, m := range ep.sent {
		if m.Version != transport.ProtocolVersion {
			t.Errorf("%s message of version %d", m.Kind, m.Version)
		}
		if len(m.Key) > transport.MaxKeyBytes {
			t.Errorf("%s message key of %d bytes", m.Kind, len(m.Key))
		}
		for _, r := range m.Results {
			results++
			if len(r.Message) > transport.MaxText || !utf8.ValidString(r.Message) || r.Device != "" {
				t.Errorf("result with a %d-byte message (valid UTF-8: %v), device %q", len(r.Message), utf8.ValidString(r.Message), r.Device)
			}
		}
		for _, e := range m.Events {
			events++
			if len(e.Message) > transport.MaxText || len(e.Key) > transport.MaxKeyBytes || e.Device != "" {
				t.Errorf("event with a %d-byte message, a %d-byte key, device %q", len(e.Message), len(e.Key), e.Device)
			}
		}
	}
	if results < 2 || events != 1 {
		t.Errorf("%d results and %d events sent, want the run's two and the event", results, events)
	}
}
