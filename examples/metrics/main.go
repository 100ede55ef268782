// Command metrics shows taskfleet's OpenTelemetry metrics in Prometheus:
// the hello world's server and three devices, wired to an OpenTelemetry
// SDK MeterProvider whose reader is the Prometheus exporter, one
// simulated day, then the taskfleet series the exporter gathered. A host
// serves the same registry on /metrics (promhttp.HandlerFor). The
// library packages use only the OpenTelemetry metric API; the SDK and
// the exporter are this program's choice.
//
//	go run ./examples/metrics
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/inproc"
)

func main() {
	ctx, clk := context.Background(), clock.NewMock()
	clk.Set(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))

	// OpenTelemetry → Prometheus: one registry, one exporter, one provider.
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	must(err)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer func() { _ = mp.Shutdown(ctx) }()
	// Operators read the engine's decisions in its log (warnings and up
	// here; Info shows every run dispatched).
	logger := zerolog.New(os.Stderr).Level(zerolog.WarnLevel)

	store, inv := memstore.New(), inmem.New()
	must(inv.PutGroups(ctx, scope.AdminGroup{ID: "office", Name: "Office"}))
	types := task.NewRegistry()
	must(types.Register(task.TaskType{Application: "Antivirus", Name: "scan"}))
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, MeterProvider: mp, Logger: logger})
	must(err)
	m, err := task.New(task.Config{Store: store, Registry: types, Inventory: inv, Dispatcher: srv, Clock: clk})
	must(err)
	net := inproc.New(inproc.Config{Clock: clk})
	must(srv.Open(ctx, m, net.Server(srv)))
	defer func() { must(srv.Close(ctx)) }()
	var agents []*agent.Agent
	for i := range 3 {
		d := scope.Device{ID: scope.DeviceID(fmt.Sprint("pc-", i)), GroupID: "office", Connected: true,
			Applications: map[string]scope.AppState{"Antivirus": {Installed: true, Running: true}}}
		must(inv.PutDevices(ctx, d))
		a, err := agent.New(ctx, agent.Config{Device: d.ID, Store: agent.NewMemStore(), Executor: scanner{}, Clock: clk, MeterProvider: mp, Logger: logger})
		must(err)
		a.Attach(net.Device(d.ID, a))
		net.Connect(d.ID)
		agents = append(agents, a)
	}
	daily := schedule.Default(schedule.EveryDays, clk.Now(), time.UTC)
	daily.Time = schedule.Clock(9, 0, 0)
	scan, err := m.Create(ctx, task.System, task.Task{Name: "Daily scan", Application: "Antivirus", Type: "scan",
		Schedule: daily, Scope: scope.Scope{Kind: scope.Group, Group: "office"}})
	must(err)
	_, err = m.Start(ctx, task.System, scan.ID) // and once now, by hand: the server dispatches it
	must(err)
	for range 24 * 4 {
		clk.Add(15 * time.Minute)
		must(srv.Tick(ctx))
		for _, a := range agents {
			must(a.Tick(ctx))
		}
		for net.Pump(ctx) > 0 {
		}
	}

	// What Prometheus would scrape: the counters and gauges by value;
	// of the histograms (dispatch lag, store call duration) only whether
	// they observed anything, since their counts follow the engine's
	// internals.
	families, err := reg.Gather()
	must(err)
	var lines []string
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "taskfleet_") {
			continue
		}
		var v float64
		histogram := false
		for _, mt := range f.GetMetric() {
			switch {
			case mt.Counter != nil:
				v += mt.Counter.GetValue()
			case mt.Gauge != nil:
				v += mt.Gauge.GetValue()
			case mt.Histogram != nil:
				histogram = true
				v += float64(mt.Histogram.GetSampleCount())
			}
		}
		if histogram {
			lines = append(lines, fmt.Sprintf("%s observed=%t", f.GetName(), v > 0))
			continue
		}
		lines = append(lines, fmt.Sprintf("%s %g", f.GetName(), v))
	}
	sort.Strings(lines)
	fmt.Println(strings.Join(lines, "\n"))
}

// scanner is the device's security application: every scan completes.
type scanner struct{}

func (scanner) AppRunning(context.Context, string) bool { return true }
func (scanner) Start(_ context.Context, r agent.Run, done func(agent.Outcome)) error {
	done(agent.Outcome{State: transport.StateCompleted})
	return nil
}
func (scanner) Stop(context.Context, string, int64) error { return nil }

func must(err error) {
	if err != nil {
		panic(err)
	}
}
