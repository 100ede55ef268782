package agent_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

type nopEndpoint struct{}

func (nopEndpoint) Send(context.Context, transport.Message) error { return nil }

// A host that forgets Attach learns it from the first Tick, not from a
// fleet that silently never reports.
func TestTickBeforeAttachFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(t0)
	a, err := agent.New(ctx, agent.Config{Device: "d1", Store: agent.NewMemStore(), Executor: printExec{}, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Tick(ctx); !errors.Is(err, agent.ErrNotAttached) {
		t.Fatalf("Tick before Attach = %v, want ErrNotAttached", err)
	}
	if err := a.Run(ctx, time.Minute); !errors.Is(err, agent.ErrNotAttached) {
		t.Fatalf("Run before Attach = %v, want ErrNotAttached", err)
	}
	a.Attach(nopEndpoint{})
	if err := a.Tick(ctx); err != nil {
		t.Fatalf("Tick after Attach: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Tick(ctx); !errors.Is(err, agent.ErrClosed) {
		t.Fatalf("Tick after Close = %v, want ErrClosed", err)
	}
}
