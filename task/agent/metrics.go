package agent

import (
	"context"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// ScopeName is the instrumentation scope of the agent's OpenTelemetry
// meter.
const ScopeName = "github.com/taskfleet/taskfleet/task/agent"

// Metric names (OpenTelemetry semantic-convention style).
const (
	// MetricOutboxDepth is the number of messages waiting in the outbox
	// for the server's acknowledgement (gauge), unit {message}.
	MetricOutboxDepth = "taskfleet.agent.outbox.depth"
	// MetricRunsStarted counts runs handed to the Executor, unit {run}.
	MetricRunsStarted = "taskfleet.agent.runs.started"
	// MetricResultsQueued counts results put into the outbox, unit
	// {result}.
	MetricResultsQueued = "taskfleet.agent.results.queued"
)

// metrics are the agent's instruments (no-op with a nil MeterProvider).
type metrics struct {
	started metric.Int64Counter
	queued  metric.Int64Counter
}

func newMetrics(mp metric.MeterProvider, store Store) *metrics {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter(ScopeName)
	nop := noop.Meter{}
	met := &metrics{}
	var err error
	if met.started, err = m.Int64Counter(MetricRunsStarted, metric.WithUnit("{run}"), metric.WithDescription("Runs handed to the executor.")); err != nil {
		met.started, _ = nop.Int64Counter(MetricRunsStarted)
	}
	if met.queued, err = m.Int64Counter(MetricResultsQueued, metric.WithUnit("{result}"), metric.WithDescription("Results put into the outbox.")); err != nil {
		met.queued, _ = nop.Int64Counter(MetricResultsQueued)
	}
	// The outbox depth is read from the store (safe for concurrent use)
	// at each collection; an unreadable store observes nothing.
	_, _ = m.Int64ObservableGauge(MetricOutboxDepth, metric.WithUnit("{message}"),
		metric.WithDescription("Messages waiting in the outbox for acknowledgement."),
		metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			ms, err := store.Outbox(ctx)
			if err != nil {
				return err
			}
			o.Observe(int64(len(ms)))
			return nil
		}))
	return met
}
