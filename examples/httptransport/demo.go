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
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport/httptransport/testpki"
)

// childEnv marks a process the demo started; tests use it to run the
// test binary as the example (see TestMain).
const childEnv = "TASKFLEET_HTTPTRANSPORT_CHILD"

// demo runs the scenario of the package documentation.
func demo(ctx context.Context, o options, out io.Writer) (err error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "taskfleet-httptransport-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	d := &demoRun{out: out, self: self, dir: dir, opts: o, procs: map[string]*child{},
		starts: map[string]int{}, dones: map[string]int{}, listen: make(chan [2]string, 1), outbox: map[string]int{}}
	defer d.stopAll()

	if d.secret, err = newSecret(); err != nil {
		return err
	}
	if err := writePKI(dir); err != nil {
		return err
	}
	d.say("demo: server and %d agents as separate processes on 127.0.0.1, databases in %s", o.agents, dir)
	if err := d.spawn("server", "-mode", "server", "-addr", "127.0.0.1:0", "-db", filepath.Join(dir, "server.db"), "-devices", strconv.Itoa(o.agents), "-pki", dir); err != nil {
		return err
	}
	select {
	case l := <-d.listen:
		d.channel, d.base = l[0], l[1]
	case <-ctx.Done():
		return fmt.Errorf("the server did not start: %w", ctx.Err())
	}
	var devices []string
	for i := 1; i <= o.agents; i++ {
		dev := fmt.Sprintf("dev-%d", i)
		devices = append(devices, dev)
		if err := d.startAgent(dev); err != nil {
			return err
		}
	}
	if _, err := d.waitFor(ctx, "every agent polls", func(s status) bool { return len(s.Connected) == o.agents }); err != nil {
		return err
	}

	// 1. A manual start: every device runs it once.
	run1, err := d.start(ctx)
	if err != nil {
		return err
	}
	if _, err := d.waitFor(ctx, "run 1 results", finalFor(run1, devices)); err != nil {
		return err
	}
	d.say("step 1: run %d finished on every device", run1)

	// 2. The server refuses results; a device with a result in its
	// outbox is killed and restarted; the result arrives from its outbox.
	if err := d.post(ctx, "/admin/refuse?on=true"); err != nil {
		return err
	}
	run2, err := d.start(ctx)
	if err != nil {
		return err
	}
	if err := d.waitLines(ctx, "every device finished run 2", func() bool {
		for _, dev := range devices {
			if d.dones[key(dev, run2)] == 0 {
				return false
			}
		}
		return true
	}); err != nil {
		_, serr := d.waitFor(context.Background(), "the state", func(status) bool { return true })
		return errors.Join(err, serr)
	}
	if _, err := d.waitFor(ctx, "refused results of run 2", func(s status) bool { return s.Hub.Refused >= int64(o.agents) }); err != nil {
		return err
	}
	victim := devices[0]
	d.say("step 2: results refused (server outage); killing %s with reports of run %d in its outbox (if it dies before its end is queued, it reports the run failed)", victim, run2)
	if err := d.kill(victim); err != nil {
		return err
	}
	if err := d.startAgent(victim); err != nil {
		return err
	}
	if err := d.waitLines(ctx, victim+" restarted", func() bool { _, ok := d.outbox[victim]; return ok }); err != nil {
		return err
	}
	d.mu.Lock()
	queued := d.outbox[victim]
	d.mu.Unlock()
	if queued == 0 {
		return fmt.Errorf("%s restarted with an empty outbox: its result of run %d was lost", victim, run2)
	}
	if err := d.post(ctx, "/admin/refuse?on=false"); err != nil {
		return err
	}
	if _, err := d.waitFor(ctx, "run 2 results", finalFor(run2, devices)); err != nil {
		return err
	}
	d.say("step 2: %s came back with %d messages in its outbox; run %d is recorded on every device", victim, queued, run2)

	// 3. A device is killed in the middle of a run: the restarted agent
	// reports the run failed and does not run it again.
	victim = devices[1]
	run3, err := d.start(ctx)
	if err != nil {
		return err
	}
	if err := d.waitLines(ctx, victim+" starts run 3", func() bool { return d.starts[key(victim, run3)] > 0 }); err != nil {
		return err
	}
	if err := d.kill(victim); err != nil {
		return err
	}
	d.mu.Lock()
	finishedBeforeKill := d.dones[key(victim, run3)] > 0
	d.mu.Unlock()
	d.say("step 3: killed %s in the middle of run %d", victim, run3)
	if err := d.startAgent(victim); err != nil {
		return err
	}
	final, err := d.waitFor(ctx, "run 3 results", finalFor(run3, devices))
	if err != nil {
		return err
	}

	// The checks: every (device, run) executed once and recorded once.
	d.mu.Lock()
	defer d.mu.Unlock()
	var problems []string
	events := map[string]int{}
	for _, e := range final.Events {
		if e.DeviceID != "" && e.RunID != 0 {
			events[key(string(e.DeviceID), e.RunID)]++
		}
	}
	for _, run := range []int64{run1, run2, run3} {
		for _, dev := range devices {
			k := key(dev, run)
			if n := d.starts[k]; n != 1 {
				problems = append(problems, fmt.Sprintf("%s executed run %d %d times", dev, run, n))
			}
			if n := events[k]; n != 1 {
				problems = append(problems, fmt.Sprintf("%s has %d final results of run %d in the history", dev, n, run))
			}
		}
	}
	for _, r := range final.Results {
		want := task.Completed
		if string(r.DeviceID) == victim && !finishedBeforeKill {
			want = task.Failed
		}
		if r.RunID != run3 || r.State != want {
			problems = append(problems, fmt.Sprintf("%s: run %d %s, want run %d %s", r.DeviceID, r.RunID, r.State, run3, want))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("exactly once violated:\n  %s", strings.Join(problems, "\n  "))
	}
	fmt.Fprintf(out, "OK: 3 runs on %d devices, each executed once and recorded once; the server received %d results messages (%d refused during the outage and sent again from the outboxes), %d messages sent to devices\n",
		len(devices), final.Hub.Results, final.Hub.Refused, final.Hub.Sent)
	for _, r := range final.Results {
		fmt.Fprintf(out, "  %-6s run %d %-10s %s\n", r.DeviceID, r.RunID, r.State, r.Message)
	}
	return nil
}

// newSecret returns a random enrollment secret.
func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// writePKI writes a throwaway CA (ca.pem) and the server's certificate
// for 127.0.0.1 (server.pem, server.key) into dir.
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

func key(dev string, run int64) string { return dev + " " + strconv.FormatInt(run, 10) }

// finalFor is true when every device has a final result of run.
func finalFor(run int64, devices []string) func(status) bool {
	return func(s status) bool {
		done := map[scope.DeviceID]bool{}
		for _, r := range s.Results {
			if r.RunID == run && r.State.Final() {
				done[r.DeviceID] = true
			}
		}
		return len(done) == len(devices)
	}
}

// child is a process the demo started; done is closed when it exited.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

type demoRun struct {
	out     io.Writer
	self    string
	dir     string
	opts    options
	base    string // the admin API
	channel string // the device channel (https)
	listen  chan [2]string

	mu     sync.Mutex
	procs  map[string]*child
	waits  sync.WaitGroup
	starts map[string]int // EXEC start lines per "device run"
	dones  map[string]int
	outbox map[string]int // outbox length an agent reported at its start
	secret string         // the enrollment secret; agents enroll with it
}

func (d *demoRun) say(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, format+"\n", args...)
}

func (d *demoRun) startAgent(dev string) error {
	return d.spawn(dev, "-mode", "agent", "-server", d.channel, "-device", dev, "-db", filepath.Join(d.dir, dev+".db"),
		"-run-time", d.opts.runTime.String(), "-pki", d.dir)
}

// spawn starts this program again as a child process and reads its
// output.
func (d *demoRun) spawn(name string, args ...string) error {
	cmd := exec.Command(d.self, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1", secretEnv+"="+d.secret)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	d.mu.Lock()
	d.procs[name] = c
	d.mu.Unlock()
	d.waits.Add(1)
	go func() {
		defer d.waits.Done()
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.line(name, sc.Text())
		}
		_ = cmd.Wait()
	}()
	return nil
}

// line takes one output line of a child.
func (d *demoRun) line(name, text string) {
	f := strings.Fields(text)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case len(f) == 4 && f[0] == "LISTEN" && f[2] == "ADMIN":
		select {
		case d.listen <- [2]string{f[1], f[3]}:
		default:
		}
	case len(f) == 5 && f[0] == "EXEC":
		run, _ := strconv.ParseInt(f[4], 10, 64)
		if f[1] == "start" {
			d.starts[key(f[2], run)]++
		} else {
			d.dones[key(f[2], run)]++
		}
	case len(f) >= 5 && f[0] == "AGENT":
		n, _ := strconv.Atoi(f[3])
		d.outbox[f[1]] = n
	}
	fmt.Fprintf(d.out, "  [%s] %s\n", name, text)
}

// kill ends a child with SIGKILL (no chance to clean up) and waits for it.
func (d *demoRun) kill(name string) error {
	d.mu.Lock()
	c := d.procs[name]
	delete(d.procs, name)
	delete(d.outbox, name) // the restarted agent reports its own
	d.mu.Unlock()
	if c == nil {
		return fmt.Errorf("no process %s", name)
	}
	if err := c.cmd.Process.Kill(); err != nil {
		return err
	}
	<-c.done
	return nil
}

// stopAll asks every child to stop (SIGTERM), kills those still running
// after three seconds, and waits for them.
func (d *demoRun) stopAll() {
	d.mu.Lock()
	procs := d.procs
	d.procs = map[string]*child{}
	d.mu.Unlock()
	for _, c := range procs {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() { d.waits.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		for _, c := range procs {
			_ = c.cmd.Process.Kill()
		}
		<-done
	}
}

func (d *demoRun) post(ctx context.Context, path string) error {
	_, err := d.request(ctx, http.MethodPost, path)
	return err
}

func (d *demoRun) start(ctx context.Context) (int64, error) {
	body, err := d.request(ctx, http.MethodPost, "/admin/start")
	if err != nil {
		return 0, err
	}
	var r struct {
		RunID int64 `json:"run_id"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, err
	}
	return r.RunID, nil
}

func (d *demoRun) request(ctx context.Context, method, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// waitFor polls the server's status until ok holds.
func (d *demoRun) waitFor(ctx context.Context, what string, ok func(status) bool) (status, error) {
	var last status
	for {
		body, err := d.request(ctx, http.MethodGet, "/admin/status")
		if err == nil {
			var s status
			if err := json.Unmarshal(body, &s); err != nil {
				return s, err
			}
			if ok(s) {
				return s, nil
			}
			last = s
		}
		select {
		case <-ctx.Done():
			var states []string
			for _, r := range last.Results {
				states = append(states, fmt.Sprintf("%s run %d %s", r.DeviceID, r.RunID, r.State))
			}
			return status{}, fmt.Errorf("waiting for %s (results: %s): %w", what, strings.Join(states, "; "), errors.Join(ctx.Err(), err))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitLines waits until ok, evaluated with d.mu held, holds.
func (d *demoRun) waitLines(ctx context.Context, what string, ok func() bool) error {
	for {
		d.mu.Lock()
		done := ok()
		d.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
