// Command minimalagent is the smallest device program: a taskfleet agent
// with the in-memory store, a stand-in executor, and a device channel
// that writes each message the agent sends as one JSON line on standard
// output. It exists to measure what the agent costs on a device:
//
//	go build -ldflags="-s -w" -o /tmp/minimalagent ./examples/minimalagent && ls -l /tmp/minimalagent
//
// (sqliteagent, next to it, is the same program with the SQLite store.)
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

func main() {
	if err := run(context.Background(), agent.NewMemStore()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run starts an agent for device "pc-1" on store, attaches it to the
// standard-output channel and ticks it once: it sends its first
// heartbeat.
func run(ctx context.Context, store agent.Store) error {
	a, err := agent.New(ctx, agent.Config{Device: "pc-1", Store: store, Executor: executor{}})
	if err != nil {
		return err
	}
	defer a.Close()
	a.Attach(stdoutChannel{})
	return a.Tick(ctx)
}

// stdoutChannel is the device's side of a channel that writes each
// message on standard output (a real device sends them to the server).
type stdoutChannel struct{}

func (stdoutChannel) Send(_ context.Context, m transport.Message) error {
	b, err := transport.Encode(m)
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", b)
	return err
}

// executor is the security application's stand-in: every run completes at
// once.
type executor struct{}

func (executor) AppRunning(context.Context, string) bool { return true }

func (executor) Start(_ context.Context, _ agent.Run, done func(agent.Outcome)) error {
	go done(agent.Outcome{State: transport.StateCompleted})
	return nil
}

func (executor) Stop(context.Context, string, int64) error { return nil }
