package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

// observed runs three devices through a manual run with metrics and a
// debug log: every device gets the start, d1 reports completion, d2
// reports a result for a task that does not exist, and d1 and d2 send
// heartbeats.
func observed(t *testing.T) (*sdkmetric.ManualReader, *bytes.Buffer) {
	t.Helper()
	ctx := context.Background()
	inv := inmem.New()
	must(t, inv.PutGroups(ctx, scope.AdminGroup{ID: "g", Name: "g"}))
	for _, d := range []scope.DeviceID{"d1", "d2", "d3"} {
		must(t, inv.PutDevices(ctx, scope.Device{ID: d, GroupID: "g", Connected: true, Applications: map[string]scope.AppState{appES: {Installed: true, Running: true}}}))
	}
	clk := clock.NewMock()
	clk.Set(t0)
	reader := sdkmetric.NewManualReader()
	var logs bytes.Buffer
	store := memstore.New()
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, SingleReplica: true,
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		Logger:        zerolog.New(&logs).Level(zerolog.DebugLevel)})
	must(t, err)
	m, err := task.New(task.Config{Store: store, Registry: registry(t), Inventory: inv, Clock: clk, Dispatcher: srv})
	must(t, err)
	must(t, srv.Open(ctx, m, &recorder{}))
	tk, err := m.Create(ctx, task.System, task.Task{Name: "scan", Application: appES, Type: "virus_scan", Scope: groupScope("g")})
	must(t, err)
	run, err := m.Start(ctx, task.System, tk.ID)
	must(t, err)
	clk.Add(time.Minute)
	must(t, srv.Tick(ctx))
	srv.Handle(ctx, transport.Message{Kind: transport.Heartbeat, Device: "d1"})
	srv.Handle(ctx, transport.Message{Kind: transport.Heartbeat, Device: "d2"})
	srv.Handle(ctx, transport.Message{Kind: transport.Results, Device: "d1", Key: "k1",
		Results: []transport.Result{{TaskID: tk.ID, RunID: run.ID, Seq: 2, State: string(task.Completed), Progress: 100}}})
	srv.Handle(ctx, transport.Message{Kind: transport.Results, Device: "d2", Key: "k2",
		Results: []transport.Result{{TaskID: "no-such-task", RunID: run.ID, Seq: 2, State: string(task.Completed)}}})
	must(t, srv.Tick(ctx))
	return reader, &logs
}

// sums returns every Int64 sum data point and every histogram's count by
// "name" or "name{attr=value}".
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	must(t, r.Collect(context.Background(), &rm))
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			add := func(attrs fmt.Stringer, v int64) {
				out[mt.Name] += v
				if s := attrs.String(); s != "" {
					out[mt.Name+"{"+s+"}"] += v
				}
			}
			switch d := mt.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					add(setString{p.Attributes.Encoded(attribute.DefaultEncoder())}, p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					add(setString{""}, p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					add(setString{p.Attributes.Encoded(attribute.DefaultEncoder())}, int64(p.Count))
				}
			}
		}
	}
	return out
}

type setString struct{ s string }

func (s setString) String() string { return s.s }

// The engine's OpenTelemetry instruments move with what it does.
func TestEngineMetrics(t *testing.T) {
	t.Parallel()
	reader, _ := observed(t)
	got := collect(t, reader)
	for name, want := range map[string]int64{
		engine.MetricRunsDispatched + "{taskfleet.dispatch.resend=false}":       3,
		engine.MetricResultsRecorded:                                            1,
		engine.MetricResultsRejected + "{taskfleet.reject.reason=unknown_task}": 1,
		engine.MetricDispatchLag:                                                3,
		engine.MetricDevicesConnected:                                           2,
	} {
		if got[name] != want {
			t.Errorf("%s = %d, want %d", name, got[name], want)
		}
	}
	if got[engine.MetricStoreDuration+"{db.operation.name=RecordResults}"] == 0 {
		t.Errorf("no store duration recorded for RecordResults; got %v", got)
	}
}

// The engine's log tells an operator what happened: opened, the run
// dispatched to how many devices, the rejected item and why.
func TestEngineLogsDecisions(t *testing.T) {
	t.Parallel()
	_, logs := observed(t)
	for _, want := range []string{
		`"tasks":0,"recovered_starts":0,"undecodable":0,"message":"engine: server opened"`,
		`"devices":3,"waiting_for_device":0,"missed":0,"message":"engine: run dispatched"`,
		`"reason":"unknown_task"`,
		`"message":"engine: device items rejected"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}
