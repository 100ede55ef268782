package main

import (
	"context"
	"fmt"
	"html"
	"io"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task"
)

// bar draws a progress bar on w (nil: none), redrawn once per simulated
// hour.
type bar struct {
	w     io.Writer
	total time.Duration
	last  int
}

func newBar(w io.Writer, total time.Duration) *bar { return &bar{w: w, total: total, last: -1} }

func (b *bar) update(elapsed time.Duration, now time.Time, e *executor) {
	if b.w == nil || int(elapsed/time.Hour) == b.last {
		return
	}
	b.last = int(elapsed / time.Hour)
	const width = 40
	n := int(int64(width) * int64(elapsed) / int64(b.total))
	e.mu.Lock()
	runs := len(e.records)
	e.mu.Unlock()
	fmt.Fprintf(b.w, "\r  [%s%s] %3d%%  %s  %7d runs", strings.Repeat("#", n), strings.Repeat(".", width-n),
		100*elapsed/b.total, now.Format("Mon 02 Jan 15:04 MST"), runs)
}

func (b *bar) done() {
	if b.w != nil {
		fmt.Fprintln(b.w)
	}
}

// caughtUp says whether a run of a task that runs missed tasks started
// long after its activation (more than the longest automatic randomized
// delay and half an hour): the device was off then and ran it at boot.
func caughtUp(r record) bool {
	return r.Started.Sub(r.At) > schedule.MaxAutoWindow+30*time.Minute
}

func summarize(ctx context.Context, res *outcome, out io.Writer) error {
	s := res.sim
	if res.rejected != nil {
		fmt.Fprintf(out, "A bad setting is refused with a typed error naming the field and its range:\n  %v\n\n", res.rejected)
	}
	runs := map[string]int{}
	devices := map[string]map[string]bool{}
	caught := map[string]int{}
	for _, r := range res.records {
		runs[r.Task]++
		if devices[r.Task] == nil {
			devices[r.Task] = map[string]bool{}
		}
		devices[r.Task][string(r.Device)] = true
	}
	fmt.Fprintf(out, "Runs per task (%d runs in all):\n", len(res.records))
	totalCaught := 0
	for _, st := range res.tasks {
		if st.t.Schedule.RunMissed {
			for _, r := range res.records {
				if r.Task == st.t.ID && caughtUp(r) {
					caught[st.t.ID]++
					totalCaught++
				}
			}
		}
		stats, err := s.m.Statistics(ctx, task.System, st.t.ID)
		if err != nil {
			return err
		}
		where := "run by the agents on device-local time"
		if st.t.RunsOnServer() {
			where = "run by the server on server time"
		}
		fmt.Fprintf(out, "  %-34s %6d runs on %4d devices\n      %s; %s\n", st.t.Name, runs[st.t.ID], len(devices[st.t.ID]), st.what, where)
		var parts []string
		for _, state := range task.States {
			if n := stats.ByState[state]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", state, n))
			}
		}
		if len(parts) == 0 {
			parts = []string{"no devices"}
		}
		fmt.Fprintf(out, "      latest state of %d devices: %s\n", stats.Total, strings.Join(parts, ", "))
	}

	off, cut := len(res.offline), len(res.cut)
	fmt.Fprintf(out, "\nOffline devices: %d lost their connection for 3 to 20 hours (their agents ran device-local tasks and reported later);\n", cut)
	fmt.Fprintf(out, "  %d were switched off over Friday evening.\n", off)
	fmt.Fprintf(out, "Missed runs caught up (run missed tasks, started when the device came back): %d\n", totalCaught)
	for _, st := range res.tasks {
		if n := caught[st.t.ID]; n > 0 {
			fmt.Fprintf(out, "  %-34s %d\n", st.t.Name, n)
		}
	}
	pending := 0
	for _, st := range res.tasks {
		if st.t.ID == s.restartTask {
			stats, err := s.m.Statistics(ctx, task.System, st.t.ID)
			if err != nil {
				return err
			}
			pending = stats.RestartRequired
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

// startsPerHour counts the runs of a task started in each hour of the
// simulation.
func startsPerHour(res *outcome, taskID string) []int {
	hours := int(res.end.Sub(res.opts.start) / time.Hour)
	counts := make([]int, hours)
	for _, r := range res.records {
		if r.Task != taskID {
			continue
		}
		h := int(r.Started.Sub(res.opts.start) / time.Hour)
		if h >= 0 && h < hours {
			counts[h]++
		}
	}
	return counts
}

// writeReport writes a self-contained HTML page: one inline SVG chart of
// starts per hour for each task.
func writeReport(w io.Writer, res *outcome) error {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>taskfleet quickstart report</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}h2{font-size:1.05em;margin:1.6em 0 .2em}p{margin:.2em 0}
svg{background:#fafafa;border:1px solid #ddd}.bar{fill:#3b7dd8}.axis{stroke:#999;stroke-width:1}.day{stroke:#ddd;stroke-width:1}text{font-size:11px;fill:#555}</style>
</head><body>
`)
	fmt.Fprintf(&b, "<h1>taskfleet quickstart</h1>\n<p>%d devices, %d simulated days from %s (UTC), seed %d. Starts per hour of each task.</p>\n",
		res.opts.devices, res.opts.days, html.EscapeString(res.opts.start.Format("Mon 2006-01-02 15:04")), res.opts.seed)
	for _, st := range res.tasks {
		counts := startsPerHour(res, st.t.ID)
		total, peak := 0, 0
		for _, c := range counts {
			total += c
			peak = max(peak, c)
		}
		fmt.Fprintf(&b, "<h2>%s</h2>\n<p>%s &mdash; %d runs, at most %d in one hour</p>\n", html.EscapeString(st.t.Name), html.EscapeString(st.what), total, peak)
		b.WriteString(chart(counts, peak, res.opts.start))
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// chart draws counts (one bar per hour) as an SVG bar chart with a line
// at every UTC midnight.
func chart(counts []int, peak int, start time.Time) string {
	const barW, height, left, bottom, top = 5, 120, 40, 20, 8
	width := left + barW*len(counts) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img">`+"\n", width, height+bottom+top)
	plot := float64(height)
	for h := range counts {
		at := start.Add(time.Duration(h) * time.Hour)
		if at.Hour() == 0 {
			x := left + barW*h
			fmt.Fprintf(&b, `<line class="day" x1="%d" y1="%d" x2="%d" y2="%d"/><text x="%d" y="%d">%s</text>`+"\n",
				x, top, x, top+height, x+2, top+height+14, at.Format("Mon 02"))
		}
	}
	for h, c := range counts {
		if c == 0 || peak == 0 {
			continue
		}
		bh := plot * float64(c) / float64(peak)
		fmt.Fprintf(&b, `<rect class="bar" x="%d" y="%.1f" width="%d" height="%.1f"><title>%s: %d</title></rect>`+"\n",
			left+barW*h, float64(top)+plot-bh, barW-1, bh, start.Add(time.Duration(h)*time.Hour).Format("Mon 15:04 MST"), c)
	}
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, left, top+height, width-10, top+height)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, left, top, left, top+height)
	fmt.Fprintf(&b, `<text x="2" y="%d">%d</text><text x="2" y="%d">0</text>`+"\n", top+10, peak, top+height)
	b.WriteString("</svg>\n")
	return b.String()
}
