package main

import (
	"context"
	"fmt"
	"html"
	"io"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

// bar shows progress on w (nil: none). On a terminal it is a bar redrawn
// in place once per simulated hour; otherwise (a pipe, a CI log) it is
// one plain line every `every` of wall time, so a long run is never
// silent.
type bar struct {
	w     io.Writer
	tty   bool
	total time.Duration
	last  int
	wall  func() time.Time // the wall clock (injected by tests)
	every time.Duration
	next  time.Time
	// the last state drawn, for the final line
	elapsed time.Duration
	now     time.Time
	runs    int64
}

func newBar(w io.Writer, tty bool, total time.Duration, wall func() time.Time) *bar {
	return &bar{w: w, tty: tty, total: total, last: -1, wall: wall, every: 3 * time.Second}
}

func (b *bar) line(elapsed time.Duration, now time.Time, runs int64) string {
	return fmt.Sprintf("%3d%%  simulated %s  %7d runs", 100*elapsed/b.total, now.Format("Mon 02 Jan 15:04 MST"), runs)
}

func (b *bar) update(elapsed time.Duration, now time.Time, runs int64) {
	if b.w == nil {
		return
	}
	b.elapsed, b.now, b.runs = elapsed, now, runs
	if b.tty {
		if int(elapsed/time.Hour) == b.last {
			return
		}
		b.last = int(elapsed / time.Hour)
		const width = 40
		n := int(int64(width) * int64(elapsed) / int64(b.total))
		fmt.Fprintf(b.w, "\r  [%s%s] %s", strings.Repeat("#", n), strings.Repeat(".", width-n), b.line(elapsed, now, runs))
		return
	}
	if w := b.wall(); !w.Before(b.next) {
		b.next = w.Add(b.every)
		fmt.Fprintf(b.w, "  %s\n", b.line(elapsed, now, runs))
	}
}

func (b *bar) done() {
	switch {
	case b.w == nil:
	case b.tty:
		fmt.Fprintln(b.w)
	case !b.now.IsZero():
		fmt.Fprintf(b.w, "  %s (done)\n", b.line(b.elapsed, b.now, b.runs))
	}
}

// caughtUp says whether a run of a task that runs missed tasks started
// long after its activation (more than the longest automatic randomized
// delay and half an hour): the device was off then and ran it at boot.
func caughtUp(r record) bool {
	return r.Started.Sub(r.At) > schedule.MaxAutoWindow+30*time.Minute
}

// taskSummary is what the terminal and the HTML report say about a task:
// both are written from it, so they agree to the run.
type taskSummary struct {
	st      simTask
	runs    []record // every run the devices started, by start
	devices int      // devices that started at least one run
	caught  int      // runs caught up at boot (run missed tasks)
	stats   task.Statistics
	where   string
}

// summaries gathers each task's runs and statistics.
func summaries(ctx context.Context, res *outcome) ([]taskSummary, error) {
	var out []taskSummary
	for _, st := range res.tasks {
		ts := taskSummary{st: st, where: "run by the agents on device-local time"}
		if st.t.RunsOnServer() {
			ts.where = "run by the server on server time"
		}
		seen := map[scope.DeviceID]bool{}
		for _, r := range res.records {
			if r.Task != st.t.ID {
				continue
			}
			ts.runs = append(ts.runs, r)
			seen[r.Device] = true
			if st.t.Schedule.RunMissed && caughtUp(r) {
				ts.caught++
			}
		}
		ts.devices = len(seen)
		stats, err := res.sim.m.Statistics(ctx, task.System, st.t.ID)
		if err != nil {
			return nil, err
		}
		ts.stats = stats
		out = append(out, ts)
	}
	return out, nil
}

// runsLine is the per-task count line of both the terminal and the report.
func (ts taskSummary) runsLine() string {
	return fmt.Sprintf("%d runs on %d devices", len(ts.runs), ts.devices)
}

// statesLine is the latest state of every device in the task's scope.
func (ts taskSummary) statesLine() string {
	var parts []string
	for _, state := range task.StatisticsStates {
		if n := ts.stats.ByState[state]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", state, n))
		}
	}
	if len(parts) == 0 {
		parts = []string{"no devices"}
	}
	return fmt.Sprintf("latest state of %d devices: %s", ts.stats.Total, strings.Join(parts, ", "))
}

func summarize(ctx context.Context, res *outcome, sums []taskSummary, out io.Writer) error {
	s := res.sim
	if res.rejected != nil {
		fmt.Fprintf(out, "A bad setting is refused with a typed error naming the field and its range:\n  %v\n\n", res.rejected)
	}
	fmt.Fprintf(out, "Runs per task (%d runs in all):\n", len(res.records))
	totalCaught := 0
	for _, ts := range sums {
		totalCaught += ts.caught
		fmt.Fprintf(out, "  %-34s %s\n      %s; %s\n", ts.st.t.Name, ts.runsLine(), ts.st.what, ts.where)
		fmt.Fprintf(out, "      %s\n", ts.statesLine())
	}
	off, cut := len(res.offline), len(res.cut)
	fmt.Fprintf(out, "\nOffline devices: %d lost their connection for 3 to 20 hours (their agents ran device-local tasks and reported later);\n", cut)
	fmt.Fprintf(out, "  %d were switched off over Friday evening.\n", off)
	fmt.Fprintf(out, "Missed runs caught up (run missed tasks, started when the device came back): %d\n", totalCaught)
	pending := 0
	for _, ts := range sums {
		if n := ts.caught; n > 0 {
			fmt.Fprintf(out, "  %-34s %d\n", ts.st.t.Name, n)
		}
		if ts.st.t.ID == s.restartTask {
			pending = ts.stats.RestartRequired
		}
	}
	fmt.Fprintf(out, "Restart prompts shown: %d; restarts: %d accepted by the user, %d forced after 30 min\n", s.prompts, s.byUser, s.forced)
	fmt.Fprintf(out, "Restarts pending (session locked at the forced restart): %d devices\n", pending)
	st := s.srv.Stats()
	fmt.Fprintf(out, "Server: %d activations fired, %d starts dispatched (%d resent), %d results applied, %d heartbeats\n",
		st.Fired, st.Dispatched, st.Resent, st.ResultsApplied, st.Heartbeats)
	fmt.Fprintf(out, "Simulated %d days of %d devices in %.1f s\n", res.opts.days, res.opts.devices, res.wall.Seconds())
	return nil
}

// startsPerHour counts the runs started in each UTC hour of the simulation.
// A run started at the very end (the last clock step lands on it) counts
// in the last hour, so the chart holds every run of the summary.
func startsPerHour(res *outcome, runs []record) []int {
	hours := int(res.end.Sub(res.opts.start) / time.Hour)
	counts := make([]int, hours)
	for _, r := range runs {
		counts[min(max(int(r.Started.Sub(res.opts.start)/time.Hour), 0), hours-1)]++
	}
	return counts
}

// localSlot is the width of a bar of the device-local time-of-day chart.
const localSlot = 10 * time.Minute

// startsByLocalTime counts the runs by the device-local time of day they
// started at, in slots of localSlot (00:00-00:10, ...).
func startsByLocalTime(res *outcome, runs []record) []int {
	counts := make([]int, int(24*time.Hour/localSlot))
	for _, r := range runs {
		t := r.Started.In(res.sim.zone(r.Device))
		counts[(t.Hour()*60+t.Minute())/int(localSlot/time.Minute)]++
	}
	return counts
}

// delays returns the minutes between each run's activation and its start
// (the randomized delay, plus up to a clock step), without caught-up runs,
// and how many runs were caught up.
func delays(runs []record) (perMinute []int, caught int) {
	for _, r := range runs {
		if caughtUp(r) {
			caught++
			continue
		}
		m := max(int(r.Started.Sub(r.At)/time.Minute), 0)
		for len(perMinute) <= m {
			perMinute = append(perMinute, 0)
		}
		perMinute[m]++
	}
	return perMinute, caught
}

// zone is a device's time zone.
func (s *fleetSim) zone(id scope.DeviceID) *time.Location {
	l, err := time.LoadLocation(s.devices[id].TimeZone)
	if err != nil {
		return time.UTC
	}
	return l
}

// writeReport writes a self-contained HTML page: the terminal's summary,
// then for each task its run counts and device states, and its starts
// three ways: per hour in UTC, by time of day in each device's own zone,
// and by delay after the activation (the randomized delay).
func writeReport(w io.Writer, res *outcome, sums []taskSummary, summary string) error {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>taskfleet quickstart report</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:80em}h2{font-size:1.1em;margin:2em 0 .2em}h3{font-size:.95em;margin:1em 0 .2em}p{margin:.2em 0}
pre{background:#f4f4f4;padding:.8em;overflow-x:auto}table{border-collapse:collapse}td,th{padding:.1em .8em;text-align:right;border-bottom:1px solid #eee}th{text-align:left}
svg{background:#fafafa;border:1px solid #ddd}.bar{fill:#3b7dd8}.axis{stroke:#999;stroke-width:1}.day{stroke:#ddd;stroke-width:1}text{font-size:11px;fill:#555}</style>
</head><body>
`)
	fmt.Fprintf(&b, "<h1>taskfleet quickstart</h1>\n<p>%d devices, %d simulated days from %s (UTC), seed %d.</p>\n",
		res.opts.devices, res.opts.days, html.EscapeString(res.opts.start.Format("Mon 2006-01-02 15:04")), res.opts.seed)
	fmt.Fprintf(&b, "<h2>Summary (as printed on the terminal)</h2>\n<pre>%s</pre>\n", html.EscapeString(summary))
	for _, ts := range sums {
		fmt.Fprintf(&b, "<h2>%s</h2>\n<p>%s; %s.</p>\n<p class=\"runs\" data-runs=\"%d\">%s</p>\n",
			html.EscapeString(ts.st.t.Name), html.EscapeString(ts.st.what), html.EscapeString(ts.where), len(ts.runs), html.EscapeString(ts.runsLine()))
		b.WriteString("<h3>Latest state of each device in scope</h3>\n<table>")
		for _, state := range task.StatisticsStates {
			if n := ts.stats.ByState[state]; n > 0 {
				fmt.Fprintf(&b, "<tr><th>%s</th><td>%d</td></tr>", html.EscapeString(string(state)), n)
			}
		}
		fmt.Fprintf(&b, "<tr><th>devices</th><td>%d</td></tr></table>\n", ts.stats.Total)

		utc := startsPerHour(res, ts.runs)
		b.WriteString("<h3>Starts per hour (UTC)</h3>\n")
		b.WriteString(chart(utc, "utc", func(i int) (string, bool) {
			at := res.opts.start.Add(time.Duration(i) * time.Hour)
			return at.Format("Mon 02"), at.Hour() == 0
		}, func(i int) string { return res.opts.start.Add(time.Duration(i) * time.Hour).Format("Mon 15:04 MST") }))

		local := startsByLocalTime(res, ts.runs)
		b.WriteString("<h3>Starts by time of day in each device's own zone (10-minute slots)</h3>\n")
		b.WriteString(chart(local, "local", func(i int) (string, bool) {
			m := i * int(localSlot/time.Minute)
			return fmt.Sprintf("%02d:00", m/60), m%180 == 0
		}, func(i int) string {
			m := i * int(localSlot/time.Minute)
			return fmt.Sprintf("%02d:%02d-%02d:%02d local", m/60, m%60, (m+10)/60%24, (m+10)%60)
		}))

		perMinute, caught := delays(ts.runs)
		fmt.Fprintf(&b, "<h3>Minutes from activation to start (the randomized delay plus up to one %s clock step)</h3>\n", step)
		if caught > 0 {
			fmt.Fprintf(&b, "<p>%d runs were caught up when their device came back (not shown).</p>\n", caught)
		}
		b.WriteString(chart(perMinute, "delay", func(i int) (string, bool) {
			return fmt.Sprint(i), i%10 == 0
		}, func(i int) string { return fmt.Sprintf("%d-%d min", i, i+1) }))
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// chart draws counts as an SVG bar chart; label(i) returns the axis label
// of bar i and whether to draw it, title(i) the bar's tooltip. data-total
// is the sum of the bars.
func chart(counts []int, kind string, label func(int) (string, bool), title func(int) string) string {
	const height, left, bottom, top = 120, 40, 20, 8
	barW := 5
	if len(counts) < 100 {
		barW = 8
	}
	peak, total := 0, 0
	for _, c := range counts {
		peak, total = max(peak, c), total+c
	}
	width := left + barW*len(counts) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" class="%s" data-total="%d">`+"\n",
		width, height+bottom+top, kind, total)
	plot := float64(height)
	for i := range counts {
		if l, ok := label(i); ok {
			x := left + barW*i
			fmt.Fprintf(&b, `<line class="day" x1="%d" y1="%d" x2="%d" y2="%d"/><text x="%d" y="%d">%s</text>`+"\n",
				x, top, x, top+height, x+2, top+height+14, html.EscapeString(l))
		}
	}
	for i, c := range counts {
		if c == 0 || peak == 0 {
			continue
		}
		bh := plot * float64(c) / float64(peak)
		fmt.Fprintf(&b, `<rect class="bar" x="%d" y="%.1f" width="%d" height="%.1f"><title>%s: %d</title></rect>`+"\n",
			left+barW*i, float64(top)+plot-bh, barW-1, bh, html.EscapeString(title(i)), c)
	}
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, left, top+height, width-10, top+height)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, left, top, left, top+height)
	fmt.Fprintf(&b, `<text x="2" y="%d">%d</text><text x="2" y="%d">0</text>`+"\n", top+10, peak, top+height)
	b.WriteString("</svg>\n")
	return b.String()
}
