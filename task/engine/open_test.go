package engine_test

import (
	"context"
	"errors"
	"testing"

	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport/inproc"
)

// A second Open would rebind the server to another Manager or endpoint
// under its running state; it is refused, and the first binding keeps
// working.
func TestOpenTwiceFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, inv := memstore.New(), inmem.New()
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv})
	if err != nil {
		t.Fatal(err)
	}
	m, err := task.New(task.Config{Store: store, Registry: task.NewRegistry(), Inventory: inv, Dispatcher: srv})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Tick(ctx); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Tick before Open = %v, want ErrClosed", err)
	}
	net := inproc.New(inproc.Config{})
	if err := srv.Open(ctx, m, net.Server(srv)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(ctx, m, net.Server(srv)); !errors.Is(err, engine.ErrAlreadyOpen) {
		t.Fatalf("second Open = %v, want ErrAlreadyOpen", err)
	}
	if err := srv.Tick(ctx); err != nil {
		t.Fatalf("Tick after the refused Open: %v", err)
	}
}
