package main

import (
	"bytes"
	"context"
	"io"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the coordinator run this test binary as its server and
// simulator processes.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The load test at 1,000 agents, as CI runs it: every agent enrolls,
// connects, receives a manual start and reports; after a start and a
// SIGKILL of the server every agent reconnects and each run is executed
// exactly once per agent, with every result recorded.
func TestFleetLoad1000(t *testing.T) {
	agents := 1000
	if raceEnabled {
		agents = 200
	}
	var out syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o, err := parse([]string{"-agents", strconv.Itoa(agents), "-sims", "2", "-conns", "4", "-wait", "10s", "-heartbeat", "20s", "-retry", "2s",
		"-steady", "2s", "-backoff-min", "200ms", "-backoff-max", "3s", "-dir", t.TempDir(), "-timeout", "150s", "-probes", "20"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fig, err := coordinate(ctx, o, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("%+v\n%s", fig, out.String())
	if fig.Start.Received != agents || fig.Restart.Executions[fig.Start.Run] != agents || fig.Restart.Executions[fig.Restart.Run] != agents || fig.Restart.Lost != 0 {
		t.Errorf("figures %+v", fig)
	}
	// The sample is one instant: a poll that just ended (its wait ran
	// out, or it carried a message) is renewed a moment later, so a few
	// agents are between polls under load. Most polls, over a few
	// connections, is the point.
	if fig.Steady.HeldPolls < int64(agents)*9/10 || fig.Steady.FDs > 200 {
		t.Errorf("steady: %d polls held over %d open files, want at least %d polls on few connections", fig.Steady.HeldPolls, fig.Steady.FDs, agents*9/10)
	}
	if fig.Probe.Starts != 20 || fig.Probe.Received != 20 || fig.Probe.MaxMs <= 0 {
		t.Errorf("probes %+v, want 20 single-device starts, each received", fig.Probe)
	}
	// The agents' failures are counted by kind (the SIGKILL breaks
	// polls) and every agent connected.
	if fig.NeverConnected != 0 || fig.Failures == nil || !strings.Contains(out.String(), "whole test: agents' failures by kind: ") {
		t.Errorf("failures: %v, %d never connected:\n%s", fig.Failures, fig.NeverConnected, out.String())
	}
	if !strings.Contains(out.String(), "OK: every agent ran each run exactly once") {
		t.Errorf("no OK line:\n%s", out.String())
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-agents", "0"}, {"-agents", "300000"}, {"-sims", "0"}, {"-sims", "65"}, {"-agents", "2", "-sims", "3"},
		{"-conns", "0"}, {"-wait", "1ms"}, {"-probes", "-1"}, {"-probes", "1001"}, {"-connect-timeout", "20m"}, {"-connect-timeout", "-1s"}, {"-mode", "x"}, {"extra"}, {"-backoff-min", "2s", "-backoff-max", "1s"},
	} {
		if _, err := parse(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	if err := run(context.Background(), []string{"-mode", "server"}, nil, io.Discard); err == nil {
		t.Error("server without -dir accepted")
	}
}

// The failures of all simulators are summed by kind (the largest first),
// and the agents not getting in are listed, the never connected first,
// with their last error.
func TestPrintFailures(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	reps := []simReport{
		{Failures: map[string]int64{"poll unreachable": 3, "enroll 429 rate_limited": 7}, Failing: 1,
			Stuck: []stuckAgent{{Device: "dev-2", HasKey: true, LastContact: at, Failures: 4, Consecutive: 2, LastError: "httptransport: poll 503 unavailable", LastErrorAt: at.Add(time.Minute)}}},
		{Failures: map[string]int64{"poll unreachable": 2}, NeverConnected: 1,
			Stuck: []stuckAgent{{Device: "dev-1", Failures: 9, Consecutive: 9, LastError: "httptransport: enroll 409 already_enrolled", LastErrorAt: at}}},
	}
	var out strings.Builder
	total, never := printFailures(&out, "connecting timed out", reps, true)
	if want := map[string]int64{"poll unreachable": 5, "enroll 429 rate_limited": 7}; !maps.Equal(total, want) || never != 1 {
		t.Fatalf("total %v, never %d; want %v, 1", total, never, want)
	}
	want := `connecting timed out: agents' failures by kind: enroll 429 rate_limited 7, poll unreachable 5; 1 agents never connected, 1 failing now
  dev-1: key false, last accepted request never, 9 failures (9 in a row), last: httptransport: enroll 409 already_enrolled at 18:00:00
  dev-2: key true, last accepted request 18:00:00, 4 failures (2 in a row), last: httptransport: poll 503 unavailable at 18:01:00
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	out.Reset()
	printFailures(&out, "connecting", reps, false)
	if strings.Contains(out.String(), "dev-2") || !strings.Contains(out.String(), "dev-1") {
		t.Errorf("without listFailing, only the never connected are listed:\n%s", out.String())
	}
	out.Reset()
	if _, never := printFailures(&out, "whole test", []simReport{{}}, false); never != 0 || !strings.Contains(out.String(), "failures by kind: none; 0 agents never connected") {
		t.Errorf("no failures: %q", out.String())
	}
}

// When connecting times out, the coordinator asks the simulators and
// lists the agents that never connected, with their state, instead of
// only saying that it timed out.
func TestConnectTimeoutListsAgents(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The agents start over 10 s: when connecting times out after 1 s,
	// most of them have not even tried.
	o, err := parse([]string{"-agents", "20", "-sims", "1", "-conns", "1", "-ramp", "10s", "-connect-timeout", "1s", "-timeout", "60s", "-dir", t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = coordinate(ctx, o, &out)
	if err == nil || !strings.Contains(err.Error(), "connecting") {
		t.Fatalf("err %v, want a connecting timeout\n%s", err, out.String())
	}
	s := out.String()
	if !strings.Contains(s, "connecting timed out: agents' failures by kind: ") || !strings.Contains(s, "last accepted request never") {
		t.Errorf("no list of the agents not connected:\n%s", s)
	}
}
