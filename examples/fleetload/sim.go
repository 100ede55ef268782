package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport/testpki"
)

// simDevice is one simulated agent: its own identity (enrolled key) and a
// minimal agent: it holds the definitions it is sent, runs every start
// once (at once), reports the result until acknowledged and heartbeats.
type simDevice struct {
	sim *simulator
	id  scope.DeviceID
	c   *httptransport.Client

	mu       sync.Mutex
	held     map[string]transport.HeldTask
	executed map[string]bool // task/run
	unacked  map[string]transport.Message
	sentAt   map[string]time.Time // when each unacknowledged result was last sent
	enrolled bool
	beaten   bool // a heartbeat was accepted
}

// simulator is one simulator process: the agents of devices from..to.
type simulator struct {
	o       options
	devs    []*simDevice
	enrolls atomic.Int64
	beats   chan *simDevice

	mu      sync.Mutex
	recvAt  map[int64][]int64 // run → when each device first received its start (Unix ms)
	execs   map[int64]int     // run → executions
	redeliv map[int64]int     // run → starts received again after executing
	probes  probeLog          // the latency probes' receipts (latency.go)

	fmu      sync.Mutex
	failures map[string]int64 // the agents' failures by kind (httptransport.Failure.Kind)
}

// maxStuck bounds the agents a report lists by name.
const maxStuck = 20

// stuckAgent is an agent that is not getting through to the server: it
// never did, or its latest request failed.
type stuckAgent struct {
	Device string `json:"device"`
	HasKey bool   `json:"has_key"`
	// LastContact is when the server last accepted its request (zero:
	// never); Failures its failures in all, Consecutive since then.
	LastContact time.Time `json:"last_contact"`
	Failures    int64     `json:"failures"`
	Consecutive int       `json:"consecutive"`
	LastError   string    `json:"last_error"`
	LastErrorAt time.Time `json:"last_error_at"`
}

// simReport is a simulator's answer to "report RUN".
type simReport struct {
	Devices  int   `json:"devices"`
	Enrolled int64 `json:"enrolled"`
	// ReceivedAtMs are the times (Unix ms) each device first received the
	// run's start.
	ReceivedAtMs []int64       `json:"received_at_ms"`
	Executions   map[int64]int `json:"executions"`
	Redelivered  int           `json:"redelivered"`
	Unacked      int           `json:"unacked"`
	// Failures counts the agents' failures (since they started) by kind;
	// NeverConnected the agents the server never accepted a request
	// from; Failing those whose latest request failed; Stuck names up to
	// maxStuck of either (the never connected first).
	Failures       map[string]int64 `json:"failures"`
	NeverConnected int              `json:"never_connected"`
	Failing        int              `json:"failing"`
	Stuck          []stuckAgent     `json:"stuck"`
}

// simulate runs the simulator process: agents of devices o.from..o.to,
// sharing o.conns HTTP/2 clients, each bound to its own source address
// 127.0.(10+o.index).(1+k); it answers "report RUN" lines on stdin.
func simulate(ctx context.Context, o options, in io.Reader, out io.Writer) error {
	raiseFileLimit()
	roots := testpki.PoolFromPEM(mustRead(filepath.Join(o.dir, "ca.pem")))
	var clients []*http.Client
	for k := range o.conns {
		local := &net.TCPAddr{IP: net.IPv4(127, 0, byte(10+o.index%240), byte(1+k%250))}
		hc := httptransport.NewHTTPClient(&tls.Config{RootCAs: roots})
		tr := hc.Transport.(*http.Transport)
		d := &net.Dialer{LocalAddr: local, Timeout: 10 * time.Second}
		tr.DialContext = d.DialContext
		// Enough HTTP/2 connections for this client's agents' polls (the
		// server allows 1,000 streams each), and no more: without a cap a
		// burst of requests dials one connection each.
		tr.MaxConnsPerHost = (o.to-o.from+1)/o.conns/500 + 2
		clients = append(clients, hc)
	}
	s := &simulator{o: o, beats: make(chan *simDevice, o.to-o.from+1), recvAt: map[int64][]int64{}, execs: map[int64]int{}, redeliv: map[int64]int{},
		failures: map[string]int64{}}
	// The agents' warnings (each agent's at most one a minute), a few
	// every 10 s for the whole simulator: samples, the counts are in
	// the reports.
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel).Sample(&zerolog.BurstSampler{Burst: 3, Period: 10 * time.Second})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := o.from; i <= o.to; i++ {
		d := &simDevice{sim: s, id: deviceID(i), held: map[string]transport.HeldTask{}, executed: map[string]bool{}, unacked: map[string]transport.Message{}, sentAt: map[string]time.Time{}}
		c, err := httptransport.NewClient(httptransport.ClientConfig{URL: o.server, Device: d.id, HTTPClient: clients[i%len(clients)],
			EnrollSecret: httptransport.Secret(os.Getenv(secretEnv)), Wait: o.wait, CheckIn: o.checkIn, BackoffMin: o.backoffMin, BackoffMax: o.backoffMax,
			SaveKey: func(context.Context, httptransport.Secret) error { d.onEnrolled(); return nil }, Logger: log, OnFailure: s.failed})
		if err != nil {
			return err
		}
		d.c = c
		s.devs = append(s.devs, d)
	}
	// Agents start over o.ramp, not all in the same millisecond.
	for i, d := range s.devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if o.ramp > 0 {
				select {
				case <-time.After(o.ramp * time.Duration(i) / time.Duration(len(s.devs))):
				case <-ctx.Done():
					return
				}
			}
			_ = d.c.Run(ctx, d)
		}()
	}
	// Heartbeat and resend workers: every heartbeat interval each device
	// heartbeats and resends unacknowledged results.
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case d := <-s.beats:
					d.beat(ctx)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(o.heartbeat)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			for _, d := range s.devs {
				select {
				case s.beats <- d:
				default: // the workers are behind: this round skips it
				}
			}
		}
	}()
	// READY once every agent enrolled and the server accepted one of its
	// requests.
	go func() {
		for ctx.Err() == nil {
			if s.enrolls.Load() == int64(len(s.devs)) && s.connected() == len(s.devs) {
				fmt.Fprintf(out, "READY %d\n", len(s.devs))
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if s.probes.command(f, out) {
			continue
		}
		if len(f) == 2 && f[0] == "report" {
			run, _ := strconv.ParseInt(f[1], 10, 64)
			b, _ := json.Marshal(s.report(run))
			fmt.Fprintf(out, "REPORT %s\n", b)
		}
	}
	cancel()
	wg.Wait()
	return nil
}

// failed counts an agent's failure (httptransport.ClientConfig.OnFailure).
func (s *simulator) failed(f httptransport.Failure) {
	k := f.Kind()
	s.fmu.Lock()
	s.failures[k]++
	s.fmu.Unlock()
}

// connected returns how many agents the server accepted a request from.
func (s *simulator) connected() int {
	n := 0
	for _, d := range s.devs {
		if !d.c.Status().LastContact.IsZero() {
			n++
		}
	}
	return n
}

func (s *simulator) report(run int64) simReport {
	r := simReport{Devices: len(s.devs), Enrolled: s.enrolls.Load(), Executions: map[int64]int{}, Failures: map[string]int64{}}
	s.fmu.Lock()
	for k, v := range s.failures {
		r.Failures[k] = v
	}
	s.fmu.Unlock()
	var failing []stuckAgent
	for _, d := range s.devs {
		st := d.c.Status()
		never := st.LastContact.IsZero()
		if !never && st.Consecutive == 0 {
			continue
		}
		a := stuckAgent{Device: string(d.id), HasKey: st.HasKey, LastContact: st.LastContact, Failures: st.Failures, Consecutive: st.Consecutive}
		if st.Last.Op != "" {
			a.LastError, a.LastErrorAt = st.Last.Error(), st.Last.At
		}
		if never {
			r.NeverConnected++
			if len(r.Stuck) < maxStuck {
				r.Stuck = append(r.Stuck, a)
			}
		} else {
			r.Failing++
			if len(failing) < maxStuck {
				failing = append(failing, a)
			}
		}
	}
	r.Stuck = append(r.Stuck, failing[:min(len(failing), maxStuck-len(r.Stuck))]...)
	slices.SortStableFunc(r.Stuck, func(a, b stuckAgent) int { return a.LastContact.Compare(b.LastContact) })
	s.mu.Lock()
	r.ReceivedAtMs = append([]int64(nil), s.recvAt[run]...)
	for k, v := range s.execs {
		r.Executions[k] = v
	}
	r.Redelivered = s.redeliv[run]
	s.mu.Unlock()
	for _, d := range s.devs {
		d.mu.Lock()
		r.Unacked += len(d.unacked)
		d.mu.Unlock()
	}
	return r
}

func (d *simDevice) onEnrolled() {
	d.mu.Lock()
	first := !d.enrolled
	d.enrolled = true
	d.mu.Unlock()
	if first {
		d.sim.enrolls.Add(1)
		select {
		case d.sim.beats <- d: // the first heartbeat makes it visible
		default:
		}
	}
}

// beat sends a heartbeat and resends unacknowledged results.
func (d *simDevice) beat(ctx context.Context) {
	d.mu.Lock()
	held := make([]transport.HeldTask, 0, len(d.held))
	for _, h := range d.held {
		held = append(held, h)
	}
	var resend []transport.Message
	for _, m := range d.unacked {
		resend = append(resend, m)
	}
	d.mu.Unlock()
	err := d.c.Send(ctx, transport.Message{Kind: transport.Heartbeat, SentAt: time.Now().UTC(), Heartbeat: &transport.HeartbeatInfo{Held: held}})
	d.mu.Lock()
	first := !d.beaten
	d.beaten = d.beaten || err == nil
	d.mu.Unlock()
	if err != nil && first && ctx.Err() == nil {
		// The first heartbeat makes the device visible: like an agent's
		// outbox, try it again (it can leave before the client uses its
		// new key: not_enrolled) a second later, not a heartbeat interval.
		time.AfterFunc(time.Second, func() {
			select {
			case d.sim.beats <- d:
			default:
			}
		})
	}
	for _, m := range resend {
		_ = d.c.Send(ctx, m)
	}
}

// Handle implements transport.Handler: the device's side of the
// messages.
func (d *simDevice) Handle(ctx context.Context, m transport.Message) {
	now := time.Now()
	switch m.Kind {
	case transport.Deliver:
		if m.Definition != nil {
			d.mu.Lock()
			d.held[m.Definition.Task.ID] = transport.HeldTask{TaskID: m.Definition.Task.ID, Revision: m.Definition.Task.Revision, Slot: m.Slot}
			d.mu.Unlock()
		}
	case transport.Withdraw:
		d.mu.Lock()
		delete(d.held, m.TaskID)
		d.mu.Unlock()
	case transport.Ack:
		d.mu.Lock()
		for _, k := range m.Acks {
			delete(d.unacked, k)
			delete(d.sentAt, k)
		}
		d.mu.Unlock()
	case transport.StartRun:
		if m.Start == nil {
			return
		}
		st := *m.Start
		k := st.TaskID + "/" + strconv.FormatInt(st.RunID, 10)
		d.mu.Lock()
		done := d.executed[k]
		d.executed[k] = true
		d.mu.Unlock()
		s := d.sim
		// The latency probes' runs (latency.go) are counted apart.
		probe := s.probes.received(st.TaskID, st.RunID, now)
		s.mu.Lock()
		switch {
		case probe:
		case done:
			s.redeliv[st.RunID]++
		default:
			s.execs[st.RunID]++
			s.recvAt[st.RunID] = append(s.recvAt[st.RunID], now.UnixMilli())
		}
		s.mu.Unlock()
		if done {
			// Started again: the server has not recorded the result
			// yet. Resend it if it is still unacknowledged and was not
			// sent in the last retry interval.
			key := "r/" + k + "/" + strconv.FormatInt(transport.SeqDevice, 10)
			d.mu.Lock()
			res, ok := d.unacked[key]
			ok = ok && now.Sub(d.sentAt[key]) >= d.sim.o.retry
			if ok {
				d.sentAt[key] = now
			}
			d.mu.Unlock()
			if ok {
				_ = d.c.Send(ctx, res)
			}
			return
		}
		// The scan runs at once and completes.
		key := "r/" + k + "/" + strconv.FormatInt(transport.SeqDevice, 10)
		res := transport.Message{Kind: transport.Results, Key: key, Merged: []string{key}, SentAt: now.UTC(), Results: []transport.Result{{
			TaskID: st.TaskID, RunID: st.RunID, Seq: transport.SeqDevice, State: "completed", StartedAt: now.UTC(), FinishedAt: now.UTC(), UpdatedAt: now.UTC(), Progress: 100}}}
		d.mu.Lock()
		d.unacked[key] = res
		d.sentAt[key] = now
		d.mu.Unlock()
		_ = d.c.Send(ctx, res)
	}
}

func mustRead(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	return b
}
