package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestQuickstartMainPath(t *testing.T) {
	var out bytes.Buffer
	db := filepath.Join(t.TempDir(), "q.db")
	if err := run(context.Background(), []string{"-devices", "120", "-seed", "7", "-db", db}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		"120 devices in 6 zones",
		"Friday virus scan                  group   weekly",
		"Weekly scan of Windows 11          global  weekly                 runs on Administration Server, server time",
		`invalid schedule.every "0": must be between 1 and 1440`,
		// Berlin's spring-forward day: 02:30 does not exist, the scan fires at 03:00.
		"Europe/Berlin      Tue 24 02:30, Wed 25 02:30, Thu 26 02:30, Fri 27 02:30, Sat 28 02:30, Sun 29 03:00*",
		`schedule.time: "19:00:00" -> "20:00:00"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The state counts add up to the devices the run started on.
	m := regexp.MustCompile(`on (\d+) devices \(IP range`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no run line in:\n%s", text)
	}
	started, _ := strconv.Atoi(m[1])
	sum := 0
	for _, s := range regexp.MustCompile(`(?m)^  (completed|failed|restart_required|application_not_running)\s+(\d+)$`).FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(s[2])
		sum += n
	}
	if started == 0 || sum != started {
		t.Fatalf("states add up to %d, run started on %d:\n%s", sum, started, text)
	}
}

func TestQuickstartRejectsBadFlags(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-devices", "3"}, &out); err == nil {
		t.Fatal("-devices 3 accepted")
	}
	if err := run(context.Background(), []string{"-start", "yesterday"}, &out); err == nil {
		t.Fatal("bad -start accepted")
	}
	out.Reset()
	if err := run(context.Background(), []string{"-help"}, &out); err != nil {
		t.Fatalf("-help: %v", err)
	}
	if !strings.Contains(out.String(), "-devices") {
		t.Fatalf("-help does not explain the flags:\n%s", out.String())
	}
}
