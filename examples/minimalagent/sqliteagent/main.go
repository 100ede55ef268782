// Command sqliteagent is examples/minimalagent with the SQLite store
// (task/agent/agentsqlite) in a temporary file: what a device that keeps
// its tasks and outbox across restarts costs.
//
//	go build -ldflags="-s -w" -o /tmp/sqliteagent ./examples/minimalagent/sqliteagent && ls -l /tmp/sqliteagent
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/agent/agentsqlite"
	"github.com/taskfleet/taskfleet/task/transport"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run opens the store in a temporary directory, starts an agent for
// device "pc-1" on it and ticks it once: it sends its first heartbeat.
func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "sqliteagent")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	store, err := agentsqlite.Open(ctx, filepath.Join(dir, "agent.db"))
	if err != nil {
		return err
	}
	defer store.Close()
	a, err := agent.New(ctx, agent.Config{Device: "pc-1", Store: store, Executor: executor{}})
	if err != nil {
		return err
	}
	defer a.Close()
	a.Attach(stdoutChannel{})
	return a.Tick(ctx)
}

// stdoutChannel writes each message on standard output (a real device
// sends them to the server).
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
