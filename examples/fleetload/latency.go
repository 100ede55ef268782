package main

// The steady-state latency of a start (issue #16: "p50/p99 latency from
// Start to the device receiving it"): with every agent connected (with
// long polls: every agent holding a poll), the coordinator starts
// single-device tasks one after the other at a bounded rate and each
// probed device's simulator records when the start arrived. The fan-out
// (one start on every device) is the Start figure.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

const (
	// maxProbes bounds -probes.
	maxProbes = 1000
	// probeInterval is the pace of the probes' starts (10 a second).
	probeInterval = 100 * time.Millisecond
	// probeWait bounds the wait for the probes' receipts after the last
	// start.
	probeWait = time.Minute
)

// Probe is the steady-state latency: single-device starts, one every
// probeInterval, on devices spread over the simulators, while nothing
// else is started.
type Probe struct {
	// Starts is how many were started, Received how many reached their
	// device within probeWait of the last start.
	Starts   int `json:"starts"`
	Received int `json:"received"`
	// P50Ms, P99Ms and MaxMs: from the coordinator's Start call (the
	// admin API's POST) to the device's receipt of the StartRun.
	P50Ms int64 `json:"p50_ms"`
	P99Ms int64 `json:"p99_ms"`
	MaxMs int64 `json:"max_ms"`
	// StartP50Ms and StartP99Ms: how long the Start call itself took
	// (the run stored, the engine told), part of the above.
	StartP50Ms int64 `json:"start_p50_ms"`
	StartP99Ms int64 `json:"start_p99_ms"`
}

// probeTask is a probe's task and its one device.
type probeTask struct {
	Task   string         `json:"task"`
	Device scope.DeviceID `json:"device"`
}

// probeHandlers adds the probes' admin API to the server: POST
// /probe/tasks?n=N creates (or finds) N single-device manual tasks on
// devices spread over the agents; POST /probe/start?task=ID starts one.
func probeHandlers(admin *http.ServeMux, m *task.Manager, agents int, now func() time.Time) {
	var mu sync.Mutex
	admin.HandleFunc("POST /probe/tasks", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 1 || n > min(maxProbes, agents) {
			http.Error(w, fmt.Sprintf("n: 1 to %d", min(maxProbes, agents)), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		have := map[string]string{} // name → task id
		list, err := m.List(r.Context(), task.System, task.ListParams{NameContains: "Latency probe "})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for _, app := range list.Applications {
			for _, t := range app.Tasks {
				have[t.Name] = t.ID
			}
		}
		out := make([]probeTask, 0, n)
		for i := range n {
			dev := deviceID(1 + i*agents/n)
			name := fmt.Sprintf("Latency probe %s", dev)
			id, ok := have[name]
			if !ok {
				t, err := m.Create(r.Context(), task.System, task.Task{Name: name, Application: appES, Type: "virus_scan",
					Scope: scope.Scope{Kind: scope.Devices, Devices: []scope.DeviceID{dev}}, Schedule: schedule.Default(schedule.Manual, now(), time.UTC)})
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				id = t.ID
			}
			out = append(out, probeTask{Task: id, Device: dev})
		}
		writeJSON(w, out)
	})
	admin.HandleFunc("POST /probe/start", func(w http.ResponseWriter, r *http.Request) {
		run, err := m.Start(r.Context(), task.Actor{ID: "admin"}, r.URL.Query().Get("task"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"run": run.ID})
	})
}

// measureProbes runs o.probes single-device starts and collects their
// latencies from the simulators.
func measureProbes(ctx context.Context, o options, admin *adminClient, sims []*child, out io.Writer) (Probe, error) {
	var p Probe
	n := min(o.probes, o.agents)
	if n == 0 {
		return p, nil
	}
	var tasks []probeTask
	if err := admin.post(ctx, "/probe/tasks?n="+strconv.Itoa(n), &tasks); err != nil {
		return p, err
	}
	for _, s := range sims {
		for _, t := range tasks {
			if _, err := fmt.Fprintf(s.stdin, "probe %s\n", t.Task); err != nil {
				return p, err
			}
		}
	}
	// The new tasks' definitions go out to their devices first; the
	// starts come after that traffic.
	select {
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
		return p, ctx.Err()
	}
	started := map[string]time.Time{} // task/run → before the Start call
	var calls []int64                 // ms per Start call
	tk := time.NewTicker(probeInterval)
	defer tk.Stop()
	for _, t := range tasks {
		t0 := time.Now()
		var v struct {
			Run int64 `json:"run"`
		}
		if err := admin.post(ctx, "/probe/start?task="+url.QueryEscape(t.Task), &v); err != nil {
			return p, err
		}
		calls = append(calls, time.Since(t0).Milliseconds())
		started[t.Task+"/"+strconv.FormatInt(v.Run, 10)] = t0
		select {
		case <-tk.C:
		case <-ctx.Done():
			return p, ctx.Err()
		}
	}
	p.Starts = len(started)
	var lat []int64
	deadline := time.Now().Add(probeWait)
	for {
		got := map[string]int64{}
		for _, s := range sims {
			r, err := probeReport(s)
			if err != nil {
				return p, err
			}
			for k, at := range r {
				got[k] = at
			}
		}
		lat = lat[:0]
		for k, t0 := range started {
			if at, ok := got[k]; ok {
				lat = append(lat, at-t0.UnixMilli())
			}
		}
		if len(lat) == len(started) || time.Now().After(deadline) {
			break
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return p, ctx.Err()
		}
	}
	p.Received = len(lat)
	p.P50Ms, p.P99Ms, p.MaxMs = percentiles(lat)
	p.StartP50Ms, p.StartP99Ms, _ = percentiles(calls)
	fmt.Fprintf(out, "probes: %d single-device starts, one every %s: %d received, Start→receipt p50 %d ms, p99 %d ms, max %d ms (the Start call: p50 %d ms, p99 %d ms)\n",
		p.Starts, probeInterval, p.Received, p.P50Ms, p.P99Ms, p.MaxMs, p.StartP50Ms, p.StartP99Ms)
	return p, nil
}

// percentiles returns the p50, p99 and max of v (sorted in place).
func percentiles(v []int64) (p50, p99, max int64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	slices.Sort(v)
	return v[len(v)/2], v[len(v)*99/100], v[len(v)-1]
}

var probesRE = regexp.MustCompile(`^PROBES (.*)$`)

// probeReport asks a simulator when its agents received the probes'
// starts: task/run → Unix ms.
func probeReport(s *child) (map[string]int64, error) {
	if _, err := fmt.Fprintln(s.stdin, "probes"); err != nil {
		return nil, err
	}
	m, err := s.expect(probesRE, time.Minute)
	if err != nil {
		return nil, err
	}
	var r map[string]int64
	return r, json.Unmarshal([]byte(m[1]), &r)
}

func (a *adminClient) post(ctx context.Context, path string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.base+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s %s", path, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// probeLog is a simulator's record of the probes: the tasks it was told
// of, and when their starts first reached its agents.
type probeLog struct {
	mu    sync.Mutex
	tasks map[string]bool
	at    map[string]int64 // task/run → Unix ms
}

// command handles the simulator's stdin lines "probe TASK" and "probes"
// (answered with a PROBES line); it reports whether the line was one.
func (l *probeLog) command(f []string, out io.Writer) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case len(f) == 2 && f[0] == "probe":
		if l.tasks == nil {
			l.tasks, l.at = map[string]bool{}, map[string]int64{}
		}
		if len(l.tasks) < maxProbes {
			l.tasks[f[1]] = true
		}
	case len(f) == 1 && f[0] == "probes":
		b, _ := json.Marshal(l.at)
		fmt.Fprintf(out, "PROBES %s\n", b)
	default:
		return false
	}
	return true
}

// received notes the first receipt of a start of a probe task and
// reports whether the task is one.
func (l *probeLog) received(taskID string, run int64, at time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.tasks[taskID] {
		return false
	}
	if k := taskID + "/" + strconv.FormatInt(run, 10); l.at[k] == 0 {
		l.at[k] = at.UnixMilli()
	}
	return true
}
