package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/benbjohnson/clock"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
)

const appES = "Endpoint Security"

func deviceID(i int) scope.DeviceID { return scope.DeviceID(fmt.Sprintf("dev-%06d", i)) }

// openStore opens the server's store: SQLite in dir, or PostgreSQL when
// dsn is set.
func openStore(ctx context.Context, o options) (*sqlstore.Store, error) {
	if o.postgres != "" {
		return sqlstore.Open(ctx, sqlstore.Config{Dialect: sqlstore.Postgres, DSN: o.postgres})
	}
	return sqlstore.OpenSQLite(ctx, filepath.Join(o.dir, "server.db"))
}

// serverStatus is the admin API's view of the server process.
type serverStatus struct {
	// Run counts of the asked run: results recorded in a final state.
	Finished int `json:"finished"`
	Total    int `json:"total"`
	// Channel are the transport's counters.
	Channel httptransport.Stats `json:"channel"`
	Engine  engine.Stats        `json:"engine"`
	// RSS is the resident memory in bytes, CPU the process's user+system
	// CPU time so far, FDs its open files, Goroutines its goroutines.
	RSS        int64         `json:"rss"`
	CPU        time.Duration `json:"cpu"`
	FDs        int           `json:"fds"`
	Goroutines int           `json:"goroutines"`
	Requests   int64         `json:"requests"`
	// Store is the engine's time in store calls so far, by operation
	// (its MetricStoreDuration histogram).
	Store map[string]StoreCalls `json:"store"`
}

// StoreCalls are the engine's calls of one store operation: how many,
// and their total duration in seconds.
type StoreCalls struct {
	Calls   uint64  `json:"calls"`
	Seconds float64 `json:"seconds"`
}

// storeCalls reads the engine's store-call histogram from rd.
func storeCalls(ctx context.Context, rd *sdkmetric.ManualReader) map[string]StoreCalls {
	var rm metricdata.ResourceMetrics
	if rd.Collect(ctx, &rm) != nil {
		return nil
	}
	out := map[string]StoreCalls{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			h, ok := m.Data.(metricdata.Histogram[float64])
			if m.Name != engine.MetricStoreDuration || !ok {
				continue
			}
			for _, dp := range h.DataPoints {
				op, _ := dp.Attributes.Value("db.operation.name")
				out[op.AsString()] = StoreCalls{Calls: dp.Count, Seconds: dp.Sum}
			}
		}
	}
	return out
}

// serve runs the server process: store, inventory of o.agents devices,
// engine, the HTTPS channel on o.addr and the admin API on o.admin.
func serve(ctx context.Context, o options, out io.Writer) error {
	raiseFileLimit()
	clk := clock.New()
	store, err := openStore(ctx, o)
	if err != nil {
		return err
	}
	defer store.Close()
	inv := store.Inventory().(*sqlstore.Inventory)
	if _, err := inv.Device(ctx, deviceID(o.agents)); err != nil {
		if err := inv.PutGroups(ctx, scope.AdminGroup{ID: "root", Name: "Managed devices"}); err != nil {
			return err
		}
		batch := make([]scope.Device, 0, 1000)
		for i := 1; i <= o.agents; i++ {
			batch = append(batch, scope.Device{ID: deviceID(i), GroupID: "root", TimeZone: "UTC", Tags: []string{}, Connected: true,
				Server: scope.ServerRef{ID: "main", Role: scope.Primary}, Applications: map[string]scope.AppState{appES: {Installed: true, Running: true}}})
			if len(batch) == cap(batch) || i == o.agents {
				if err := inv.PutDevices(ctx, batch...); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
	}
	// The engine's metrics, read by the admin API's status (store time).
	reader := sdkmetric.NewManualReader()
	eng, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, RetryInterval: o.retry, VisibilityTimeout: 30 * time.Minute,
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		// The claim layer (the store's Claimer): after the kill, the
		// restarted server takes the dead process's dispatched starts over
		// when their lease expires, in batches. (With SingleReplica the
		// engine recovers at most storage.MaxListLimit pending starts on
		// Open: see bench/README.md.)
		LeaseTTL: o.lease})
	if err != nil {
		return err
	}
	reg := task.NewRegistry()
	if err := reg.Register(task.TaskType{Application: appES, Name: "virus_scan"}); err != nil {
		return err
	}
	m, err := task.New(task.Config{Store: store, Registry: reg, Inventory: inv, Clock: clk, Dispatcher: eng})
	if err != nil {
		return err
	}
	// The devices' key hashes live in the store (its device_keys table),
	// so the agents keep their keys across the server's kill and restart.
	keys := httptransport.StoreKeys(store, httptransport.StoreKeysConfig{Clock: clk})
	enr, err := httptransport.NewEnrollment(httptransport.EnrollmentConfig{Secret: httptransport.Secret(os.Getenv(secretEnv)), Keys: keys, Clock: clk,
		Rate: 50000, Burst: 50000})
	if err != nil {
		return err
	}
	ch, err := httptransport.NewServer(httptransport.ServerConfig{Identity: enr, Clock: clk, MaxWait: o.wait})
	if err != nil {
		return err
	}
	ch.Attach(eng)
	if err := eng.Open(ctx, m, ch); err != nil {
		return err
	}
	scan, err := loadTask(ctx, m, clk.Now())
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(o.dir, "server.pem"), filepath.Join(o.dir, "server.key"))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: ch, TLSConfig: httptransport.ServerTLS(cert, nil), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute,
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: 1000},
		// Connections cut by the kill of a simulator or a client's
		// surplus dials: not news.
		ErrorLog: log.New(io.Discard, "", 0)}
	admin := http.NewServeMux()
	// Profiles of the server under load (loopback only, like the rest of
	// the admin API): go tool pprof http://ADMIN/debug/pprof/profile
	admin.HandleFunc("/debug/pprof/", pprof.Index)
	admin.HandleFunc("/debug/pprof/profile", pprof.Profile)
	probeHandlers(admin, m, o.agents, clk.Now)
	var startMu sync.Mutex
	admin.HandleFunc("POST /start", func(w http.ResponseWriter, r *http.Request) {
		startMu.Lock()
		defer startMu.Unlock()
		run, err := m.Start(r.Context(), task.Actor{ID: "admin"}, scan.ID)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"run": run.ID, "devices": run.Devices, "task": scan.ID})
	})
	admin.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st := serverStatus{Channel: ch.Stats(), Engine: eng.Stats(), Goroutines: runtime.NumGoroutine()}
		st.Requests = st.Channel.Received + st.Channel.Polls + st.Channel.Enrolled + st.Channel.Unauthenticated
		st.RSS, st.CPU, st.FDs = procStats()
		if r.URL.Query().Get("store") == "1" {
			// On request only: a collection also runs the engine's
			// connected-devices gauge, a scan of every device under its lock.
			st.Store = storeCalls(r.Context(), reader)
		}
		if run, _ := strconv.ParseInt(r.URL.Query().Get("run"), 10, 64); run != 0 {
			st.Finished, st.Total, err = finished(r.Context(), store, scan.ID, run)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		writeJSON(w, st)
	})
	aln, err := net.Listen("tcp", o.admin)
	if err != nil {
		return err
	}
	as := &http.Server{Handler: admin, ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	go func() { errc <- eng.Run(ctx, 100*time.Millisecond) }()
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	go func() { errc <- as.Serve(aln) }()
	fmt.Fprintf(out, "LISTEN %s ADMIN %s\n", ln.Addr(), aln.Addr())
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	_ = hs.Shutdown(sctx)
	_ = as.Shutdown(sctx)
	if runErr != nil && !errors.Is(runErr, context.Canceled) && !errors.Is(runErr, http.ErrServerClosed) {
		return runErr
	}
	return nil
}

// finished counts the results of run in a final state, and all results of
// the task.
func finished(ctx context.Context, store *sqlstore.Store, taskID string, run int64) (int, int, error) {
	n, total := 0, 0
	after := ""
	for {
		page, err := store.ListResults(ctx, storage.ListResultsParams{TaskID: taskID, AfterDevice: after, Limit: storage.MaxListLimit})
		if err != nil {
			return 0, 0, err
		}
		for _, r := range page {
			total++
			if r.RunID == run && task.State(r.State).Final() {
				n++
			}
		}
		if len(page) < storage.MaxListLimit {
			return n, total, nil
		}
		after = page[len(page)-1].DeviceID
	}
}

func loadTask(ctx context.Context, m *task.Manager, now time.Time) (*task.Task, error) {
	list, err := m.List(ctx, task.System, task.ListParams{NameContains: "Load scan"})
	if err != nil {
		return nil, err
	}
	for _, app := range list.Applications {
		for _, t := range app.Tasks {
			return t, nil
		}
	}
	return m.Create(ctx, task.System, task.Task{Name: "Load scan", Application: appES, Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Group, Group: "root"}, Schedule: schedule.Default(schedule.Manual, now, time.UTC)})
}

// procStats returns the process's resident memory, CPU time and open
// files (Linux; zeros elsewhere).
func procStats() (rss int64, cpu time.Duration, fds int) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				rss = kb << 10
			}
		}
	}
	if es, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = len(es)
	}
	return rss, cpu, fds
}

// raiseFileLimit lifts the soft open-file limit to the hard one.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
