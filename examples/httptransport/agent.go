package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/agent/agentsqlite"
	"github.com/taskfleet/taskfleet/task/transport"
)

// deviceEndpoint is the device side of the HTTP channel: a
// transport.DeviceEndpoint that POSTs each message.
type deviceEndpoint struct {
	base   string
	device scope.DeviceID
	token  string // this device's token (auth.go); never logged
	client *http.Client
}

// Send implements transport.DeviceEndpoint: any failure to hand the
// message over is ErrUnreachable, so the agent keeps it in its outbox and
// retries.
func (e *deviceEndpoint) Send(ctx context.Context, m transport.Message) error {
	body, err := transport.Encode(m)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.base+"/v1/send?device="+url.QueryEscape(string(e.device)), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := e.client.Do(req)
	if err != nil {
		return transport.ErrUnreachable
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return transport.ErrUnreachable
	}
	return nil
}

// pollLoop long-polls the server and hands each message to h, one at a
// time, until ctx is done.
func (e *deviceEndpoint) pollLoop(ctx context.Context, h transport.Handler) {
	for ctx.Err() == nil {
		msgs, err := e.poll(ctx)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		for _, m := range msgs {
			h.Handle(ctx, m)
		}
	}
}

func (e *deviceEndpoint) poll(ctx context.Context) ([]transport.Message, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.base+"/v1/poll?wait=10&device="+url.QueryEscape(string(e.device)), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("poll: %s", resp.Status)
	}
	var msgs []transport.Message
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPoll)).Decode(&msgs); err != nil {
		return nil, err
	}
	return msgs, nil
}

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
		done(agent.Outcome{State: task.Completed})
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
	if o.token == "" {
		return errors.New(tokenEnv + ": this device's token is required in the environment")
	}
	ep := &deviceEndpoint{base: o.server, device: id, token: o.token, client: &http.Client{Timeout: 30 * time.Second}}
	a.Attach(ep)
	fmt.Fprintf(out, "AGENT %s up, %d messages in the outbox\n", id, a.OutboxLen(ctx))
	go ep.pollLoop(ctx, a)
	err = a.Run(ctx, 100*time.Millisecond)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
