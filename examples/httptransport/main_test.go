package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the demo run this test binary as its server and agent
// processes: a child started by the demo runs main instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// syncBuffer is written by the demo's reader goroutines.
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

func TestDemoDeliversEveryResultExactlyOnce(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := run(ctx, []string{"-mode", "demo", "-agents", "3", "-run-time", "800ms", "-timeout", "80s", "-dir", t.TempDir()}, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`\[server\] LISTEN https://127\.0\.0\.1:\d+ ADMIN http://127\.0\.0\.1:\d+`),
		regexp.MustCompile(`step 2: dev-1 came back with [1-9]\d* messages in its outbox`),
		regexp.MustCompile(`step 3: killed dev-2 in the middle of run \d+`),
		regexp.MustCompile(`OK: 3 runs on 3 devices, each executed once and recorded once`),
		regexp.MustCompile(`dev-2\s+run \d+ (failed|completed)`),
	} {
		if !want.MatchString(text) {
			t.Errorf("output lacks %s:\n%s", want, text)
		}
	}
	// Each device executed each run once across its restarts.
	starts := map[string]int{}
	for _, m := range regexp.MustCompile(`EXEC start (\S+) \S+ (\d+)`).FindAllStringSubmatch(text, -1) {
		starts[m[1]+" "+m[2]]++
	}
	if len(starts) != 9 {
		t.Errorf("%d (device, run) executions, want 9 (3 devices x 3 runs): %v", len(starts), starts)
	}
	for k, n := range starts {
		if n != 1 {
			t.Errorf("%s executed %d times", k, n)
		}
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-mode", "server", "-db", "x.db", "-addr", "0.0.0.0:8080"},
		{"-mode", "server", "-db", "x.db", "-addr", "example.com:80"},
		{"-mode", "server"},
		{"-mode", "server", "-db", "x.db", "-devices", "0"},
		{"-mode", "agent", "-device", "d"},
		{"-mode", "demo", "-agents", "1"},
		{"-mode", "bridge"},
		{"-run-time", "1ms"},
		{"extra"},
	} {
		if err := run(context.Background(), args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-help"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"-mode", "-addr", "-server", "-device", "-db", "-devices", "-agents"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("-help does not explain %s", f)
		}
	}
}
