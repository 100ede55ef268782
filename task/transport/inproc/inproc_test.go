package inproc_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/inproc"
)

type sink struct{ got []string }

func (s *sink) Handle(_ context.Context, m transport.Message) { s.got = append(s.got, m.Key) }

func send(t *testing.T, ep transport.DeviceEndpoint, n int) {
	t.Helper()
	for i := range n {
		if err := ep.Send(context.Background(), transport.Message{Key: fmt.Sprint(i), Kind: transport.Results}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		faults inproc.Faults
		check  func(t *testing.T, got []string, st inproc.Stats)
	}{
		{"none: in order, exactly once", inproc.Faults{}, func(t *testing.T, got []string, st inproc.Stats) {
			for i, k := range got {
				if k != fmt.Sprint(i) {
					t.Fatalf("got[%d] = %s", i, k)
				}
			}
			if len(got) != 1000 {
				t.Fatalf("%d delivered", len(got))
			}
		}},
		{"drop", inproc.Faults{Drop: 0.3}, func(t *testing.T, got []string, st inproc.Stats) {
			if len(got) < 600 || len(got) > 800 || st.Dropped != int64(1000-len(got)) {
				t.Fatalf("%d delivered, stats %+v", len(got), st)
			}
		}},
		{"duplicate", inproc.Faults{Duplicate: 0.3}, func(t *testing.T, got []string, st inproc.Stats) {
			if len(got) < 1200 || len(got) > 1400 || st.Duplicated != int64(len(got)-1000) {
				t.Fatalf("%d delivered, stats %+v", len(got), st)
			}
		}},
		{"reorder", inproc.Faults{Reorder: 0.3}, func(t *testing.T, got []string, st inproc.Stats) {
			inversions := 0
			for i := 1; i < len(got); i++ {
				var a, b int
				fmt.Sscan(got[i-1], &a)
				fmt.Sscan(got[i], &b)
				if b < a {
					inversions++
				}
			}
			if len(got) != 1000 || inversions == 0 {
				t.Fatalf("%d delivered, %d inversions", len(got), inversions)
			}
		}},
		{"filter", inproc.Faults{Filter: func(m transport.Message, toServer bool) inproc.Fate {
			if m.Key == "7" {
				return inproc.DropIt
			}
			return inproc.Pass
		}}, func(t *testing.T, got []string, st inproc.Stats) {
			for _, k := range got {
				if k == "7" {
					t.Fatal("filtered message delivered")
				}
			}
			if len(got) != 999 {
				t.Fatalf("%d delivered", len(got))
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			n := inproc.New(inproc.Config{Clock: clock.NewMock(), Faults: c.faults, Seed: 42})
			s := &sink{}
			n.Server(s)
			ep := n.Device("d1", transport.HandlerFunc(func(context.Context, transport.Message) {}))
			send(t, ep, 1000)
			n.Pump(context.Background())
			c.check(t, s.got, n.Stats())
		})
	}
}

func TestDelayDeliversWhenDue(t *testing.T) {
	t.Parallel()
	clk := clock.NewMock()
	n := inproc.New(inproc.Config{Clock: clk, Faults: inproc.Faults{Delay: time.Minute}, Seed: 1})
	s := &sink{}
	n.Server(s)
	ep := n.Device("d1", transport.HandlerFunc(func(context.Context, transport.Message) {}))
	send(t, ep, 100)
	n.Pump(context.Background())
	early := len(s.got)
	clk.Add(time.Minute)
	n.Pump(context.Background())
	if early == 100 || len(s.got) != 100 {
		t.Fatalf("delivered %d at once and %d after the delay", early, len(s.got))
	}
}

func TestDisconnect(t *testing.T) {
	t.Parallel()
	n := inproc.New(inproc.Config{Clock: clock.NewMock()})
	s := &sink{}
	srv := n.Server(transport.HandlerFunc(func(context.Context, transport.Message) {}))
	ep := n.Device("d1", s)
	send(t, ep, 1) // queued toward the server, lost on disconnect
	n.Disconnect("d1")
	if err := ep.Send(context.Background(), transport.Message{Key: "x"}); !errors.Is(err, transport.ErrUnreachable) {
		t.Fatalf("device send while disconnected: %v", err)
	}
	if err := srv.Send(context.Background(), transport.Message{Device: "d1"}); !errors.Is(err, transport.ErrUnreachable) {
		t.Fatalf("server send while disconnected: %v", err)
	}
	if n.Connected("d1") || n.Pending() != 0 {
		t.Fatal("still connected or messages kept")
	}
	n.Connect("d1")
	if err := srv.Send(context.Background(), transport.Message{Device: "d1", Key: "back"}); err != nil {
		t.Fatal(err)
	}
	n.Pump(context.Background())
	if len(s.got) != 1 || s.got[0] != "back" {
		t.Fatalf("got %v", s.got)
	}
}

type keep struct{ got []transport.Message }

func (k *keep) Handle(_ context.Context, m transport.Message) { k.got = append(k.got, m) }

// A device's endpoint sets the sender: a message naming another device
// reaches the server as the sending device's. With Wire, messages cross
// the wire codec: the server gets the protocol's form (the version set).
func TestDeviceEndpointSetsTheSender(t *testing.T) {
	t.Parallel()
	for _, wire := range []bool{false, true} {
		n := inproc.New(inproc.Config{Clock: clock.NewMock(), Wire: wire})
		srv := &keep{}
		n.Server(srv)
		ep := n.Device("d1", &keep{})
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(ep.Send(context.Background(), transport.Message{Key: "k", Kind: transport.Results, Device: "d2",
			Results: []transport.Result{{TaskID: "t", Device: "d2", RunID: 4, Seq: 2, State: "completed"}}}))
		n.Pump(context.Background())
		if len(srv.got) != 1 || srv.got[0].Device != "d1" {
			t.Fatalf("wire %v: server got %+v, want one message from d1", wire, srv.got)
		}
		if wire && srv.got[0].Version != transport.ProtocolVersion {
			t.Errorf("over the wire the message has version %d", srv.got[0].Version)
		}
		if r := srv.got[0].Results; len(r) != 1 || r[0].TaskID != "t" || r[0].State != "completed" {
			t.Errorf("wire %v: results %+v", wire, r)
		}
	}
}

// TestServerSendsReachTheirDevice: the server's sends find their device
// whatever device's message it is answering (the network remembers the
// device it last handed the server a message of, and must not send a
// message for another device there), and a send to a device that is
// disconnected, or was never attached, fails with ErrUnreachable, also
// right after that device's own message.
func TestServerSendsReachTheirDevice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := inproc.New(inproc.Config{Clock: clock.NewMock()})
	var errsTo []string
	var srv transport.ServerEndpoint
	srv = n.Server(transport.HandlerFunc(func(ctx context.Context, m transport.Message) {
		// Answer the sender, every device, and a stranger.
		for _, to := range []transport.DeviceID{m.Device, "a", "b", "c", "nobody"} {
			err := srv.Send(ctx, transport.Message{Kind: transport.Sync, Device: to, Key: string(m.Device) + ">" + string(to)})
			if err != nil {
				if !errors.Is(err, transport.ErrUnreachable) {
					t.Errorf("send to %s: %v, want ErrUnreachable", to, err)
				}
				errsTo = append(errsTo, string(m.Device)+">"+string(to))
			}
		}
	}))
	sinks := map[transport.DeviceID]*sink{}
	eps := map[transport.DeviceID]transport.DeviceEndpoint{}
	for _, id := range []transport.DeviceID{"a", "b", "c"} {
		sinks[id] = &sink{}
		eps[id] = n.Device(id, sinks[id])
	}
	for i, from := range []transport.DeviceID{"a", "b", "a", "c", "c", "b"} {
		if i == 4 {
			n.Disconnect("c") // after c's message was handed over
		}
		if err := eps[from].Send(ctx, transport.Message{Kind: transport.Heartbeat}); err != nil {
			if from != "c" || !errors.Is(err, transport.ErrUnreachable) {
				t.Fatal(err)
			}
		}
		n.Pump(ctx)
	}
	want := map[transport.DeviceID][]string{
		"a": {"a>a", "a>a", "b>a", "a>a", "a>a", "c>a", "b>a"},
		"b": {"a>b", "b>b", "b>b", "a>b", "c>b", "b>b", "b>b"},
		"c": {"a>c", "b>c", "a>c", "c>c", "c>c"},
	}
	for id, s := range sinks {
		if diff := cmp.Diff(want[id], s.got); diff != "" {
			t.Errorf("device %s got (-want +got):\n%s", id, diff)
		}
	}
	wantErrs := []string{"a>nobody", "b>nobody", "a>nobody", "c>nobody", "b>c", "b>nobody"}
	if diff := cmp.Diff(wantErrs, errsTo); diff != "" {
		t.Errorf("unreachable sends (-want +got):\n%s", diff)
	}
}
