package main

import (
	"strings"
	"testing"
)

// FuzzRun feeds arbitrary schedule JSON (on stdin) to the program: it never
// panics, exits 0 with a consistent activation table or 2 with an error on
// stderr and nothing on stdout. The committed corpus is in
// testdata/fuzz/FuzzRun.
func FuzzRun(f *testing.F) {
	for _, s := range []string{
		dailyBerlin, exampleWeekly, exampleMonthly,
		`{"kind":"every_hours","every":1,"start":"2026-01-01T00:30:00Z"}`,
		`{"kind":"nth_weekday","weeks":["fourth","last"],"weekdays":["sunday"],"time":"02:30:00"}`,
		`{"kind":"every_minutes","every":0,"start":"2026-01-01T00:00:00Z"}`,
		`{"kind":"on_task_completion","task_id":"t","status":"failed"}`,
		`{"kind":"once","at":"2026-10-25T00:30:00Z"}`,
		`{"kind":"weekly"`, `[]`, `null`, ``,
	} {
		f.Add(s, "Europe/Berlin")
	}
	f.Add(`{"kind":"every_days","every":2,"start_date":"2011-12-28","time":"12:00:00"}`, "Pacific/Apia")
	f.Add(`{"kind":"weekly","weekdays":["sunday"],"time":"02:00:00"}`, "Australia/Lord_Howe")
	f.Fuzz(func(t *testing.T, input, zone string) {
		if zone != "Local" && zone != "UTC" && !strings.Contains(zone, "/") {
			zone = "UTC" // keep the fuzzer on schedules, not zone names
		}
		r := runWith(t, input, "-n", "20", "-after", "2026-03-01T00:00:00Z", "-zone", zone)
		switch r.code {
		case exitOK:
			rows(t, r.stdout) // fails on an inconsistent row
			if r.stderr != "" {
				t.Errorf("exit 0 with stderr %q", r.stderr)
			}
		case exitUsage:
			if r.stderr == "" || r.stdout != "" {
				t.Errorf("exit 2 with stdout %q, stderr %q", r.stdout, r.stderr)
			}
		default:
			t.Errorf("exit %d for %q", r.code, input)
		}
	})
}
