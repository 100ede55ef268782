package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/agent/agentsqlite"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport/testpki"
)

// scanner is the device's simulated security application: a scan runs
// for runTime. It prints "EXEC start" and "EXEC done" lines, which the
// demo counts to check that no run is executed twice.
type scanner struct {
	mu      sync.Mutex
	out     io.Writer
	device  scope.DeviceID
	runTime time.Duration
}

func (s *scanner) say(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, format+"\n", args...)
}

func (s *scanner) AppRunning(context.Context, string) bool { return true }

func (s *scanner) Start(_ context.Context, r agent.Run, done func(agent.Outcome)) error {
	s.say("EXEC start %s %s %d", s.device, r.TaskID, r.RunID)
	time.AfterFunc(s.runTime, func() {
		s.say("EXEC done %s %s %d", s.device, r.TaskID, r.RunID)
		done(agent.Outcome{State: transport.StateCompleted})
	})
	return nil
}

func (s *scanner) Stop(context.Context, string, int64) error { return nil }

// runAgent runs one device: its agent on a SQLite store (tasks, schedule
// state and the durable outbox), the poll loop and the tick loop.
func runAgent(ctx context.Context, o options, out io.Writer) error {
	st, err := agentsqlite.Open(ctx, o.db)
	if err != nil {
		return err
	}
	defer st.Close()
	id := scope.DeviceID(o.device)
	a, err := agent.New(ctx, agent.Config{Device: id, Store: st, Executor: &scanner{out: out, device: id, runTime: o.runTime},
		Heartbeat: time.Second, RetryInterval: 500 * time.Millisecond})
	if err != nil {
		return err
	}
	defer a.Close()
	// The device's key, from an earlier enrollment; without one the
	// client enrolls with the secret and saves the key it gets.
	keyFile := o.db + ".key"
	key, err := os.ReadFile(keyFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(key) == 0 && o.secret == "" {
		return errors.New(secretEnv + ": the enrollment secret is required in the environment for a device without a key")
	}
	pem, err := os.ReadFile(filepath.Join(o.pki, "ca.pem"))
	if err != nil {
		return err
	}
	c, err := httptransport.NewClient(httptransport.ClientConfig{URL: o.server, Device: id, Key: httptransport.Secret(key),
		EnrollSecret: httptransport.Secret(o.secret), HTTPClient: httptransport.NewHTTPClient(&tls.Config{RootCAs: testpki.PoolFromPEM(pem)}),
		SaveKey: func(_ context.Context, k httptransport.Secret) error { return os.WriteFile(keyFile, []byte(k), 0o600) },
		Wait:    10 * time.Second, BackoffMin: 200 * time.Millisecond, BackoffMax: 2 * time.Second})
	if err != nil {
		return err
	}
	a.Attach(c)
	fmt.Fprintf(out, "AGENT %s up, %d messages in the outbox\n", id, a.OutboxLen(ctx))
	go func() { _ = c.Run(ctx, a) }()
	err = a.Run(ctx, 100*time.Millisecond)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
