// Command quickstart is the README's first command: an embedded taskfleet
// server on SQLite runs a simulated week of a 1,000-device fleet in a few
// seconds.
//
//	go run ./examples/quickstart [-devices 1000] [-days 7] [-seed 1] [-db path] [-report path] [-progress=false] [-serve :8080]
//
// The fleet lives in several administration groups and six time zones; the
// default week starts on Monday 2026-03-23, so Europe springs forward on
// its Sunday. Five tasks of different kinds run on it: a group virus scan
// every Friday at 19:00 device-local time with the automatic randomized
// delay and "run missed tasks", an update task on "new updates
// downloaded" (the repository downloads updates every evening), a
// global installation on an IP range with a restart prompt, a
// device-selection scan that the server runs at noon on its own time on
// the connected devices only, and a scan that runs when the installation
// completes; plus a nightly scan at 02:30 that shows the DST gap. Devices
// disconnect and come back, and some are switched off over Friday evening,
// so the Friday scan is caught up when they boot.
//
// It prints runs per task, devices per state, missed runs caught up and
// pending restarts, and writes an HTML report (inline SVG, no network)
// with that summary and, for every task, the latest state of its devices
// and its starts per hour in UTC, by time of day in each device's own zone,
// and by minutes after the activation (the randomized delay). Progress
// goes to stderr: a bar on a terminal, a line every 3 seconds otherwise.
//
// The simulation is package enginetest's harness on the SQLite store
// (sqlstore), the same wiring a host uses to simulate on its own store.
//
// With -serve :8080 it then serves the administration console (package
// task/console) at http://localhost:8080/console/ and keeps the fleet
// running, so a newcomer can click through the week, start tasks and
// watch them run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "time/tzdata" // the fleet's zones, whatever the host has installed
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

type options struct {
	devices  int
	days     int
	seed     uint64
	db       string
	report   string
	progress bool
	start    time.Time
	serve    string
}

func parse(args []string, out io.Writer) (options, error) {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(out)
	o := options{}
	fs.IntVar(&o.devices, "devices", 1000, "number of simulated devices, 10..20000")
	fs.IntVar(&o.days, "days", 7, "simulated days, 1..31")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the fleet's behaviour: who goes offline, which runs fail or need a restart")
	fs.StringVar(&o.db, "db", "", "the server's SQLite database file, which must not exist yet (default: a new file under the OS temp dir)")
	fs.StringVar(&o.report, "report", "", "where to write the HTML report (default: next to the database, .html)")
	fs.BoolVar(&o.progress, "progress", true, "show progress on stderr: a bar on a terminal, otherwise a line every 3 seconds")
	fs.StringVar(&o.serve, "serve", "", "after the simulation, serve the administration console on this address (for example :8080) and keep the fleet running")
	startText := fs.String("start", "2026-03-23T08:00:00Z", "simulated start (RFC 3339, UTC); the default week has Europe's spring-forward")
	fs.Usage = func() {
		fmt.Fprintln(out, "Usage: go run ./examples/quickstart [flags]")
		fmt.Fprintln(out, "")
		fmt.Fprintln(out, "Simulates a fleet managed by an embedded taskfleet server on SQLite for a few days")
		fmt.Fprintln(out, "of fake time: scheduled, event-triggered, server-run and chained tasks, devices going")
		fmt.Fprintln(out, "offline and coming back, a restart prompt. Prints a summary and writes an HTML report.")
		fmt.Fprintln(out, "")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (see -help)", fs.Arg(0))
	}
	if o.devices < 10 || o.devices > 20000 {
		return o, fmt.Errorf("-devices %d: must be between 10 and 20000", o.devices)
	}
	if o.days < 1 || o.days > 31 {
		return o, fmt.Errorf("-days %d: must be between 1 and 31", o.days)
	}
	t, err := time.Parse(time.RFC3339, *startText)
	if err != nil {
		return o, fmt.Errorf("-start: %w", err)
	}
	o.start = t.UTC().Truncate(time.Minute)
	if o.db != "" {
		if _, err := os.Stat(o.db); err == nil {
			return o, fmt.Errorf("-db %s: exists; the simulation starts from a new database", o.db)
		}
	} else {
		dir, err := os.MkdirTemp("", "taskfleet-quickstart-")
		if err != nil {
			return o, err
		}
		o.db = filepath.Join(dir, "taskfleet.db")
	}
	if o.report == "" {
		o.report = o.db[:len(o.db)-len(filepath.Ext(o.db))] + ".html"
	}
	return o, nil
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parse(args, out)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	var progress *bar
	if o.progress {
		fi, err := os.Stderr.Stat()
		tty := err == nil && fi.Mode()&os.ModeCharDevice != 0 // a terminal: redrawn in place
		progress = newBar(os.Stderr, tty, time.Duration(o.days)*24*time.Hour, time.Now)
	}
	res, err := simulate(ctx, o, out, progress)
	if err != nil {
		return err
	}
	defer res.close()
	sums, err := summaries(ctx, res)
	if err != nil {
		return err
	}
	var summary strings.Builder
	if err := summarize(ctx, res, sums, io.MultiWriter(out, &summary)); err != nil {
		return err
	}
	f, err := os.Create(o.report)
	if err != nil {
		return err
	}
	if err := writeReport(f, res, sums, summary.String()); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nHTML report (this summary; per task the device states and the starts in UTC, in device-local time and after the randomized delay): %s\n", o.report)
	if o.serve != "" {
		return serveConsole(ctx, res, o.serve, out)
	}
	fmt.Fprintln(out, "Next: go doc github.com/taskfleet/taskfleet/task/engine, and the other programs in examples/.")
	return nil
}
