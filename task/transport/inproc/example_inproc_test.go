package inproc_test

import (
	"context"
	"fmt"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/inproc"
)

// A network that duplicates every message; the receiver de-duplicates by
// idempotency key, as the contract requires.
func Example() {
	net := inproc.New(inproc.Config{Clock: clock.NewMock(), Faults: inproc.Faults{Duplicate: 1}})
	seen := map[string]bool{}
	net.Server(transport.HandlerFunc(func(_ context.Context, m transport.Message) {
		if seen[m.Key] {
			fmt.Println("duplicate ignored:", m.Key)
			return
		}
		seen[m.Key] = true
		fmt.Println("received:", m.Key, "from", m.Device)
	}))
	dev := net.Device("pc-1", transport.HandlerFunc(func(context.Context, transport.Message) {}))
	_ = dev.Send(context.Background(), transport.Message{Key: "r/pc-1/scan/1/2", Kind: transport.Results})
	net.Pump(context.Background())
	fmt.Printf("%+v\n", net.Stats())
	// Output:
	// received: r/pc-1/scan/1/2 from pc-1
	// duplicate ignored: r/pc-1/scan/1/2
	// {Sent:1 Delivered:2 Dropped:0 Duplicated:1 Reordered:0}
}
