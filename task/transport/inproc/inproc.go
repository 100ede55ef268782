// Package inproc is an in-process transport.ServerEndpoint and
// DeviceEndpoint pair, for tests, examples, simulations and single-binary
// hosts, with fault injection: drop, delay, duplicate and reorder messages,
// and disconnect devices.
//
// # Delivery
//
// Send only queues a message. Messages are delivered by Pump, which hands
// every queued message whose delivery time has come (by the network's
// clock) to its receiver, including messages sent while pumping, until the
// queues are empty. Tests drive Pump explicitly, so a simulation on a
// clock.Mock is deterministic; Run pumps on a ticker for real hosts.
//
// # Faults
//
// # Identity
//
// The endpoint a device gets from Device is bound to that device: every
// message sent through it reaches the server with Message.Device set to
// it, whatever the message said, as the transport.ServerEndpoint contract
// requires of an authenticating transport.
//
// # Wire
//
// With Config.Wire every message is encoded and decoded with the wire
// codec (transport.Encode, transport.DecodeBytes) on its way, as over a
// real channel: the receiver gets only what the protocol carries. A
// message that does not survive the codec is dropped and counted
// (Stats.Dropped). Without it a message is passed as a value: its slices
// and pointed-to payloads are the sender's, which receivers only read
// (transport.Handler).
//
// Faults are drawn from a seeded generator, so a run with the same seed and
// the same sends is reproducible. A disconnected device's Send, and the
// server's Send to it, return transport.ErrUnreachable; messages already
// queued for or from it when it disconnects are lost.
package inproc

import (
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Faults configures fault injection. Rates are probabilities in [0, 1].
type Faults struct {
	// Drop loses a message.
	Drop float64
	// Duplicate delivers a message twice.
	Duplicate float64
	// Reorder delivers a message after the ones queued behind it.
	Reorder float64
	// Delay delays every message by a random duration in [0, Delay).
	Delay time.Duration
	// Filter, when set, decides the fate of each message before the
	// random faults; it returns Pass to apply them normally.
	Filter func(m transport.Message, toServer bool) Fate
}

// Fate is what Filter decides for one message.
type Fate int

// Fates.
const (
	Pass Fate = iota
	DropIt
	DuplicateIt
)

// Stats counts what the network did.
type Stats struct {
	// Sent counts messages handed to the network.
	Sent int64
	// Delivered counts messages handed to a Handler.
	Delivered int64
	// Dropped counts messages lost (a fault, or the device was
	// disconnected).
	Dropped int64
	// Duplicated counts messages delivered twice by a fault.
	Duplicated int64
	// Reordered counts messages held back by a fault so a later one
	// overtook them.
	Reordered int64
}

// Config configures a Network.
type Config struct {
	// Clock decides when delayed messages are due (default: wall clock).
	Clock clock.Clock
	// Faults are applied to every message.
	Faults Faults
	// Seed seeds the fault generator.
	Seed uint64
	// Wire sends every message through the wire codec (see the package
	// documentation); off by default (messages are passed as values).
	Wire bool
}

type envelope struct {
	m        transport.Message
	toServer bool
	// p is the device's peer when send found one (nil: none yet), so
	// Pump needs no map lookup per message.
	p     *peer
	at    time.Time
	order int64
}

// Network connects one server with many devices.
type Network struct {
	mu     sync.Mutex
	clk    clock.Clock
	faults Faults
	wire   bool
	rng    *rand.Rand
	server transport.Handler
	// peers holds each device's handler and connection state (one map
	// lookup per message rather than two).
	peers map[transport.DeviceID]*peer
	// last is the peer of the device whose message was last handed to
	// the server (or whose peer the server's send last looked up): the
	// server answers a message with sends to its device (a heartbeat's
	// deliveries and Sync, a result's acknowledgement), which find the
	// peer here by comparing the id instead of probing peers.
	last   *peer
	queue  []envelope
	due    []envelope // reused delivery buffer
	order  int64
	stats  Stats
	pumpMu sync.Mutex
	closed bool
}

// New returns an empty network.
func New(cfg Config) *Network {
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	return &Network{
		clk: cfg.Clock, faults: cfg.Faults, wire: cfg.Wire,
		rng:   rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		peers: map[transport.DeviceID]*peer{},
	}
}

// SetFaults replaces the fault configuration.
func (n *Network) SetFaults(f Faults) {
	n.mu.Lock()
	n.faults = f
	n.mu.Unlock()
}

// Stats returns the counters.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Server attaches the server's handler and returns its endpoint.
func (n *Network) Server(h transport.Handler) transport.ServerEndpoint {
	n.mu.Lock()
	n.server = h
	n.mu.Unlock()
	return serverEnd{n}
}

// Device attaches (or replaces, after an agent restart) a device's handler
// and returns its endpoint. A new device starts connected.
func (n *Network) Device(id transport.DeviceID, h transport.Handler) transport.DeviceEndpoint {
	n.mu.Lock()
	p := n.peer(id)
	p.h = h
	n.mu.Unlock()
	return deviceEnd{n, id, p}
}

// Disconnect cuts a device off: its queued messages are lost and sends to
// or from it fail with transport.ErrUnreachable until Connect.
func (n *Network) Disconnect(id transport.DeviceID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.peer(id).down = true
	keep := n.queue[:0]
	for _, e := range n.queue {
		if e.m.Device == id {
			n.stats.Dropped++
			continue
		}
		keep = append(keep, e)
	}
	n.queue = keep
}

// Connect reconnects a device.
func (n *Network) Connect(id transport.DeviceID) {
	n.mu.Lock()
	if p := n.peers[id]; p != nil {
		p.down = false
	}
	n.mu.Unlock()
}

// Connected reports whether a device is connected.
func (n *Network) Connected(id transport.DeviceID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.peers[id]
	return p != nil && p.h != nil && !p.down
}

// Close makes every later Send fail with ErrClosed.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	n.queue = nil
	n.mu.Unlock()
	return nil
}

// send queues m; p is the sending device's peer (nil: the server is
// sending, and m.Device's is looked up).
func (n *Network) send(m transport.Message, toServer bool, p *peer) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errs.ErrClosed
	}
	if p == nil {
		if l := n.last; l != nil && l.id == m.Device {
			p = l
		} else if p = n.peers[m.Device]; p != nil {
			n.last = p
		}
	}
	if p != nil && p.down {
		return transport.ErrUnreachable
	}
	if !toServer && (p == nil || p.h == nil) {
		return transport.ErrUnreachable
	}
	n.stats.Sent++
	if n.wire {
		b, err := transport.Encode(m)
		if err == nil {
			m, err = transport.DecodeBytes(b)
		}
		if err != nil {
			n.stats.Dropped++
			return nil
		}
	}
	copies := 1
	fate := Pass
	if n.faults.Filter != nil {
		fate = n.faults.Filter(m, toServer)
	}
	switch {
	case fate == DropIt:
		n.stats.Dropped++
		return nil
	case fate == DuplicateIt:
		copies = 2
	case n.faults.Drop > 0 && n.rng.Float64() < n.faults.Drop:
		n.stats.Dropped++
		return nil
	case n.faults.Duplicate > 0 && n.rng.Float64() < n.faults.Duplicate:
		copies = 2
	}
	if copies == 2 {
		n.stats.Duplicated++
	}
	now := n.clk.Now()
	for range copies {
		at := now
		if n.faults.Delay > 0 {
			at = at.Add(time.Duration(n.rng.Int64N(int64(n.faults.Delay))))
		}
		n.order++
		e := envelope{m: m, toServer: toServer, p: p, at: at, order: n.order}
		if n.faults.Reorder > 0 && n.rng.Float64() < n.faults.Reorder {
			n.stats.Reordered++
			e.order += 1 + n.rng.Int64N(8) // overtaken by the next few messages
		}
		n.queue = append(n.queue, e)
	}
	return nil
}

// Pending returns how many messages are queued.
func (n *Network) Pending() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.queue)
}

// Pump delivers every queued message that is due, and the messages those
// deliveries send, until nothing due is left (or ctx is done). It returns
// how many messages it delivered. Concurrent Pumps are serialized.
func (n *Network) Pump(ctx context.Context) int {
	n.pumpMu.Lock()
	defer n.pumpMu.Unlock()
	delivered := 0
	for ctx.Err() == nil {
		n.mu.Lock()
		now := n.clk.Now()
		// Partition in place: later messages stay at the front of the
		// queue, due ones move to the reused delivery buffer.
		due := n.due[:0]
		later := n.queue[:0]
		for _, e := range n.queue {
			if e.at.After(now) {
				later = append(later, e)
			} else {
				due = append(due, e)
			}
		}
		clear(n.queue[len(later):])
		n.queue = later
		if len(due) == 0 {
			// Keep the buffer for the next Pump: dropping it here made
			// every Pump regrow one from nothing.
			n.due = due
			n.mu.Unlock()
			return delivered
		}
		n.due = nil // handlers may Pump re-entrantly only through a new buffer
		n.mu.Unlock()
		// Without reordering faults the queue is already in order.
		byOrder := func(a, b envelope) int { return cmp.Compare(a.order, b.order) }
		if !slices.IsSortedFunc(due, byOrder) {
			slices.SortStableFunc(due, byOrder)
		}
		for _, e := range due {
			n.mu.Lock()
			var h transport.Handler
			if e.toServer {
				h = n.server
			} else if e.p != nil {
				h = e.p.h
			}
			down := e.p != nil && e.p.down
			if h != nil && !down {
				n.stats.Delivered++
				if e.toServer && e.p != nil {
					n.last = e.p
				}
			} else {
				n.stats.Dropped++
			}
			n.mu.Unlock()
			if h != nil && !down {
				h.Handle(ctx, e.m)
				delivered++
			}
		}
		clear(due)
		n.mu.Lock()
		n.due = due[:0]
		n.mu.Unlock()
	}
	return delivered
}

// Run pumps every interval until ctx is done (goroutine mode for hosts on
// the real clock).
func (n *Network) Run(ctx context.Context, interval time.Duration) {
	t := n.clk.Ticker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.Pump(ctx)
		}
	}
}

// peer is one device's handler (nil until Device) and connection state.
type peer struct {
	id   transport.DeviceID
	h    transport.Handler
	down bool
}

// peer returns id's peer, adding it; n.mu is held.
func (n *Network) peer(id transport.DeviceID) *peer {
	p := n.peers[id]
	if p == nil {
		p = &peer{id: id}
		n.peers[id] = p
	}
	return p
}

type serverEnd struct{ n *Network }

func (s serverEnd) Send(_ context.Context, m transport.Message) error { return s.n.send(m, false, nil) }

type deviceEnd struct {
	n  *Network
	id transport.DeviceID
	p  *peer // the device's, kept for the Network's life
}

func (d deviceEnd) Send(_ context.Context, m transport.Message) error {
	m.Device = d.id
	return d.n.send(m, true, d.p)
}

var (
	_ transport.ServerEndpoint = serverEnd{}
	_ transport.DeviceEndpoint = deviceEnd{}
)
