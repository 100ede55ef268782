package engine

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// ScopeName is the instrumentation scope of the engine's OpenTelemetry
// meter.
const ScopeName = "github.com/taskfleet/taskfleet/task/engine"

// Metric names (OpenTelemetry semantic-convention style: a dotted
// namespace, units in UCUM, counts in curly-brace annotations).
const (
	// MetricRunsDispatched counts starts sent to devices (first sends
	// and resends; attribute taskfleet.dispatch.resend), unit {start}.
	MetricRunsDispatched = "taskfleet.engine.runs.dispatched"
	// MetricRunsFired counts activations of server-run tasks that
	// started a run (attribute taskfleet.run.kind), unit {run}.
	MetricRunsFired = "taskfleet.engine.runs.fired"
	// MetricResultsRecorded counts device results written to the store,
	// unit {result}.
	MetricResultsRecorded = "taskfleet.engine.results.recorded"
	// MetricResultsRejected counts items of device messages the intake
	// dropped, by reason (attribute taskfleet.reject.reason, a
	// RejectReason), unit {item}.
	MetricResultsRejected = "taskfleet.engine.results.rejected"
	// MetricDispatchLag is how late a start was first sent after it was
	// due, in seconds (histogram).
	MetricDispatchLag = "taskfleet.engine.dispatch.lag"
	// MetricDevicesConnected is the number of devices heard from within
	// VisibilityTimeout (gauge), unit {device}.
	MetricDevicesConnected = "taskfleet.engine.devices.connected"
	// MetricClaimTakeovers counts dispatched starts this replica took
	// over from a replica whose lease expired, unit {start}.
	MetricClaimTakeovers = "taskfleet.engine.claim.takeovers"
	// MetricStoreDuration is the duration of the engine's store calls,
	// in seconds, by operation (attribute db.operation.name; histogram).
	// It is measured on Config.Clock.
	MetricStoreDuration = "taskfleet.engine.store.duration"
	// MetricTasksUndecodable counts tasks skipped because their stored
	// settings cannot be decoded, unit {task}.
	MetricTasksUndecodable = "taskfleet.engine.tasks.undecodable"
)

// metrics are the engine's instruments; with a nil MeterProvider they
// come from the no-op provider and cost a function call each.
type metrics struct {
	dispatched  metric.Int64Counter
	fired       metric.Int64Counter
	recorded    metric.Int64Counter
	rejected    metric.Int64Counter
	lag         metric.Float64Histogram
	connected   metric.Int64ObservableGauge
	takeovers   metric.Int64Counter
	store       metric.Float64Histogram
	undecodable metric.Int64Counter

	// Attribute options, built once and passed as slices (a variadic
	// call through the instrument interface would allocate each time).
	firstSend, resend []metric.AddOption
	reasons           map[RejectReason][]metric.AddOption
	ops               map[string][]metric.RecordOption
}

func newMetrics(mp metric.MeterProvider) *metrics {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter(ScopeName)
	met := &metrics{
		firstSend: []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.Bool("taskfleet.dispatch.resend", false)))},
		resend:    []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.Bool("taskfleet.dispatch.resend", true)))},
		reasons:   map[RejectReason][]metric.AddOption{},
		ops:       map[string][]metric.RecordOption{},
	}
	for _, op := range storeOps {
		met.ops[op] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("db.operation.name", op)))}
	}
	// An instrument the provider refuses (an invalid name cannot occur:
	// they are constants) falls back to a no-op one.
	nop := noop.Meter{}
	var err error
	if met.dispatched, err = m.Int64Counter(MetricRunsDispatched, metric.WithUnit("{start}"), metric.WithDescription("Starts sent to devices.")); err != nil {
		met.dispatched, _ = nop.Int64Counter(MetricRunsDispatched)
	}
	if met.fired, err = m.Int64Counter(MetricRunsFired, metric.WithUnit("{run}"), metric.WithDescription("Activations of server-run tasks that started a run.")); err != nil {
		met.fired, _ = nop.Int64Counter(MetricRunsFired)
	}
	if met.recorded, err = m.Int64Counter(MetricResultsRecorded, metric.WithUnit("{result}"), metric.WithDescription("Device results written to the store.")); err != nil {
		met.recorded, _ = nop.Int64Counter(MetricResultsRecorded)
	}
	if met.rejected, err = m.Int64Counter(MetricResultsRejected, metric.WithUnit("{item}"), metric.WithDescription("Items of device messages dropped by the intake, by reason.")); err != nil {
		met.rejected, _ = nop.Int64Counter(MetricResultsRejected)
	}
	if met.lag, err = m.Float64Histogram(MetricDispatchLag, metric.WithUnit("s"), metric.WithDescription("Delay between a start's due time and its first send.")); err != nil {
		met.lag, _ = nop.Float64Histogram(MetricDispatchLag)
	}
	if met.takeovers, err = m.Int64Counter(MetricClaimTakeovers, metric.WithUnit("{start}"), metric.WithDescription("Dispatched starts taken over from a replica whose lease expired.")); err != nil {
		met.takeovers, _ = nop.Int64Counter(MetricClaimTakeovers)
	}
	if met.store, err = m.Float64Histogram(MetricStoreDuration, metric.WithUnit("s"), metric.WithDescription("Duration of the engine's store calls.")); err != nil {
		met.store, _ = nop.Float64Histogram(MetricStoreDuration)
	}
	if met.undecodable, err = m.Int64Counter(MetricTasksUndecodable, metric.WithUnit("{task}"), metric.WithDescription("Tasks skipped because their stored settings cannot be decoded.")); err != nil {
		met.undecodable, _ = nop.Int64Counter(MetricTasksUndecodable)
	}
	return met
}

// observeConnected registers the connected-devices gauge, read from the
// server's state under its lock at each collection.
func (s *Server) observeConnected(mp metric.MeterProvider) {
	if mp == nil {
		return
	}
	g, err := mp.Meter(ScopeName).Int64ObservableGauge(MetricDevicesConnected, metric.WithUnit("{device}"),
		metric.WithDescription("Devices heard from within the visibility timeout."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			now := s.clk.Now()
			n := 0
			for i := range s.dev.seen {
				if s.dev.visibleAt(int32(i), now, s.cfg.VisibilityTimeout) {
					n++
				}
			}
			o.Observe(int64(n))
			return nil
		}))
	if err == nil {
		s.met.connected = g
	}
}

// reason returns the attribute option of a reject reason (called under
// the server's lock, which guards reasons).
func (m *metrics) reason(why RejectReason) []metric.AddOption {
	o, ok := m.reasons[why]
	if !ok {
		o = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("taskfleet.reject.reason", string(why))))}
		m.reasons[why] = o
	}
	return o
}

// storeOps are the store calls whose duration the engine records (the
// values of the db.operation.name attribute).
var storeOps = []string{"RecordResults", "DueResults", "DispatchDue", "ClaimStale", "RenewClaims", "AcquireLeader", "PutEngineState", "ListResults", "PurgeHistory"}

// storeCall records the duration of one store call that began at start.
// ops is read-only after newMetrics, so it is safe without the lock.
func (s *Server) storeCall(ctx context.Context, op string, start time.Time) {
	o, ok := s.met.ops[op]
	if !ok {
		o = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("db.operation.name", op)))}
	}
	s.met.store.Record(ctx, s.clk.Since(start).Seconds(), o...)
}
