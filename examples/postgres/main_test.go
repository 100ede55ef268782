package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestTwoReplicas runs the example against the PostgreSQL of .ci/run:
// 500 devices get their start exactly once, shared by the two replicas.
func TestTwoReplicas(t *testing.T) {
	t.Parallel()
	if os.Getenv("TASKFLEET_TEST_POSTGRES") == "" {
		t.Skip("examples/postgres needs PostgreSQL: set TASKFLEET_TEST_POSTGRES to a DSN (.ci/run starts one and sets it)")
	}
	var out bytes.Buffer
	if err := run(context.Background(), nil, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		`started "Scan now" on replica-a for 500 devices`,
		"statistics: 500 devices, 500 pending (started)",
		"devices started: 500, started twice: 0",
		"dispatch ledger rows: 500",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	sum := 0
	for _, m := range regexp.MustCompile(`replica-[ab] dispatched (\d+) starts`).FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[1])
		sum += n
	}
	if sum != 500 {
		t.Errorf("replicas dispatched %d starts in all, want 500:\n%s", sum, text)
	}
}

func TestNoDSN(t *testing.T) {
	t.Setenv("TASKFLEET_TEST_POSTGRES", "")
	err := run(context.Background(), nil, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "-dsn") {
		t.Fatalf("run without a DSN: %v", err)
	}
}
