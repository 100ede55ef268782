// Command fleetload is the load test of the HTTPS device channel
// (package task/transport/httptransport): one server process (the
// engine on SQLite, or PostgreSQL with -postgres) and -agents simulated
// agents with distinct identities, in -sims separate simulator processes,
// over HTTPS (TLS 1.3, HTTP/2) on loopback.
//
//	go run ./examples/fleetload -agents 1000             # about 30 s
//	go run ./examples/fleetload -agents 100000 -sims 8   # the full size
//
// # What it does
//
// Each simulated agent enrolls with the fleet's enrollment secret (its own
// key), long-polls (or, with -checkin, polls without waiting that often), heartbeats every -heartbeat, runs every start it gets
// once (at once) and reports the result until the server acknowledges it.
// The agents of one simulator process share its HTTP/2 connections
// (-conns clients, each bound to its own source address in 127.0.0.0/8
// so that ephemeral ports never run out); each request still carries its
// own device's key. The server holds one poll per agent: with HTTP/2 the
// polls are streams (at most 1,000 per connection), so the server's open
// files stay far below the 20,000 limit. The server keeps the key hashes
// in its store (httptransport.StoreKeys on sqlstore's device_keys table),
// so they survive its kill.
//
// The coordinator (this command) then measures, and prints:
//
//  1. steady state: requests/s, server CPU and resident memory, memory
//     per connected device (the growth of the server's RSS from before
//     the agents came, divided by the agents), held polls and open files;
//  2. the steady-state latency of a start: -probes single-device starts,
//     one every 100 ms, on devices spread over the agents, and the p50/p99
//     from Start to the device's receipt;
//  3. a manual start of one task on all agents (the fan-out): the time until every
//     agent has the StartRun, and until every result is recorded; the
//     p50/p99 latency from Start to receipt;
//  4. a start, then a SIGKILL of the server 300 ms later and a restart:
//     the time until every agent is connected again, then that every
//     agent ran both runs exactly once and every result is recorded.
//
// Every agent counts its failed requests by kind (the HTTP status and
// the server's reason: "enroll 429 rate_limited", "poll unreachable" …);
// the coordinator prints them after connecting and at the end, and when a
// phase times out it lists the agents that never connected or are failing,
// with their last error (the simulators' stderr also carries a few sampled
// warnings of the agents).
//
// Every wait is bounded (-timeout, connecting -connect-timeout); loops are
// bounded by the agent count.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const (
	// childEnv marks a process started by the coordinator.
	childEnv = "FLEETLOAD_CHILD"
	// secretEnv carries the enrollment secret to the children.
	secretEnv = "FLEETLOAD_SECRET"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fleetload:", err)
		os.Exit(1)
	}
}

type options struct {
	mode           string
	agents         int
	sims           int
	conns          int
	dir            string
	postgres       string
	addr           string
	admin          string
	server         string
	from, to       int
	index          int
	wait           time.Duration
	heartbeat      time.Duration
	retry          time.Duration
	ramp           time.Duration
	steady         time.Duration
	backoffMin     time.Duration
	backoffMax     time.Duration
	timeout        time.Duration
	connectTimeout time.Duration
	json           string
	checkIn        time.Duration
	lease          time.Duration
	probes         int
	profile        string
}

func parse(args []string, out io.Writer) (options, error) {
	fs := flag.NewFlagSet("fleetload", flag.ContinueOnError)
	fs.SetOutput(out)
	var o options
	fs.StringVar(&o.mode, "mode", "run", "run (the coordinator), server or sim (started by run)")
	fs.IntVar(&o.agents, "agents", 1000, "simulated agents, 1..200000")
	fs.IntVar(&o.sims, "sims", 2, "simulator processes, 1..64")
	fs.IntVar(&o.conns, "conns", 8, "HTTP/2 clients (source addresses) per simulator, 1..250")
	fs.StringVar(&o.dir, "dir", "", "directory for the server's database, keys and certificates (default: a new temporary one)")
	fs.StringVar(&o.postgres, "postgres", "", "PostgreSQL URL of the server's store (default: SQLite in -dir)")
	fs.DurationVar(&o.wait, "wait", 30*time.Second, "long-poll hold (the server's MaxWait and the agents' Wait)")
	fs.DurationVar(&o.heartbeat, "heartbeat", time.Minute, "agents' heartbeat interval")
	fs.DurationVar(&o.retry, "retry", 5*time.Second, "the engine's RetryInterval (unanswered starts are resent)")
	fs.DurationVar(&o.lease, "lease", 10*time.Second, "the engine's LeaseTTL (a killed server's dispatched starts are taken over after it)")
	fs.DurationVar(&o.ramp, "ramp", 0, "spread the agents' first connection over this long (default: agents/2000 s)")
	fs.DurationVar(&o.steady, "steady", 10*time.Second, "steady-state measurement window")
	fs.DurationVar(&o.backoffMin, "backoff-min", time.Second, "agents' reconnect backoff minimum")
	fs.DurationVar(&o.backoffMax, "backoff-max", 10*time.Second, "agents' reconnect backoff maximum")
	fs.DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up on a phase after this long")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", 0, "give up connecting the agents after this long, then list the agents not connected and their last error (default: 10m or -timeout if shorter)")
	fs.StringVar(&o.json, "json", "", "write the figures as JSON to this file")
	fs.DurationVar(&o.checkIn, "checkin", 0, "agents check in (poll without waiting) this often instead of long polls (0: long polls)")
	fs.IntVar(&o.probes, "probes", 200, "single-device starts for the steady-state latency, one every 100 ms, 0 to 1000")
	fs.StringVar(&o.profile, "profile", "", "write a 30 s CPU profile of the server from the manual start on to this file")
	// Set by the coordinator for its children.
	fs.StringVar(&o.addr, "addr", "127.0.0.1:0", "server: the channel's address")
	fs.StringVar(&o.admin, "admin", "127.0.0.1:0", "server: the admin API's address")
	fs.StringVar(&o.server, "server", "", "sim: the server's URL")
	fs.IntVar(&o.from, "from", 1, "sim: first device")
	fs.IntVar(&o.to, "to", 1, "sim: last device")
	fs.IntVar(&o.index, "index", 0, "sim: simulator number")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.mode != "run" && o.mode != "server" && o.mode != "sim":
		return o, fmt.Errorf("-mode %q: must be run, server or sim", o.mode)
	case o.agents < 1 || o.agents > 200000:
		return o, fmt.Errorf("-agents %d: must be between 1 and 200000", o.agents)
	case o.sims < 1 || o.sims > 64 || o.sims > o.agents:
		return o, fmt.Errorf("-sims %d: must be between 1 and 64, at most -agents", o.sims)
	case o.conns < 1 || o.conns > 250:
		return o, fmt.Errorf("-conns %d: must be between 1 and 250", o.conns)
	case o.wait < time.Second || o.wait > 5*time.Minute:
		return o, fmt.Errorf("-wait %s: must be between 1s and 5m", o.wait)
	case o.heartbeat < time.Second || o.retry < 100*time.Millisecond || o.steady < time.Second || o.backoffMin <= 0 || o.backoffMax < o.backoffMin:
		return o, errors.New("-heartbeat, -retry, -steady, -backoff-min and -backoff-max: out of range")
	case o.lease < time.Second || o.lease > 10*time.Minute:
		return o, fmt.Errorf("-lease %s: must be between 1s and 10m", o.lease)
	case o.checkIn < 0 || o.checkIn > 10*time.Minute:
		return o, fmt.Errorf("-checkin %s: must be between 0 and 10m", o.checkIn)
	case o.probes < 0 || o.probes > maxProbes:
		return o, fmt.Errorf("-probes %d: must be between 0 and %d", o.probes, maxProbes)
	case o.connectTimeout < 0 || o.connectTimeout > o.timeout:
		return o, fmt.Errorf("-connect-timeout %s: must be positive and at most -timeout", o.connectTimeout)
	case o.from < 1 || o.to < o.from:
		return o, errors.New("-from and -to: a range of devices")
	}
	if o.connectTimeout == 0 {
		o.connectTimeout = min(10*time.Minute, o.timeout)
	}
	if o.ramp == 0 {
		o.ramp = time.Duration(o.agents) * time.Second / 2000
	}
	return o, nil
}

func run(ctx context.Context, args []string, in io.Reader, out io.Writer) error {
	o, err := parse(args, out)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	switch o.mode {
	case "server":
		if o.dir == "" {
			return errors.New("-dir: required in server mode")
		}
		return serve(ctx, o, out)
	case "sim":
		if o.dir == "" || o.server == "" {
			return errors.New("-dir and -server: required in sim mode")
		}
		return simulate(ctx, o, in, out)
	}
	_, err = coordinate(ctx, o, out)
	return err
}
