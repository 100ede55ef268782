package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/taskfleet/taskfleet/task/transport/httptransport/testpki"
)

// Figures are the load test's measurements.
type Figures struct {
	Agents int    `json:"agents"`
	Sims   int    `json:"sims"`
	Store  string `json:"store"`
	// ConnectSeconds: from the simulators' start until every agent had
	// enrolled.
	ConnectSeconds float64 `json:"connect_seconds"`
	Steady         Steady  `json:"steady"`
	Probe          Probe   `json:"probe"`
	Start          Start   `json:"start"`
	Restart        Restart `json:"restart"`
	// Failures are the agents' failed requests over the whole test by
	// kind (httptransport.Failure.Kind: "poll 503 unavailable", "enroll
	// unreachable" …); NeverConnected the agents the server never
	// accepted a request from.
	Failures       map[string]int64 `json:"failures"`
	NeverConnected int              `json:"never_connected"`
}

// Steady is the steady state of every agent connected.
type Steady struct {
	RequestsPerSecond float64 `json:"requests_per_second"`
	// CPUPercent is the server's CPU time over the window (100: one
	// core).
	CPUPercent float64 `json:"cpu_percent"`
	RSSMiB     float64 `json:"rss_mib"`
	BaseRSSMiB float64 `json:"base_rss_mib"`
	// PerDeviceKiB is (RSS - base RSS) / agents.
	PerDeviceKiB float64 `json:"per_device_kib"`
	// HeldPolls are the long polls the server held at the end of the
	// window, FDs its open files, Goroutines its goroutines.
	HeldPolls  int64 `json:"held_polls"`
	FDs        int   `json:"fds"`
	Goroutines int   `json:"goroutines"`
}

// Start is a manual start of the task on every agent.
type Start struct {
	Run int64 `json:"run"`
	// AllReceivedSeconds: from Start until the last agent received the
	// StartRun; AllRecordedSeconds: until every result was recorded.
	AllReceivedSeconds float64 `json:"all_received_seconds"`
	AllRecordedSeconds float64 `json:"all_recorded_seconds"`
	// AllDispatchedSeconds: from Start until the server had dispatched
	// the start to every agent (the engine's Stats.Dispatched grew by
	// the agent count; read every 250 ms). In check-in mode an agent gets
	// its start at its first check-in after that.
	AllDispatchedSeconds float64 `json:"all_dispatched_seconds"`
	// TakenOver and Fenced are the engine's counters over the start
	// (Stats.TakenOver, Stats.Fenced): starts the server took over from
	// an expired lease (its own, when it lagged) and stopped resending.
	TakenOver int64 `json:"taken_over"`
	Fenced    int64 `json:"fenced"`
	// Reclaimed: its own lapsed claims the server kept (Stats.Reclaimed);
	// Resent: starts sent again (Stats.Resent).
	Reclaimed int64 `json:"reclaimed"`
	Resent    int64 `json:"resent"`
	// Store is the engine's time in store calls from Start until every
	// result was recorded, by operation.
	Store    map[string]StoreCalls `json:"store"`
	P50Ms    int64                 `json:"p50_ms"`
	P99Ms    int64                 `json:"p99_ms"`
	MaxMs    int64                 `json:"max_ms"`
	Received int                   `json:"received"`
}

// Restart is a start followed by a SIGKILL of the server and a restart.
type Restart struct {
	Run int64 `json:"run"`
	// ReconnectSeconds: from the restarted server listening until every
	// agent made a request to it; RecordedSeconds: until every result of the
	// run was recorded.
	ReconnectSeconds float64 `json:"reconnect_seconds"`
	RecordedSeconds  float64 `json:"recorded_seconds"`
	// Executions of each run across all agents (each must be Agents);
	// Redelivered starts received again after the agent ran them (not
	// run again); Lost results not recorded.
	Executions  map[int64]int `json:"executions"`
	Redelivered int           `json:"redelivered"`
	Lost        int           `json:"lost"`
}

type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
}

func startChild(ctx context.Context, name string, args []string, env []string, out io.Writer) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), childEnv+"=1"), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = &prefixWriter{w: out, prefix: "[" + name + "] "}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{name: name, cmd: cmd, stdin: stdin, lines: make(chan string, 64), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			select {
			case c.lines <- sc.Text():
			case <-ctx.Done():
			}
		}
		_ = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// expect returns the next line of c matching re, or an error after d.
func (c *child) expect(re *regexp.Regexp, d time.Duration) ([]string, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case l := <-c.lines:
			if m := re.FindStringSubmatch(l); m != nil {
				return m, nil
			}
		case <-c.done:
			return nil, fmt.Errorf("%s exited", c.name)
		case <-t.C:
			return nil, fmt.Errorf("%s: no %s within %s", c.name, re, d)
		}
	}
}

func (c *child) stop(sig syscall.Signal) {
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l != "" {
			fmt.Fprint(p.w, p.prefix+l)
		}
	}
	return len(b), nil
}

var listenRE = regexp.MustCompile(`^LISTEN (\S+) ADMIN (\S+)$`)

// coordinate runs the load test and returns its figures.
func coordinate(ctx context.Context, o options, out io.Writer) (Figures, error) {
	fig := Figures{Agents: o.agents, Sims: o.sims, Store: "sqlite"}
	if o.postgres != "" {
		fig.Store = "postgres"
	}
	// Every phase waits at most -timeout (connecting -connect-timeout);
	// the margin leaves time to ask the simulators why a phase timed out.
	ctx, cancel := context.WithTimeout(ctx, o.timeout+2*time.Minute)
	defer cancel()
	if o.dir == "" {
		d, err := os.MkdirTemp("", "fleetload-")
		if err != nil {
			return fig, err
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	if err := writePKI(o.dir); err != nil {
		return fig, err
	}
	sb := make([]byte, 24)
	if _, err := rand.Read(sb); err != nil {
		return fig, err
	}
	env := []string{secretEnv + "=" + hex.EncodeToString(sb)}
	common := []string{"-lease", o.lease.String(), "-checkin", o.checkIn.String(), "-dir", o.dir, "-agents", strconv.Itoa(o.agents), "-wait", o.wait.String(), "-retry", o.retry.String()}
	if o.postgres != "" {
		common = append(common, "-postgres", o.postgres)
	}
	startServer := func(addr, admin string) (*child, []string, error) {
		srv, err := startChild(ctx, "server", append([]string{"-mode", "server", "-addr", addr, "-admin", admin}, common...), env, out)
		if err != nil {
			return nil, nil, err
		}
		m, err := srv.expect(listenRE, 5*time.Minute)
		if err != nil {
			srv.stop(syscall.SIGKILL)
			return nil, nil, err
		}
		return srv, m, nil
	}
	srv, m, err := startServer("127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		return fig, err
	}
	defer func() { srv.stop(syscall.SIGTERM) }()
	addr, adminAddr := m[1], m[2]
	admin := &adminClient{base: "http://" + adminAddr, progress: out}
	base, err := admin.status(ctx, 0)
	if err != nil {
		return fig, err
	}
	fmt.Fprintf(out, "server up on %s (%d devices in the inventory, RSS %.0f MiB)\n", addr, o.agents, mib(base.RSS))

	// The simulators.
	t0 := time.Now()
	var sims []*child
	defer func() {
		// All at once: each may take a while to wind down its agents.
		for _, s := range sims {
			_ = s.stdin.Close()
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, s := range sims {
			s.stop(syscall.SIGTERM)
		}
	}()
	per := (o.agents + o.sims - 1) / o.sims
	for i := range o.sims {
		from, to := i*per+1, min((i+1)*per, o.agents)
		if from > to {
			break
		}
		s, err := startChild(ctx, fmt.Sprintf("sim-%d", i), []string{"-mode", "sim", "-dir", o.dir, "-server", "https://" + addr, "-index", strconv.Itoa(i),
			"-from", strconv.Itoa(from), "-to", strconv.Itoa(to), "-conns", strconv.Itoa(o.conns), "-wait", o.wait.String(), "-checkin", o.checkIn.String(),
			"-heartbeat", o.heartbeat.String(), "-ramp", o.ramp.String(), "-backoff-min", o.backoffMin.String(), "-backoff-max", o.backoffMax.String()}, env, out)
		if err != nil {
			return fig, err
		}
		sims = append(sims, s)
	}
	readyRE := regexp.MustCompile(`^READY (\d+)$`)
	connectBy := t0.Add(o.connectTimeout)
	for _, s := range sims {
		if _, err := s.expect(readyRE, max(time.Until(connectBy), time.Millisecond)); err != nil {
			diagnose(sims, out, "connecting timed out", true)
			return fig, fmt.Errorf("connecting: %w", err)
		}
	}
	fig.ConnectSeconds = time.Since(t0).Seconds()
	if err := admin.waitFor(ctx, max(time.Until(connectBy), time.Second), func(st serverStatus) bool { return allIn(st, o) }); err != nil {
		diagnose(sims, out, "connecting timed out", true)
		return fig, fmt.Errorf("waiting for every agent to hold a poll: %w", err)
	}
	fmt.Fprintf(out, "%d agents enrolled and connected in %.1f s\n", o.agents, fig.ConnectSeconds)
	diagnose(sims, out, "connecting", false)

	// 1. Steady state.
	s1, err := admin.status(ctx, 0)
	if err != nil {
		return fig, err
	}
	w0 := time.Now()
	select {
	case <-time.After(o.steady):
	case <-ctx.Done():
		return fig, ctx.Err()
	}
	s2, err := admin.status(ctx, 0)
	if err != nil {
		return fig, err
	}
	dt := time.Since(w0).Seconds()
	fig.Steady = Steady{RequestsPerSecond: float64(s2.Requests-s1.Requests) / dt, CPUPercent: (s2.CPU - s1.CPU).Seconds() / dt * 100,
		RSSMiB: mib(s2.RSS), BaseRSSMiB: mib(base.RSS), PerDeviceKiB: float64(s2.RSS-base.RSS) / 1024 / float64(o.agents),
		HeldPolls: s2.Channel.Polling, FDs: s2.FDs, Goroutines: s2.Goroutines}
	fmt.Fprintf(out, "steady: %.0f requests/s, server CPU %.0f%%, RSS %.0f MiB (%.1f KiB per device), %d polls held, %d open files\n",
		fig.Steady.RequestsPerSecond, fig.Steady.CPUPercent, fig.Steady.RSSMiB, fig.Steady.PerDeviceKiB, fig.Steady.HeldPolls, fig.Steady.FDs)

	// The steady-state latency of single-device starts (latency.go).
	if fig.Probe, err = measureProbes(ctx, o, admin, sims, out); err != nil {
		return fig, fmt.Errorf("probes: %w", err)
	}

	// 2. A manual start on every agent.
	storeBase, err := admin.storeCalls(ctx)
	if err != nil {
		return fig, err
	}
	if o.profile != "" {
		go admin.profile(ctx, o.profile, 30*time.Second)
	}
	st0 := time.Now()
	run1, err := admin.start(ctx)
	if err != nil {
		return fig, err
	}
	var dispatched time.Duration
	var endSt serverStatus
	// The run's results are counted (a read of every result) only once
	// the engine applied as many device results as there are agents, so
	// the measurement does not load the server it measures.
	err = admin.waitFor(ctx, o.timeout, func(st serverStatus) bool {
		if dispatched == 0 && st.Engine.Dispatched-s2.Engine.Dispatched >= int64(o.agents) {
			dispatched = time.Since(st0)
			fmt.Fprintf(out, "  every start dispatched after %.2f s\n", dispatched.Seconds())
		}
		endSt = st
		return st.Finished >= o.agents
	}, func(st serverStatus) int64 {
		if st.Engine.ResultsApplied-s2.Engine.ResultsApplied >= int64(o.agents) {
			return run1
		}
		return 0
	})
	if err != nil {
		diagnose(sims, out, "the start timed out", true)
		return fig, fmt.Errorf("run %d: %w", run1, err)
	}
	fig.Start = Start{Run: run1, AllRecordedSeconds: time.Since(st0).Seconds(), AllDispatchedSeconds: dispatched.Seconds(),
		TakenOver: endSt.Engine.TakenOver - s2.Engine.TakenOver, Fenced: endSt.Engine.Fenced - s2.Engine.Fenced,
		Reclaimed: endSt.Engine.Reclaimed - s2.Engine.Reclaimed, Resent: endSt.Engine.Resent - s2.Engine.Resent, Store: map[string]StoreCalls{}}
	storeEnd, err := admin.storeCalls(ctx)
	if err != nil {
		return fig, err
	}
	for op, c := range storeEnd {
		b := storeBase[op]
		if d := (StoreCalls{Calls: c.Calls - b.Calls, Seconds: c.Seconds - b.Seconds}); d.Calls > 0 {
			fig.Start.Store[op] = d
		}
	}
	reps, err := reports(sims, run1)
	if err != nil {
		return fig, err
	}
	var lat []int64 // ms from the Start call to each device's receipt
	for _, r := range reps {
		for _, at := range r.ReceivedAtMs {
			lat = append(lat, at-st0.UnixMilli())
		}
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		fig.Start.P50Ms, fig.Start.P99Ms, fig.Start.MaxMs = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
		fig.Start.AllReceivedSeconds = float64(lat[len(lat)-1]) / 1000
	}
	fig.Start.Received = len(lat)
	fmt.Fprintf(out, "start: run %d dispatched to all after %.2f s, received by all %d agents after %.2f s (p50 %d ms, p99 %d ms), every result recorded after %.2f s; %d taken over, %d reclaimed, %d fenced, %d resent\n",
		run1, fig.Start.AllDispatchedSeconds, fig.Start.Received, fig.Start.AllReceivedSeconds, fig.Start.P50Ms, fig.Start.P99Ms, fig.Start.AllRecordedSeconds,
		fig.Start.TakenOver, fig.Start.Reclaimed, fig.Start.Fenced, fig.Start.Resent)
	ops := slices.Sorted(maps.Keys(fig.Start.Store))
	for _, op := range ops {
		c := fig.Start.Store[op]
		fmt.Fprintf(out, "  store during the start: %s %d calls, %.2f s\n", op, c.Calls, c.Seconds)
	}

	// 3. A start, a SIGKILL of the server, a restart.
	time.Sleep(1100 * time.Millisecond) // a new run id (they derive from time)
	run2, err := admin.start(ctx)
	if err != nil {
		return fig, err
	}
	time.Sleep(300 * time.Millisecond)
	srv.stop(syscall.SIGKILL)
	fmt.Fprintf(out, "restart: started run %d, killed the server (SIGKILL) 300 ms later\n", run2)
	srv, _, err = startServer(addr, adminAddr)
	if err != nil {
		return fig, err
	}
	r0 := time.Now()
	if err := admin.waitFor(ctx, o.timeout, func(st serverStatus) bool { return st.Channel.Connected >= int64(o.agents) }); err != nil {
		diagnose(sims, out, "reconnecting timed out", true)
		return fig, fmt.Errorf("reconnect: %w", err)
	}
	fig.Restart = Restart{Run: run2, ReconnectSeconds: time.Since(r0).Seconds()}
	if err := admin.waitFor(ctx, o.timeout, func(st serverStatus) bool { return st.Finished >= o.agents }, func(serverStatus) int64 { return run2 }); err != nil {
		diagnose(sims, out, "the run after the restart timed out", true)
		return fig, fmt.Errorf("run %d after the restart: %w", run2, err)
	}
	fig.Restart.RecordedSeconds = time.Since(r0).Seconds()
	last, err := admin.status(ctx, run2)
	if err != nil {
		return fig, err
	}
	fig.Restart.Lost = o.agents - last.Finished
	if reps, err = reports(sims, run2); err != nil {
		return fig, err
	}
	fig.Restart.Executions = map[int64]int{}
	for _, r := range reps {
		for k, v := range r.Executions {
			fig.Restart.Executions[k] += v
		}
		fig.Restart.Redelivered += r.Redelivered
	}
	fmt.Fprintf(out, "restart: every agent reconnected %.1f s after the restart, run %d recorded on all after %.1f s; executions %v, %d starts redelivered (not run again), %d lost\n",
		fig.Restart.ReconnectSeconds, run2, fig.Restart.RecordedSeconds, fig.Restart.Executions, fig.Restart.Redelivered, fig.Restart.Lost)
	fig.Failures, fig.NeverConnected = printFailures(out, "whole test", reps, false)
	if o.json != "" {
		b, _ := json.MarshalIndent(fig, "", "  ")
		if err := os.WriteFile(o.json, b, 0o644); err != nil {
			return fig, err
		}
	}
	if err := fig.check(); err != nil {
		return fig, err
	}
	fmt.Fprintln(out, "OK: every agent ran each run exactly once and every result was recorded")
	return fig, nil
}

// check returns an error when a run was lost or executed other than once
// per agent.
func (f Figures) check() error {
	var errs []error
	if f.Start.Received != f.Agents {
		errs = append(errs, fmt.Errorf("run %d received by %d agents, want %d", f.Start.Run, f.Start.Received, f.Agents))
	}
	for run, n := range f.Restart.Executions {
		if (run != f.Start.Run && run != f.Restart.Run) || n != f.Agents {
			errs = append(errs, fmt.Errorf("run %d executed %d times, want %d (runs %d and %d only)", run, n, f.Agents, f.Start.Run, f.Restart.Run))
		}
	}
	if len(f.Restart.Executions) != 2 {
		errs = append(errs, fmt.Errorf("executions %v, want runs %d and %d", f.Restart.Executions, f.Start.Run, f.Restart.Run))
	}
	if f.Restart.Lost != 0 {
		errs = append(errs, fmt.Errorf("%d results of run %d lost", f.Restart.Lost, f.Restart.Run))
	}
	return errors.Join(errs...)
}

// diagnose asks the simulators which agents are not getting through, and
// why, and prints it (title: the phase; failing: list the agents failing
// now by name too, not only the never connected).
func diagnose(sims []*child, out io.Writer, title string, failing bool) {
	reps, err := reports(sims, 0)
	if err != nil {
		fmt.Fprintf(out, "%s: no report from the simulators: %v\n", title, err)
		return
	}
	printFailures(out, title, reps, failing)
}

// printFailures prints the agents' failures by kind, and the agents that
// never connected or (with listFailing) are failing now, up to maxStuck by
// name with their last error, and returns the failures and the number of
// agents never connected.
func printFailures(out io.Writer, title string, reps []simReport, listFailing bool) (map[string]int64, int) {
	total := map[string]int64{}
	never, failing := 0, 0
	var stuck []stuckAgent
	for _, r := range reps {
		for k, v := range r.Failures {
			total[k] += v
		}
		never += r.NeverConnected
		failing += r.Failing
		for _, a := range r.Stuck {
			if listFailing || a.LastContact.IsZero() {
				stuck = append(stuck, a)
			}
		}
	}
	slices.SortStableFunc(stuck, func(a, b stuckAgent) int { return a.LastContact.Compare(b.LastContact) })
	fmt.Fprintf(out, "%s: agents' failures by kind: %s; %d agents never connected, %d failing now\n", title, formatCounts(total), never, failing)
	for _, a := range stuck[:min(len(stuck), maxStuck)] {
		contact := "never"
		if !a.LastContact.IsZero() {
			contact = a.LastContact.UTC().Format(time.TimeOnly)
		}
		fmt.Fprintf(out, "  %s: key %v, last accepted request %s, %d failures (%d in a row), last: %s at %s\n",
			a.Device, a.HasKey, contact, a.Failures, a.Consecutive, a.LastError, a.LastErrorAt.UTC().Format(time.TimeOnly))
	}
	return total, never
}

// formatCounts lists counts by kind, the largest first.
func formatCounts(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b string) int {
		if m[a] != m[b] {
			if m[a] > m[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func reports(sims []*child, run int64) ([]simReport, error) {
	re := regexp.MustCompile(`^REPORT (.*)$`)
	var out []simReport
	for _, s := range sims {
		if _, err := fmt.Fprintf(s.stdin, "report %d\n", run); err != nil {
			return nil, err
		}
		m, err := s.expect(re, time.Minute)
		if err != nil {
			return nil, err
		}
		var r simReport
		if err := json.Unmarshal([]byte(m[1]), &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

type adminClient struct {
	base     string
	progress io.Writer // progress lines while waiting (nil: none)
}

func (a *adminClient) status(ctx context.Context, run int64) (serverStatus, error) {
	var st serverStatus
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/status?run="+strconv.FormatInt(run, 10), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return st, fmt.Errorf("status: %s %s", resp.Status, b)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// storeCalls returns the engine's store calls so far, by operation.
func (a *adminClient) storeCalls(ctx context.Context) (map[string]StoreCalls, error) {
	var st serverStatus
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/status?store=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status: %s", resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st.Store, err
}

// profile writes a CPU profile of the server over d to file.
func (a *adminClient) profile(ctx context.Context, file string, d time.Duration) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", a.base, int(d.Seconds())), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(a.progress, "profile:", err)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(file, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(a.progress, "profile:", err)
	}
}

func (a *adminClient) start(ctx context.Context) (int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/start", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var v struct {
		Run int64 `json:"run"`
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("start: %s %s", resp.Status, b)
	}
	err = json.NewDecoder(resp.Body).Decode(&v)
	return v.Run, err
}

// waitFor polls the status until ok, for at most d; run (if given)
// chooses from the last status which run's results to count (0: none).
func (a *adminClient) waitFor(ctx context.Context, d time.Duration, ok func(serverStatus) bool, run ...func(serverStatus) int64) error {
	deadline := time.Now().Add(d)
	var last serverStatus
	lastLog := time.Now()
	for time.Now().Before(deadline) {
		var r int64
		if len(run) > 0 {
			r = run[0](last)
		}
		st, err := a.status(ctx, r)
		if err == nil {
			if ok(st) {
				return nil
			}
			last = st
		}
		if a.progress != nil && time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			fmt.Fprintf(a.progress, "  … finished %d/%d, %d polls held, %d connected, %d messages received, engine %+v\n", last.Finished, last.Total, last.Channel.Polling, last.Channel.Connected, last.Channel.Received, last.Engine)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out; last status: finished %d/%d, %d polls held, %d connected", last.Finished, last.Total, last.Channel.Polling, last.Channel.Connected)
}

// allIn: every agent is connected and, with long polls, (almost) every
// one holds a poll (a poll answered with a message is renewed a moment
// later).
func allIn(st serverStatus, o options) bool {
	return st.Channel.Connected >= int64(o.agents) && (o.checkIn > 0 || st.Channel.Polling >= int64(o.agents)*99/100)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// writePKI writes a throwaway CA and the server's certificate into dir.
func writePKI(dir string) error {
	ca, err := testpki.New(time.Now())
	if err != nil {
		return err
	}
	cert, key, err := ca.ServerPEM(time.Now())
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"ca.pem": ca.CertPEM, "server.pem": cert, "server.key": key} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
