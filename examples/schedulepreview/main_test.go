package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	_ "time/tzdata" // the zones the tests load, whatever the machine has
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// result is one run of the program.
type result struct {
	code           int
	stdout, stderr string
}

func runWith(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// row is one printed activation with the marks printed under it.
type row struct {
	local, utc, offset string
	marks              []string
}

var rowRE = regexp.MustCompile(`^\s+(\d+)  (\w{3} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+)\s+(\S+Z)  ([+-]\d\d:\d\d)$`)

// rows parses the activation table of a preview. It fails the test when a
// row's local time, UTC instant and offset do not describe the same
// instant, an independent check of every line the program prints.
func rows(t testing.TB, stdout string) []row {
	t.Helper()
	var out []row
	for _, line := range strings.Split(stdout, "\n") {
		if m := rowRE.FindStringSubmatch(line); m != nil {
			out = append(out, row{local: m[2], utc: m[3], offset: m[4]})
			// Local wall clock + offset must be the UTC instant.
			fields := strings.Fields(m[2])
			local, err := time.Parse("2006-01-02 15:04:05 -07:00", fields[1]+" "+fields[2]+" "+m[4])
			if err != nil {
				t.Fatalf("row %q: %v", line, err)
			}
			utc, err := time.Parse(time.RFC3339, m[3])
			if err != nil {
				t.Fatalf("row %q: %v", line, err)
			}
			if !local.Equal(utc) {
				t.Errorf("row %q: local time %v is not the UTC instant %v", line, local, utc)
			}
			if local.Weekday().String()[:3] != fields[0] {
				t.Errorf("row %q: weekday %s, want %s", line, fields[0], local.Weekday().String()[:3])
			}
			continue
		}
		if mark, ok := strings.CutPrefix(strings.TrimLeft(line, " "), "* "); ok {
			if len(out) == 0 {
				t.Fatalf("mark before any row: %q", line)
			}
			out[len(out)-1].marks = append(out[len(out)-1].marks, mark)
		}
	}
	return out
}

var rowOpts = []cmp.Option{cmp.AllowUnexported(row{}), cmpopts.EquateEmpty()}

func hasMark(r row, prefix string) bool {
	for _, m := range r.marks {
		if strings.HasPrefix(m, prefix) {
			return true
		}
	}
	return false
}

const dailyBerlin = `{"kind":"every_days","every":1,"start_date":"2026-01-01","time":"02:30:00"}`

// The two DST transitions of 2026 in Europe/Berlin, for a daily 02:30 rule.
func TestDailyAcrossBerlinTransitions(t *testing.T) {
	t.Parallel()
	t.Run("spring forward fires at 03:00, marked", func(t *testing.T) {
		t.Parallel()
		r := runWith(t, "", "-zone", "Europe/Berlin", "-after", "2026-03-27T12:00:00Z", "-n", "3", "-json", dailyBerlin)
		if r.code != exitOK {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		got := rows(t, r.stdout)
		want := []row{
			{local: "Sat 2026-03-28 02:30:00 CET", utc: "2026-03-28T01:30:00Z", offset: "+01:00"},
			{local: "Sun 2026-03-29 03:00:00 CEST", utc: "2026-03-29T01:00:00Z", offset: "+02:00", marks: []string{
				"DST gap: 02:30:00 does not exist on Sun 2026-03-29 (clocks jump from 02:00:00 to 03:00:00); fires at the transition, 03:00:00 CEST",
				"first activation after a UTC offset change: +01:00 (CET) -> +02:00 (CEST) at 2026-03-29T01:00:00Z",
			}},
			{local: "Mon 2026-03-30 02:30:00 CEST", utc: "2026-03-30T00:30:00Z", offset: "+02:00"},
		}
		if diff := cmp.Diff(want, got, rowOpts...); diff != "" {
			t.Errorf("rows (-want +got):\n%s\noutput:\n%s", diff, r.stdout)
		}
		if !strings.Contains(r.stdout, "device-local time (UsesLocalTime: true)") {
			t.Errorf("no UsesLocalTime line:\n%s", r.stdout)
		}
	})
	t.Run("fall back fires once, marked", func(t *testing.T) {
		t.Parallel()
		r := runWith(t, "", "-zone", "Europe/Berlin", "-after", "2026-10-24T12:00:00Z", "-n", "3", "-json", dailyBerlin)
		if r.code != exitOK {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		got := rows(t, r.stdout)
		want := []row{
			{local: "Sun 2026-10-25 02:30:00 CEST", utc: "2026-10-25T00:30:00Z", offset: "+02:00", marks: []string{
				"repeated hour: local 02:00:00-03:00:00 occurs twice on Sun 2026-10-25 (CEST, then CET); this is the first occurrence; the schedule fires once, here, not again at 02:30:00 CET",
			}},
			{local: "Mon 2026-10-26 02:30:00 CET", utc: "2026-10-26T01:30:00Z", offset: "+01:00", marks: []string{
				"first activation after a UTC offset change: +02:00 (CEST) -> +01:00 (CET) at 2026-10-25T01:00:00Z",
			}},
			{local: "Tue 2026-10-27 02:30:00 CET", utc: "2026-10-27T01:30:00Z", offset: "+01:00"},
		}
		if diff := cmp.Diff(want, got, rowOpts...); diff != "" {
			t.Errorf("rows (-want +got):\n%s\noutput:\n%s", diff, r.stdout)
		}
		if n := strings.Count(r.stdout, "2026-10-25 02:30:00"); n != 1 {
			t.Errorf("02:30 on the fall-back day printed %d times, want once", n)
		}
	})
}

// An absolute schedule does fire in both occurrences of the repeated hour
// (it counts elapsed time); each is marked.
func TestHourlyAcrossFallBack(t *testing.T) {
	t.Parallel()
	r := runWith(t, "", "-zone", "Europe/Berlin", "-after", "2026-10-25T00:00:00Z", "-n", "3",
		"-json", `{"kind":"every_hours","every":1,"start":"2026-01-01T00:30:00Z"}`)
	if r.code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	got := rows(t, r.stdout)
	if len(got) != 3 {
		t.Fatalf("%d rows, want 3:\n%s", len(got), r.stdout)
	}
	if got[0].local != "Sun 2026-10-25 02:30:00 CEST" || !hasMark(got[0], "repeated hour: local 02:00:00-03:00:00 occurs twice") {
		t.Errorf("first 02:30 not marked as the first occurrence: %+v", got[0])
	}
	if got[1].local != "Sun 2026-10-25 02:30:00 CET" || !hasMark(got[1], "repeated hour: 02:30:00 CET is the second occurrence") ||
		!hasMark(got[1], "first activation after a UTC offset change: +02:00 (CEST) -> +01:00 (CET)") {
		t.Errorf("second 02:30 not marked: %+v", got[1])
	}
	if len(got[2].marks) != 0 {
		t.Errorf("03:30 CET has marks: %+v", got[2])
	}
	if !strings.Contains(r.stdout, "absolute time (UsesLocalTime: false)") {
		t.Errorf("no UsesLocalTime line:\n%s", r.stdout)
	}
}

// Monthly on day 31 falls back to the last day of shorter months, visibly.
func TestMonthlyDay31(t *testing.T) {
	t.Parallel()
	r := runWith(t, "", "-zone", "UTC", "-after", "2026-01-01T00:00:00Z", "-n", "5",
		"-json", `{"kind":"monthly","day":31,"time":"09:00:00"}`)
	if r.code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	got := rows(t, r.stdout)
	want := []row{
		{local: "Sat 2026-01-31 09:00:00 UTC", utc: "2026-01-31T09:00:00Z", offset: "+00:00"},
		{local: "Sat 2026-02-28 09:00:00 UTC", utc: "2026-02-28T09:00:00Z", offset: "+00:00", marks: []string{
			"short month: February has no day 31; fires on its last day, the 28"}},
		{local: "Tue 2026-03-31 09:00:00 UTC", utc: "2026-03-31T09:00:00Z", offset: "+00:00"},
		{local: "Thu 2026-04-30 09:00:00 UTC", utc: "2026-04-30T09:00:00Z", offset: "+00:00", marks: []string{
			"short month: April has no day 31; fires on its last day, the 30"}},
		{local: "Sun 2026-05-31 09:00:00 UTC", utc: "2026-05-31T09:00:00Z", offset: "+00:00"},
	}
	if diff := cmp.Diff(want, got, rowOpts...); diff != "" {
		t.Errorf("rows (-want +got):\n%s\noutput:\n%s", diff, r.stdout)
	}
	if !strings.Contains(r.stdout, "on day 31 of every month at 09:00:00 (the last day of months shorter than 31 days)") {
		t.Errorf("summary lacks the last-day rule:\n%s", r.stdout)
	}
}

// Pacific/Apia skipped 2011-12-30 entirely: the daily rule fires at the
// first instant after it and says its wall clock differs.
func TestSkippedDay(t *testing.T) {
	t.Parallel()
	r := runWith(t, "", "-zone", "Pacific/Apia", "-after", "2011-12-29T00:00:00Z", "-n", "3",
		"-json", `{"kind":"every_days","start_date":"2011-12-01","time":"12:00:00"}`)
	if r.code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	got := rows(t, r.stdout)
	want := []row{
		{local: "Thu 2011-12-29 12:00:00 -10", utc: "2011-12-29T22:00:00Z", offset: "-10:00"},
		{local: "Sat 2011-12-31 00:00:00 +14", utc: "2011-12-30T10:00:00Z", offset: "+14:00", marks: []string{
			"skipped date: Fri 2011-12-30 does not exist in Pacific/Apia (clocks jump from Fri 2011-12-30 00:00:00 to Sat 2011-12-31 00:00:00); its 12:00:00 fires at the first instant after it, Sat 2011-12-31 00:00:00 +14",
			"first activation after a UTC offset change: -10:00 (-10) -> +14:00 (+14) at 2011-12-30T10:00:00Z",
		}},
		{local: "Sat 2011-12-31 12:00:00 +14", utc: "2011-12-30T22:00:00Z", offset: "+14:00"},
	}
	if diff := cmp.Diff(want, got, rowOpts...); diff != "" {
		t.Errorf("rows (-want +got):\n%s\noutput:\n%s", diff, r.stdout)
	}
}

// A bad schedule is the typed error with its field path and range, exit 2.
func TestInvalidSchedules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, json string
		want       []string
	}{
		{"every 0", `{"kind":"every_minutes","every":0,"start":"2026-01-01T00:00:00Z"}`,
			[]string{`  every: "0": must be between 1 and 1440`}},
		{"two fields", `{"kind":"every_hours","every":745,"start":"2026-01-01T00:00:00Z","stop_after":{"enabled":true,"minutes":0}}`,
			[]string{`  every: "745": must be between 1 and 744`, `  stop_after.minutes: "0": must be between 1 and 10080`}},
		{"day 32", `{"kind":"monthly","day":32,"time":"09:00:00"}`, []string{`  day: "32": must be between 1 and 31`}},
		{"unknown field", `{"kind":"weekly","hour":3}`, []string{"  hour:"}},
		{"required", `{"kind":"monthly","day":3}`, []string{"  time:"}},
		{"not JSON", `{"kind":"weekly"`, []string{"not valid JSON at byte 16"}},
		{"trailing data", `{"kind":"manual"} {}`, []string{"not valid JSON"}},
		{"empty", "  ", []string{"no schedule given"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runWith(t, "", "-json", tt.json)
			if tt.json == "  " {
				r = runWith(t, tt.json) // stdin
			}
			if r.code != exitUsage {
				t.Fatalf("exit %d, want %d; stdout:\n%s", r.code, exitUsage, r.stdout)
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty:\n%s", r.stdout)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
		})
	}
}

func TestCountBounds(t *testing.T) {
	t.Parallel()
	weekly := `{"kind":"weekly","weekdays":["monday"],"time":"08:00:00"}`
	tests := []struct {
		n        string
		code     int
		wantRows int
	}{
		{"0", exitUsage, 0},
		{"-1", exitUsage, 0},
		{"1001", exitUsage, 0},
		{"ten", exitUsage, 0},
		{"1", exitOK, 1},
		{"1000", exitOK, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.n, func(t *testing.T) {
			t.Parallel()
			r := runWith(t, "", "-n", tt.n, "-after", "2026-01-01T00:00:00Z", "-zone", "Europe/Berlin", "-json", weekly)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, tt.code, r.stderr)
			}
			if got := len(rows(t, r.stdout)); got != tt.wantRows {
				t.Errorf("%d rows, want %d", got, tt.wantRows)
			}
			if tt.code == exitUsage && !strings.Contains(r.stderr, "-n") {
				t.Errorf("stderr does not name -n:\n%s", r.stderr)
			}
			if tt.code == exitUsage && tt.n != "ten" && !strings.Contains(r.stderr, "must be between 1 and 1000") {
				t.Errorf("stderr does not state the range:\n%s", r.stderr)
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	t.Parallel()
	valid := `{"kind":"manual"}`
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown zone", []string{"-zone", "Mars/Olympus", "-json", valid}, exitUsage, `invalid -zone "Mars/Olympus"`},
		{"bad after", []string{"-after", "tomorrow", "-json", valid}, exitUsage, `invalid -after "tomorrow"`},
		{"json and file", []string{"-json", valid, "-file", "x.json"}, exitUsage, "not both"},
		{"unknown flag", []string{"-every", "3"}, exitUsage, "flag provided but not defined: -every"},
		{"positional", []string{"-json", valid, "extra"}, exitUsage, `unexpected argument "extra"`},
		{"missing file", []string{"-file", filepath.Join(t.TempDir(), "no-such-schedule.json")}, exitError, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runWith(t, "", tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, tt.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, r.stderr)
			}
		})
	}
}

func TestInputSources(t *testing.T) {
	t.Parallel()
	weekly := `{"kind":"weekly","weekdays":["friday"],"time":"18:00:00"}`
	file := filepath.Join(t.TempDir(), "s.json")
	if err := os.WriteFile(file, []byte(weekly+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-n", "2", "-after", "2026-11-20T00:00:00Z", "-zone", "Asia/Kolkata"}
	fromJSON := runWith(t, "", append(args, "-json", weekly)...)
	fromFile := runWith(t, "", append(args, "-file", file)...)
	fromStdin := runWith(t, weekly, args...)
	for name, r := range map[string]result{"-json": fromJSON, "-file": fromFile, "stdin": fromStdin} {
		if r.code != exitOK {
			t.Fatalf("%s: exit %d, stderr:\n%s", name, r.code, r.stderr)
		}
		if r.stdout != fromJSON.stdout {
			t.Errorf("%s prints differently from -json:\n%s\nvs\n%s", name, r.stdout, fromJSON.stdout)
		}
	}
	got := rows(t, fromJSON.stdout)
	want := []row{
		{local: "Fri 2026-11-20 18:00:00 IST", utc: "2026-11-20T12:30:00Z", offset: "+05:30"},
		{local: "Fri 2026-11-27 18:00:00 IST", utc: "2026-11-27T12:30:00Z", offset: "+05:30"},
	}
	if diff := cmp.Diff(want, got, rowOpts...); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}

// Manual and event kinds have no timed activations, and say so.
func TestUntimedKinds(t *testing.T) {
	t.Parallel()
	tests := []struct{ json, want string }{
		{`{"kind":"manual"}`, "Kind manual starts only when an administrator starts the task, so it has no timed activations."},
		{`{"kind":"on_updates_downloaded"}`, "Kind on_updates_downloaded starts on an event, so it has no timed activations."},
		{`{"kind":"on_virus_outbreak","app_types":["mail_systems"]}`, "Kind on_virus_outbreak starts on an event, so it has no timed activations."},
		{`{"kind":"on_task_completion","task_id":"t-1","status":"failed"}`, "Kind on_task_completion starts on an event, so it has no timed activations."},
	}
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			t.Parallel()
			r := runWith(t, "", "-json", tt.json)
			if r.code != exitOK {
				t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stdout, tt.want) || !strings.Contains(r.stdout, "UsesLocalTime: false") {
				t.Errorf("output lacks %q or the UsesLocalTime line:\n%s", tt.want, r.stdout)
			}
			if len(rows(t, r.stdout)) != 0 {
				t.Errorf("untimed kind printed activations:\n%s", r.stdout)
			}
		})
	}
}

func TestOnceInThePast(t *testing.T) {
	t.Parallel()
	r := runWith(t, "", "-after", "2026-06-01T00:00:00Z", "-json", `{"kind":"once","at":"2026-01-01T00:00:00Z"}`)
	if r.code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if len(rows(t, r.stdout)) != 0 || !strings.Contains(r.stdout, "  none\n") {
		t.Errorf("a past once schedule printed activations:\n%s", r.stdout)
	}
}

// -help explains the program with two example schedules; both run, and
// their output is kept as golden files (go test -update rewrites them).
func TestHelpAndItsExamples(t *testing.T) {
	t.Parallel()
	help := runWith(t, "", "-help")
	if help.code != exitOK || help.stderr != "" {
		t.Fatalf("-help: exit %d, stderr:\n%s", help.code, help.stderr)
	}
	for _, w := range []string{exampleWeekly, exampleMonthly, "-zone", "-after", "-file", "-json", "-n", "Exit codes", "must be between 1 and 1440"} {
		if !strings.Contains(help.stdout, w) {
			t.Errorf("-help lacks %q", w)
		}
	}
	examples := []struct {
		golden string
		args   []string
	}{
		{"weekly_berlin.golden", []string{"-zone", "Europe/Berlin", "-after", "2026-03-27T00:00:00Z", "-n", "4", "-json", exampleWeekly}},
		{"monthly_new_york.golden", []string{"-zone", "America/New_York", "-after", "2026-01-01T00:00:00Z", "-n", "6", "-json", exampleMonthly}},
	}
	for _, ex := range examples {
		r := runWith(t, "", ex.args...)
		if r.code != exitOK {
			t.Fatalf("%s: exit %d, stderr:\n%s", ex.golden, r.code, r.stderr)
		}
		// The help text shows the same command lines.
		if !strings.Contains(help.stdout, strings.Join(ex.args[:6], " ")) {
			t.Errorf("-help does not show the command of %s", ex.golden)
		}
		path := filepath.Join("testdata", ex.golden)
		if *update {
			if err := os.WriteFile(path, []byte(r.stdout), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if r.stdout != string(want) {
			t.Errorf("%s differs; got:\n%s\nwant:\n%s", path, r.stdout, want)
		}
	}
}
