package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
)

const appES = "Endpoint Security"

// Environment of the processes. The enrollment secret travels in the
// environment, never on the command line, and is never logged; each
// agent keeps the key it received in DB.key next to its database.
const secretEnv = "HTTPTRANSPORT_SECRET"

// outage is the demo's simulated outage: while on, the server loses every
// Results and Events message it receives (they are not acknowledged, so
// the agents keep them in their outboxes and send them again).
type outage struct {
	next    transport.Handler
	on      atomic.Bool
	refused atomic.Int64
	results atomic.Int64
}

// Handle implements transport.Handler.
func (o *outage) Handle(ctx context.Context, m transport.Message) {
	if m.Kind == transport.Results {
		o.results.Add(1)
	}
	if o.on.Load() && (m.Kind == transport.Results || m.Kind == transport.Events) {
		o.refused.Add(1)
		return
	}
	o.next.Handle(ctx, m)
}

// hubStats are the channel's counters and the outage's.
type hubStats struct {
	httptransport.Stats
	Results int64 `json:"results_messages"`
	Refused int64 `json:"refused"`
}

// syncInventory keeps the inventory's Connected flags in step with the
// channel: the engine resolves "connected devices only" scopes from it.
func syncInventory(ctx context.Context, ch *httptransport.Server, clk clock.Clock, inv *sqlstore.Inventory, ids []scope.DeviceID) error {
	known := map[scope.DeviceID]bool{}
	for {
		for _, id := range ids {
			on := ch.Connected(id)
			if v, ok := known[id]; ok && v == on {
				continue
			}
			d, err := inv.Device(ctx, id)
			if err != nil {
				return err
			}
			nd := *d
			nd.Connected = on
			nd.LastSeen = clk.Now().UTC()
			if err := inv.PutDevices(ctx, nd); err != nil {
				return err
			}
			known[id] = on
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func registry() (*task.Registry, error) {
	reg := task.NewRegistry()
	return reg, reg.Register(task.TaskType{Application: appES, Name: "virus_scan"})
}

// serve runs the server: SQLite store and inventory, engine, Manager,
// the HTTP channel, and a small admin API for the demo.
func serve(ctx context.Context, o options, out io.Writer) error {
	clk := clock.New()
	store, err := sqlstore.OpenSQLite(ctx, o.db)
	if err != nil {
		return err
	}
	defer store.Close()
	inv := store.Inventory().(*sqlstore.Inventory)
	if err := inv.PutGroups(ctx, scope.AdminGroup{ID: "root", Name: "Managed devices"}); err != nil {
		return err
	}
	var ids []scope.DeviceID
	for i := 1; i <= o.devices; i++ {
		id := scope.DeviceID(fmt.Sprintf("dev-%d", i))
		ids = append(ids, id)
		if _, err := inv.Device(ctx, id); err == nil {
			continue
		}
		if err := inv.PutDevices(ctx, scope.Device{ID: id, GroupID: "root", TimeZone: "UTC", Tags: []string{}, Server: scope.ServerRef{ID: "main", Role: scope.Primary},
			Applications: map[string]scope.AppState{appES: {Installed: true, Running: true}}}); err != nil {
			return err
		}
	}
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, RetryInterval: time.Second, VisibilityTimeout: 10 * time.Second})
	if err != nil {
		return err
	}
	reg, err := registry()
	if err != nil {
		return err
	}
	m, err := task.New(task.Config{Store: store, Registry: reg, Inventory: inv, Clock: clk, Dispatcher: srv})
	if err != nil {
		return err
	}
	if o.secret == "" {
		return errors.New(secretEnv + ": the enrollment secret is required in the environment")
	}
	// Devices enroll once with the secret and get their own key; the
	// server keeps only the keys' hashes (in memory here: after a server
	// restart the agents enroll again).
	enr, err := httptransport.NewEnrollment(httptransport.EnrollmentConfig{Secret: httptransport.Secret(o.secret), Clock: clk,
		Known: func(ctx context.Context, id scope.DeviceID) error { _, err := inv.Device(ctx, id); return err }})
	if err != nil {
		return err
	}
	ch, err := httptransport.NewServer(httptransport.ServerConfig{Identity: enr, Clock: clk, MaxWait: 10 * time.Second, ConnectedFor: 13 * time.Second})
	if err != nil {
		return err
	}
	out2 := &outage{next: srv}
	ch.Attach(out2)
	if err := srv.Open(ctx, m, ch); err != nil {
		return err
	}
	scan, err := scanTask(ctx, m, clk.Now())
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/start", func(w http.ResponseWriter, r *http.Request) {
		run, err := m.Start(r.Context(), task.Actor{ID: "admin"}, scan.ID)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"run_id": run.ID, "devices": run.Devices})
	})
	mux.HandleFunc("POST /admin/refuse", func(w http.ResponseWriter, r *http.Request) {
		on, err := strconv.ParseBool(r.URL.Query().Get("on"))
		if err != nil {
			http.Error(w, "on: true or false", http.StatusBadRequest)
			return
		}
		out2.on.Store(on)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /admin/status", func(w http.ResponseWriter, r *http.Request) {
		results, err := m.Results(r.Context(), task.System, scan.ID, task.ResultsParams{Limit: 1000})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		events, err := m.History(r.Context(), task.System, scan.ID, task.HistoryParams{Limit: 10000})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var conn []scope.DeviceID // connected in the inventory, as the engine sees them
		for _, id := range ids {
			d, err := inv.Device(r.Context(), id)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			if d.Connected {
				conn = append(conn, id)
			}
		}
		st := hubStats{Stats: ch.Stats(), Results: out2.results.Load(), Refused: out2.refused.Load()}
		writeJSON(w, status{Connected: conn, Results: results, Events: events, Hub: st, Engine: srv.Stats()})
	})

	cert, err := tls.LoadX509KeyPair(filepath.Join(o.pki, "server.pem"), filepath.Join(o.pki, "server.key"))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	// The device channel: HTTPS (TLS 1.3, HTTP/2).
	hs := &http.Server{Handler: ch, TLSConfig: httptransport.ServerTLS(cert, nil), ReadHeaderTimeout: 5 * time.Second}
	// The demo's admin API: plain HTTP on another loopback port.
	aln, err := net.Listen("tcp", o.admin)
	if err != nil {
		return err
	}
	as := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	wg.Add(2)
	go func() { defer wg.Done(); errc <- srv.Run(ctx, 100*time.Millisecond) }()
	go func() { defer wg.Done(); errc <- syncInventory(ctx, ch, clk, inv, ids) }()
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	go func() { errc <- as.Serve(aln) }()
	fmt.Fprintf(out, "LISTEN https://%s ADMIN http://%s\n", ln.Addr(), aln.Addr())
	if f, ok := out.(interface{ Sync() error }); ok {
		_ = f.Sync()
	}
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
	wg.Wait()
	if runErr != nil && !errors.Is(runErr, context.Canceled) && !errors.Is(runErr, http.ErrServerClosed) {
		return runErr
	}
	return nil
}

// status is the demo's view of the server.
type status struct {
	Connected []scope.DeviceID `json:"connected"`
	Results   []task.Result    `json:"results"`
	Events    []task.Event     `json:"events"`
	Hub       hubStats         `json:"hub"`
	// Engine are the engine's counters (Rejected: device items refused).
	Engine engine.Stats `json:"engine"`
}

// scanTask returns the demo's manual task, creating it on a new database.
func scanTask(ctx context.Context, m *task.Manager, now time.Time) (*task.Task, error) {
	list, err := m.List(ctx, task.System, task.ListParams{NameContains: "Quick scan"})
	if err != nil {
		return nil, err
	}
	for _, app := range list.Applications {
		for _, t := range app.Tasks {
			if t.Name == "Quick scan" {
				return t, nil
			}
		}
	}
	return m.Create(ctx, task.System, task.Task{Name: "Quick scan", Application: appES, Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Group, Group: "root"}, Schedule: schedule.Default(schedule.Manual, now, time.UTC),
		Notifications: task.Notifications{History: task.HistoryResults}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
