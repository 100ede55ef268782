package agent_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/rs/zerolog"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

type quietServer struct{}

func (quietServer) Send(context.Context, transport.Message) error { return nil }

// The agent's instruments move: a manual start runs (runs started),
// reports running and completed (results queued), and the outbox holds
// both until the server acknowledges; its log says what happened.
func TestAgentMetricsAndLogs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	reader := sdkmetric.NewManualReader()
	var logs bytes.Buffer
	a, err := agent.New(ctx, agent.Config{Device: "pc-1", Store: agent.NewMemStore(), Executor: doneExec{}, Clock: clk,
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), Logger: zerolog.New(&logs).Level(zerolog.DebugLevel)})
	if err != nil {
		t.Fatal(err)
	}
	a.Attach(quietServer{})
	def := &transport.Definition{Task: transport.TaskSpec{ID: "scan", Application: "ES", Type: "scan", Scope: transport.ScopeSpec{Kind: "group"}, Revision: 1, SettingsRevision: 1}, Since: clk.Now()}
	a.Handle(ctx, transport.Message{Kind: transport.Deliver, Definition: def})
	a.Handle(ctx, transport.Message{Kind: transport.StartRun, Start: &transport.Start{TaskID: "scan", RunID: transport.RunID(clk.Now(), transport.Manual), At: clk.Now(), Due: clk.Now(), Manual: true}})
	for range 3 {
		clk.Add(time.Minute)
		if err := a.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] += p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] += p.Value
				}
			}
		}
	}
	want := map[string]int64{agent.MetricRunsStarted: 1, agent.MetricResultsQueued: 2, agent.MetricOutboxDepth: 2}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s = %d, want %d (all: %v)", name, got[name], n, got)
		}
	}
	for _, line := range []string{`"message":"agent: attached to the transport"`, `"message":"agent: task delivered"`, `"message":"agent: run started"`, `"state":"completed","message":"agent: run ended"`} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("log lacks %s:\n%s", line, logs.String())
		}
	}
}

// doneExec completes every run at once.
type doneExec struct{}

func (doneExec) AppRunning(context.Context, string) bool { return true }
func (doneExec) Start(_ context.Context, _ agent.Run, done func(agent.Outcome)) error {
	done(agent.Outcome{State: transport.StateCompleted})
	return nil
}
func (doneExec) Stop(context.Context, string, int64) error { return nil }
