package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

func TestQuickstartMainPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	report := filepath.Join(dir, "report.html")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-devices", "100", "-days", "7", "-seed", "3", "-progress=false",
		"-db", filepath.Join(dir, "q.db"), "-report", report}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		"100 devices in 6 groups and 6 zones, 7 simulated days from Mon 2026-03-23 08:00 UTC",
		`invalid schedule.every "0": must be between 1 and 1440`,
		"Friday virus scan",
		"Update databases",
		"Install Endpoint Security 12.8.1",
		"Quick scan of Windows 11",
		"Scan after installation",
		"Nightly scan of servers",
		"Missed runs caught up",
		"Restarts pending",
		"HTML report (this summary; per task the device states and the starts in UTC, in device-local time and after the randomized delay): " + report,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// Every task's latest states add up to its devices.
	for _, m := range regexp.MustCompile(`latest state of (\d+) devices: (.*)`).FindAllStringSubmatch(text, -1) {
		total, _ := strconv.Atoi(m[1])
		sum := 0
		for _, part := range strings.Split(m[2], ", ") {
			f := strings.Fields(part)
			n, _ := strconv.Atoi(f[len(f)-1])
			sum += n
		}
		if sum != total {
			t.Errorf("states %q add up to %d, want %d", m[2], sum, total)
		}
	}
	page, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	if got := strings.Count(html, "<svg"); got != 18 {
		t.Errorf("report has %d charts, want three per task (18)", got)
	}
	if got := strings.Count(html, "<h2>"); got != 7 {
		t.Errorf("report has %d headings, want the summary and one per task (7)", got)
	}
	reportAgreesWithTerminal(t, text, html)
	if strings.Contains(html, "http://") && strings.Count(html, "http://") != strings.Count(html, `xmlns="http://www.w3.org/2000/svg"`) {
		t.Error("report refers to the network")
	}
}

// TestRunCountsMatchSchedules checks the simulated runs against the
// schedules' own activations (schedule.Between) in each device's zone.
func TestRunCountsMatchSchedules(t *testing.T) {
	t.Parallel()
	o, err := parse([]string{"-devices", "120", "-days", "7", "-seed", "5", "-progress=false", "-db", filepath.Join(t.TempDir(), "q.db")}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := simulate(ctx, o, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.close()
	byName := map[string]*task.Task{}
	for _, st := range res.tasks {
		byName[st.t.Name] = st.t
	}
	runs := map[string]map[scope.DeviceID][]record{}
	for _, r := range res.records {
		if runs[r.Task] == nil {
			runs[r.Task] = map[scope.DeviceID][]record{}
		}
		runs[r.Task][r.Device] = append(runs[r.Task][r.Device], r)
	}
	inv := res.sim.inv
	resolve := func(tk *task.Task) []scope.DeviceID {
		r, err := scope.Resolve(ctx, tk.Scope, inv)
		if err != nil {
			t.Fatal(err)
		}
		return r.Devices
	}
	zone := func(id scope.DeviceID) *time.Location {
		l, err := time.LoadLocation(res.sim.devices[id].TimeZone)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	between := func(s schedule.Schedule, l *time.Location) []time.Time {
		var out []time.Time
		for at := range s.Between(o.start, res.end, l) {
			out = append(out, at)
		}
		return out
	}
	steady := func(id scope.DeviceID) bool { return len(res.offline[id]) == 0 && len(res.cut[id]) == 0 }
	off := func(id scope.DeviceID) bool { return len(res.offline[id]) > 0 }

	// Friday scan: once per device in its own zone, also on devices that
	// were off then (run missed: caught up at boot).
	fri := byName["Friday virus scan"]
	caught := 0
	for _, id := range resolve(fri) {
		want := between(fri.Schedule, zone(id))
		got := runs[fri.ID][id]
		if len(got) != len(want) || len(want) != 1 {
			t.Errorf("Friday scan on %s: %d runs, want %d", id, len(got), len(want))
			continue
		}
		if !got[0].At.Equal(want[0]) {
			t.Errorf("Friday scan on %s: activation %s, want %s", id, got[0].At, want[0])
		}
		if caughtUp(got[0]) != off(id) {
			t.Errorf("Friday scan on %s: caught up %v, switched off %v", id, caughtUp(got[0]), off(id))
		}
		if caughtUp(got[0]) {
			caught++
		}
	}
	if caught == 0 {
		t.Error("no Friday scan was caught up")
	}

	// Nightly scan, device time, run missed off: every activation on
	// devices that stayed on (02:30 is 03:00 in Berlin on 29 March).
	night := byName["Nightly scan of servers"]
	sawGap := false
	for _, id := range resolve(night) {
		if off(id) {
			continue
		}
		want := between(night.Schedule, zone(id))
		got := runs[night.ID][id]
		if len(got) != len(want) {
			t.Errorf("nightly scan on %s (%s): %d runs, want %d", id, zone(id), len(got), len(want))
			continue
		}
		for i := range got {
			if !got[i].At.Equal(want[i]) {
				t.Errorf("nightly scan on %s: run %d at %s, want %s", id, i, got[i].At, want[i])
			}
			if zone(id).String() == "Europe/Berlin" && got[i].At.Equal(time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC)) {
				sawGap = true
			}
		}
	}
	if !sawGap {
		t.Error("no Berlin device ran the nightly scan at 03:00 CEST on the spring-forward day")
	}

	// Device selection, server time: every day on devices connected all
	// week, never more often anywhere.
	sel := byName["Quick scan of Windows 11"]
	berlin, _ := time.LoadLocation("Europe/Berlin")
	days := len(between(sel.Schedule, berlin))
	if days != 7 {
		t.Fatalf("selection task: %d activations in the week, want 7", days)
	}
	for _, id := range resolve(sel) {
		got := len(runs[sel.ID][id])
		if steady(id) && got != days || got > days {
			t.Errorf("selection task on %s: %d runs, want %d (steady %v)", id, got, days, steady(id))
		}
	}

	// Updates: one run per repository download on devices connected all
	// week.
	upd := byName["Update databases"]
	for _, id := range resolve(upd) {
		if got := len(runs[upd.ID][id]); steady(id) && got != 7 {
			t.Errorf("update task on %s: %d runs, want 7", id, got)
		}
	}

	// The installation ran once per device of the IP range; the chained
	// scan ran once on each device where it completed.
	inst, after := byName["Install Endpoint Security 12.8.1"], byName["Scan after installation"]
	completed := 0
	for _, id := range resolve(inst) {
		if got := len(runs[inst.ID][id]); got != 1 {
			t.Errorf("install on %s: %d runs, want 1", id, got)
		}
		r, err := res.sim.m.Result(ctx, task.System, inst.ID, id)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if r.State == task.Completed {
			want = 1
			completed++
		}
		if got := len(runs[after.ID][id]); got != want {
			t.Errorf("scan after install on %s (install %s): %d runs, want %d", id, r.State, got, want)
		}
	}
	if completed == 0 {
		t.Error("no installation completed")
	}
	st, err := res.sim.m.Statistics(ctx, task.System, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.RestartRequired == 0 || res.sim.forced == 0 || res.sim.byUser == 0 {
		t.Errorf("restart timeline: %d pending, %d forced, %d accepted; want some of each", st.RestartRequired, res.sim.forced, res.sim.byUser)
	}
}

func TestQuickstartRejectsBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-devices", "3"},
		{"-devices", "20001"},
		{"-days", "0"},
		{"-days", "32"},
		{"-start", "yesterday"},
		{"extra"},
	} {
		if err := run(context.Background(), args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	existing := filepath.Join(t.TempDir(), "old.db")
	if err := os.WriteFile(existing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"-db", existing}, io.Discard); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("an existing -db: %v, want a refusal", err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-help"}, &out); err != nil {
		t.Fatalf("-help: %v", err)
	}
	for _, flag := range []string{"-devices", "-days", "-seed", "-db", "-report", "-progress"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("-help does not explain %s:\n%s", flag, out.String())
		}
	}
}

// TestSameSeedSameWeek: a seed replays the same simulation.
func TestSameSeedSameWeek(t *testing.T) {
	t.Parallel()
	summary := func() string {
		var out bytes.Buffer
		dir := t.TempDir()
		if err := run(context.Background(), []string{"-devices", "60", "-days", "5", "-seed", "9", "-progress=false",
			"-db", filepath.Join(dir, "q.db"), "-report", filepath.Join(dir, "r.html")}, &out); err != nil {
			t.Fatal(err)
		}
		var keep []string
		for _, line := range strings.Split(out.String(), "\n") {
			if !strings.Contains(line, dir) && !strings.HasPrefix(line, "Simulated ") {
				keep = append(keep, line)
			}
		}
		return strings.Join(keep, "\n")
	}
	a, b := summary(), summary()
	if a != b {
		t.Errorf("two runs with the same seed differ:\n%s\n----\n%s", a, b)
	}
	if !strings.Contains(a, "runs on") {
		t.Errorf("no summary:\n%s", a)
	}
}

// reportAgreesWithTerminal checks that the HTML report and the terminal
// say the same, to the run: the report holds the terminal summary, each
// task's run count is the terminal's, and the UTC and device-local charts
// hold every one of those runs.
func reportAgreesWithTerminal(t *testing.T, text, html string) {
	t.Helper()
	terminal := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^  (\S.*?)\s+(\d+) runs on (\d+) devices$`).FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[2])
		terminal[m[1]] = n
	}
	if len(terminal) != 6 {
		t.Fatalf("found %d task lines on the terminal, want 6:\n%s", len(terminal), text)
	}
	sections := strings.Split(html, "<h2>")[2:]
	for _, sec := range sections {
		name := sec[:strings.Index(sec, "</h2>")]
		want, ok := terminal[name]
		if !ok {
			t.Errorf("report task %q is not on the terminal", name)
			continue
		}
		runs := regexp.MustCompile(`data-runs="(\d+)"`).FindStringSubmatch(sec)
		if runs == nil || runs[1] != strconv.Itoa(want) {
			t.Errorf("%s: report says %v runs, terminal %d", name, runs, want)
		}
		for _, kind := range []string{"utc", "local"} {
			m := regexp.MustCompile(`class="` + kind + `" data-total="(\d+)"`).FindStringSubmatch(sec)
			if m == nil || m[1] != strconv.Itoa(want) {
				t.Errorf("%s: the %s chart holds %v runs, terminal says %d", name, kind, m, want)
			}
		}
	}
	if !strings.Contains(html, "Runs per task (") {
		t.Error("the report lacks the terminal summary")
	}
}

// Without a terminal the progress is a plain line every few seconds of
// wall time, and a last line when done.
func TestProgressWithoutATerminal(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	wall := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newBar(&out, false, 10*time.Hour, func() time.Time { return wall })
	sim := time.Date(2026, 3, 23, 8, 0, 0, 0, time.UTC)
	for i := range 60 { // ten simulated minutes and one wall second per step
		b.update(time.Duration(i)*10*time.Minute, sim.Add(time.Duration(i)*10*time.Minute), int64(i*7))
		wall = wall.Add(time.Second)
	}
	b.done()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 21 { // at 0, 3, ..., 57 s, then the final line
		t.Fatalf("%d lines, want 21:\n%s", len(lines), out.String())
	}
	if strings.Contains(out.String(), "\r") {
		t.Error("carriage returns in non-terminal output")
	}
	if !strings.Contains(lines[20], "(done)") || !strings.Contains(lines[20], "413 runs") || !strings.Contains(lines[1], "5%") {
		t.Errorf("unexpected lines:\n%s", out.String())
	}
}
