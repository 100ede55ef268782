// Command httptransport is a host wiring the HTTPS device channel of
// package task/transport/httptransport: the taskfleet server and the
// device agents run in separate processes and talk over HTTPS (TLS 1.3,
// HTTP/2) on the loopback interface.
//
//	go run ./examples/httptransport                    # -mode demo: the whole scenario
//	HTTPTRANSPORT_SECRET=... go run ./examples/httptransport -mode server -devices 3 -db server.db -pki DIR
//	HTTPTRANSPORT_SECRET=... go run ./examples/httptransport -mode agent -server https://127.0.0.1:PORT -device dev-1 -db dev-1.db -pki DIR
//
// # The channel
//
// The server mounts an httptransport.Server (the engine's
// transport.ServerEndpoint) in its own http.Server with the certificate
// in -pki (server.pem, server.key; the demo makes a throwaway CA with
// package testpki); agents trust the CA in -pki/ca.pem. Devices use the
// enrollment identity: an agent without a key enrolls once with the
// fleet's enrollment secret (HTTPTRANSPORT_SECRET, in the environment,
// never on the command line) and keeps the key it receives in DB.key next
// to its database; the server keeps only the keys' hashes, and only for
// devices of its inventory. Every request carries the device's key, is
// authenticated before its body is read, and its message is handed to
// the engine with the authenticated device as its sender. Server to
// device: long polls, answered as soon as a message is queued for the
// device. The package documentation has the rest (limits, compression,
// reconnect with backoff, the behaviour on 401). The server's admin API
// of the demo (start, refuse, status) is plain HTTP on another loopback
// port (-admin).
//
// Messages are lost where the channel allows it (a poll answer that does
// not arrive): the runtimes repair it (see package task/transport): the
// agent keeps every result in its durable SQLite outbox until the server
// acknowledges its key, and the server resends starts until the device
// reports the run.
//
// # The demo
//
// -mode demo starts a server process and -agents agent processes (this
// binary, run again), on the real clock, and:
//
//  1. starts a task manually; every device runs it once and reports;
//  2. has the server refuse results (as in an outage), starts the task
//     again, kills one agent (SIGKILL) after its run finished, while its
//     result waits in its outbox, restarts it, and lets the server accept
//     results again: the result arrives from the restarted agent's outbox;
//  3. starts the task again and kills another agent in the middle of its
//     run: the restarted agent reports that run failed and does not run it
//     again.
//
// It then checks that every (device, run) was executed once and has
// exactly one final result in the server's history, and stops every
// process it started. Everything listens on 127.0.0.1 only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "httptransport:", err)
		os.Exit(1)
	}
}

type options struct {
	mode    string
	addr    string
	server  string
	device  string
	db      string
	devices int
	agents  int
	runTime time.Duration
	timeout time.Duration
	dir     string
	// pki is the directory of ca.pem, server.pem and server.key; admin
	// the server's admin API address.
	pki, admin string
	// secret is the enrollment secret, from the environment.
	secret string
}

func parse(args []string, out io.Writer) (options, error) {
	fs := flag.NewFlagSet("httptransport", flag.ContinueOnError)
	fs.SetOutput(out)
	var o options
	fs.StringVar(&o.mode, "mode", "demo", "server, agent or demo (demo runs a server and agents as child processes)")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:0", "server: loopback address to listen on (port 0: any free port)")
	fs.StringVar(&o.server, "server", "", "agent: the server's URL, https://127.0.0.1:PORT")
	fs.StringVar(&o.admin, "admin", "127.0.0.1:0", "server: loopback address of the demo's admin API (plain HTTP)")
	fs.StringVar(&o.pki, "pki", "", "server, agent: directory of ca.pem, server.pem and server.key (the demo makes them)")
	fs.StringVar(&o.device, "device", "", "agent: this device's id")
	fs.StringVar(&o.db, "db", "", "server, agent: the SQLite file (server store or the agent's durable outbox)")
	fs.IntVar(&o.devices, "devices", 3, "server: devices dev-1..dev-N in the inventory, 1..100")
	fs.IntVar(&o.agents, "agents", 3, "demo: agent processes, 2..20")
	fs.DurationVar(&o.runTime, "run-time", time.Second, "agent, demo: how long a simulated scan runs")
	fs.DurationVar(&o.timeout, "timeout", 90*time.Second, "demo: give up after this long")
	fs.StringVar(&o.dir, "dir", "", "demo: directory for the databases (default: a new one under the OS temp dir, removed after)")
	fs.Usage = func() {
		fmt.Fprintln(out, "Usage: go run ./examples/httptransport [-mode demo|server|agent] [flags]")
		fmt.Fprintln(out, "")
		fmt.Fprintln(out, "A taskfleet server and its device agents in separate processes, talking JSON over HTTP")
		fmt.Fprintln(out, "on 127.0.0.1 (long-poll for server-to-device messages), with the agents' durable SQLite")
		fmt.Fprintln(out, "outbox. The demo kills and restarts agents and checks every result arrives exactly once.")
		fmt.Fprintln(out, "")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.secret = os.Getenv(secretEnv)
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (see -help)", fs.Arg(0))
	}
	switch o.mode {
	case "server":
		if err := loopback(o.addr); err != nil {
			return o, err
		}
		if err := loopback(o.admin); err != nil {
			return o, err
		}
		if o.db == "" || o.pki == "" {
			return o, errors.New("-db and -pki: required in server mode")
		}
		if o.devices < 1 || o.devices > 100 {
			return o, fmt.Errorf("-devices %d: must be between 1 and 100", o.devices)
		}
	case "agent":
		if o.server == "" || o.device == "" || o.db == "" || o.pki == "" {
			return o, errors.New("-server, -device, -db and -pki are required in agent mode")
		}
	case "demo":
		if o.agents < 2 || o.agents > 20 {
			return o, fmt.Errorf("-agents %d: must be between 2 and 20", o.agents)
		}
	default:
		return o, fmt.Errorf("-mode %q: must be server, agent or demo", o.mode)
	}
	if o.runTime < 100*time.Millisecond || o.runTime > time.Minute {
		return o, fmt.Errorf("-run-time %s: must be between 100ms and 1m", o.runTime)
	}
	return o, nil
}

// loopback refuses an address that is not on the loopback interface: the
// example's certificates are throwaway ones for 127.0.0.1.
func loopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %q: must be a loopback address such as 127.0.0.1:0", addr)
	}
	return nil
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parse(args, out)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	switch o.mode {
	case "server":
		return serve(ctx, o, out)
	case "agent":
		return runAgent(ctx, o, out)
	default:
		return demo(ctx, o, out)
	}
}
