package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

const (
	appES = "Endpoint Security"
	// pollGrace: a device that has not polled for this long is not
	// connected (Send returns ErrUnreachable, the inventory says so).
	pollGrace = 3 * time.Second
	// maxPoll bounds a poll answer an agent reads (many messages).
	maxPoll = 64 << 20
)

// hub is the server side of the HTTP channel: a transport.ServerEndpoint
// that queues messages per device for their long polls, and the handler
// of device messages.
type hub struct {
	mu       sync.Mutex
	queues   map[scope.DeviceID][]transport.Message
	wake     map[scope.DeviceID]chan struct{}
	lastPoll map[scope.DeviceID]time.Time
	polling  map[scope.DeviceID]int
	clk      clock.Clock
	key      string // the fleet key that device tokens derive from (auth.go)

	hmu     sync.Mutex // one message at a time into the engine
	handler transport.Handler
	refuse  bool // refuse Results and Events (a simulated outage)
	stats   hubStats
}

type hubStats struct {
	Received int `json:"received"`
	// Unauthenticated counts requests refused for a missing or wrong
	// device token, Malformed bodies that are not a message (or too
	// large).
	Unauthenticated int `json:"unauthenticated"`
	Malformed       int `json:"malformed"`
	Results         int `json:"results_messages"`
	Refused         int `json:"refused"`
	Sent            int `json:"sent"`
}

func newHub(clk clock.Clock, key string) *hub {
	return &hub{key: key, queues: map[scope.DeviceID][]transport.Message{}, wake: map[scope.DeviceID]chan struct{}{},
		lastPoll: map[scope.DeviceID]time.Time{}, polling: map[scope.DeviceID]int{}, clk: clk}
}

// connected reports whether a device holds a poll or polled recently;
// h.mu is held.
func (h *hub) connected(id scope.DeviceID) bool {
	return h.polling[id] > 0 || h.clk.Since(h.lastPoll[id]) < pollGrace
}

// Send implements transport.ServerEndpoint.
func (h *hub) Send(_ context.Context, m transport.Message) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.connected(m.Device) {
		return transport.ErrUnreachable
	}
	h.queues[m.Device] = append(h.queues[m.Device], m)
	h.stats.Sent++
	if c := h.wake[m.Device]; c != nil {
		close(c)
		delete(h.wake, m.Device)
	}
	return nil
}

// refuse answers a request without a valid device token.
func (h *hub) unauthorized(w http.ResponseWriter) {
	h.mu.Lock()
	h.stats.Unauthenticated++
	h.mu.Unlock()
	http.Error(w, "a device and its token are required", http.StatusUnauthorized)
}

// poll answers GET /v1/poll?device=ID&wait=SECONDS from that device.
func (h *hub) poll(w http.ResponseWriter, r *http.Request) {
	id := authenticate(h.key, r)
	if id == "" {
		h.unauthorized(w)
		return
	}
	wait, err := strconv.Atoi(r.URL.Query().Get("wait"))
	if err != nil || wait < 0 || wait > 60 {
		http.Error(w, "wait: seconds, 0..60", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.polling[id]++
	h.lastPoll[id] = h.clk.Now()
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.polling[id]--
		h.lastPoll[id] = h.clk.Now()
		h.mu.Unlock()
	}()
	deadline := time.NewTimer(time.Duration(wait) * time.Second)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		msgs := h.queues[id]
		if len(msgs) > 0 {
			delete(h.queues, id)
			h.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(msgs) // a failed write loses them: the runtimes resend
			return
		}
		c := h.wake[id]
		if c == nil {
			c = make(chan struct{})
			h.wake[id] = c
		}
		h.mu.Unlock()
		select {
		case <-c:
		case <-deadline.C:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "[]\n")
			return
		case <-r.Context().Done():
			return
		}
	}
}

// send answers POST /v1/send?device=ID: one message from that device.
// The device is authenticated before the body is read; the body is read
// up to transport.MaxMessageBytes and decoded by the wire codec; the
// message's sender is the authenticated device, whatever it says.
func (h *hub) send(w http.ResponseWriter, r *http.Request) {
	id := authenticate(h.key, r)
	if id == "" {
		h.unauthorized(w)
		return
	}
	m, err := transport.Decode(http.MaxBytesReader(w, r.Body, transport.MaxMessageBytes))
	if err != nil {
		h.mu.Lock()
		h.stats.Malformed++
		h.mu.Unlock()
		code := http.StatusBadRequest
		var tooBig *http.MaxBytesError
		if errors.Is(err, transport.ErrTooLarge) || errors.As(err, &tooBig) {
			code = http.StatusRequestEntityTooLarge
		}
		http.Error(w, "body: one transport message as JSON, at most transport.MaxMessageBytes", code)
		return
	}
	m.Device = id
	h.mu.Lock()
	h.lastPoll[id] = h.clk.Now()
	h.stats.Received++
	if m.Kind == transport.Results {
		h.stats.Results++
	}
	if h.refuse && (m.Kind == transport.Results || m.Kind == transport.Events) {
		h.stats.Refused++
		h.mu.Unlock()
		http.Error(w, "results are refused for now", http.StatusServiceUnavailable)
		return
	}
	h.mu.Unlock()
	h.hmu.Lock()
	h.handler.Handle(r.Context(), m)
	h.hmu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// syncInventory keeps the inventory's Connected flags in step with the
// polls: the engine resolves "connected devices only" scopes from it.
func (h *hub) syncInventory(ctx context.Context, inv *sqlstore.Inventory, ids []scope.DeviceID) error {
	known := map[scope.DeviceID]bool{}
	for {
		for _, id := range ids {
			h.mu.Lock()
			on := h.connected(id)
			h.mu.Unlock()
			if v, ok := known[id]; ok && v == on {
				continue
			}
			d, err := inv.Device(ctx, id)
			if err != nil {
				return err
			}
			nd := *d
			nd.Connected = on
			nd.LastSeen = h.clk.Now().UTC()
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
	if o.key == "" {
		return errors.New(keyEnv + ": the fleet key is required in the environment")
	}
	h := newHub(clk, o.key)
	h.handler = srv
	if err := srv.Open(ctx, m, h); err != nil {
		return err
	}
	scan, err := scanTask(ctx, m, clk.Now())
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/poll", h.poll)
	mux.HandleFunc("POST /v1/send", h.send)
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
		h.mu.Lock()
		h.refuse = on
		h.mu.Unlock()
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
		h.mu.Lock()
		st := h.stats
		h.mu.Unlock()
		writeJSON(w, status{Connected: conn, Results: results, Events: events, Hub: st, Engine: srv.Stats()})
	})

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(2)
	go func() { defer wg.Done(); errc <- srv.Run(ctx, 100*time.Millisecond) }()
	go func() { defer wg.Done(); errc <- h.syncInventory(ctx, inv, ids) }()
	go func() { errc <- hs.Serve(ln) }()
	fmt.Fprintf(out, "LISTEN http://%s\n", ln.Addr())
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
