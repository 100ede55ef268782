package httptransport_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport/testpki"
)

const secret = httptransport.Secret("fleet-enrollment-secret-0123456789")

// recorder is a transport.Handler that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []transport.Message
	got  chan struct{}
}

func newRecorder() *recorder { return &recorder{got: make(chan struct{}, 1000)} }

func (r *recorder) Handle(_ context.Context, m transport.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	select {
	case r.got <- struct{}{}:
	default:
	}
}

func (r *recorder) all() []transport.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]transport.Message(nil), r.msgs...)
}

// syncBuffer collects log lines written concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixture is a Server behind TLS 1.3 on 127.0.0.1.
type fixture struct {
	ca     *testpki.CA
	srv    *httptransport.Server
	ts     *httptest.Server
	rec    *recorder
	enr    *httptransport.Enrollment // nil with mTLS
	keys   *httptransport.MemKeyStore
	clk    clock.Clock
	url    string
	srvLog *syncBuffer
}

type fixtureConfig struct {
	mtls    bool
	clock   clock.Clock
	enroll  httptransport.EnrollmentConfig
	server  httptransport.ServerConfig
	handler transport.Handler // default: a recorder
	addr    string            // listen here (a restart); default any port
}

func newFixture(t *testing.T, fc fixtureConfig) *fixture {
	t.Helper()
	f := &fixture{rec: newRecorder(), clk: fc.clock, srvLog: &syncBuffer{}}
	if f.clk == nil {
		f.clk = clock.New()
	}
	var err error
	f.ca, err = testpki.New(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f.setup(t, fc)
	return f
}

func (f *fixture) setup(t *testing.T, fc fixtureConfig) {
	t.Helper()
	var id httptransport.Identity
	if fc.mtls {
		id = httptransport.MTLS{Device: httptransport.CommonName}
	} else {
		ec := fc.enroll
		ec.Secret = secret
		ec.Clock = f.clk
		f.keys = httptransport.NewMemKeyStore()
		if ec.Keys == nil {
			ec.Keys = f.keys
		}
		ec.Logger = zerolog.New(f.srvLog)
		enr, err := httptransport.NewEnrollment(ec)
		if err != nil {
			t.Fatal(err)
		}
		f.enr, id = enr, enr
	}
	sc := fc.server
	sc.Identity, sc.Clock = id, f.clk
	if sc.MaxWait == 0 {
		sc.MaxWait = 2 * time.Second
	}
	srv, err := httptransport.NewServer(sc)
	if err != nil {
		t.Fatal(err)
	}
	var h transport.Handler = f.rec
	if fc.handler != nil {
		h = fc.handler
	}
	srv.Attach(h)
	f.srv = srv
	cert, err := f.ca.Server(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv)
	if fc.addr != "" {
		ln, err := listenRetry(fc.addr)
		if err != nil {
			t.Fatal(err)
		}
		ts.Listener.Close()
		ts.Listener = ln
	}
	ts.EnableHTTP2 = true
	ts.TLS = httptransport.ServerTLS(cert, f.ca.Pool)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	f.ts, f.url = ts, ts.URL
}

// listenRetry listens on addr, retrying while the old server lets it go.
func listenRetry(addr string) (net.Listener, error) {
	var err error
	for range 100 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, err
}

// httpClient returns a channel client trusting the fixture's CA, with the
// client certificate of device when it is not empty.
func (f *fixture) httpClient(t *testing.T, device string) *http.Client {
	t.Helper()
	tc := &tls.Config{RootCAs: f.ca.Pool}
	if device != "" {
		c, err := f.ca.Client(device, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return httptransport.NewHTTPClient(tc)
}

func (f *fixture) client(t *testing.T, cc httptransport.ClientConfig) *httptransport.Client {
	t.Helper()
	if cc.URL == "" {
		cc.URL = f.url
	}
	if cc.HTTPClient == nil {
		cc.HTTPClient = f.httpClient(t, "")
	}
	if cc.Clock == nil {
		cc.Clock = f.clk
	}
	c, err := httptransport.NewClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrolled returns a client of device with a fresh key, and the key.
func (f *fixture) enrolled(t *testing.T, device transport.DeviceID) (*httptransport.Client, httptransport.Secret) {
	t.Helper()
	var key httptransport.Secret
	c := f.client(t, httptransport.ClientConfig{Device: device, EnrollSecret: secret,
		SaveKey: func(_ context.Context, k httptransport.Secret) error { key = k; return nil }})
	if err := c.Enroll(context.Background()); err != nil {
		t.Fatalf("enroll %s: %v", device, err)
	}
	return c, key
}

func auth(device transport.DeviceID, key httptransport.Secret) map[string]string {
	return map[string]string{httptransport.HeaderDevice: string(device), "Authorization": "Bearer " + string(key)}
}

func encode(t *testing.T, m transport.Message) []byte {
	t.Helper()
	b, err := transport.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// raw makes a request with the given headers and body and returns the
// status and the Taskfleet-Auth-Error header.
func (f *fixture) raw(t *testing.T, method, path string, hdr map[string]string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := f.httpClient(t, "").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get(httptransport.HeaderAuthError)
}

func heartbeat(device transport.DeviceID) transport.Message {
	return transport.Message{Kind: transport.Heartbeat, Device: device, Heartbeat: &transport.HeartbeatInfo{}}
}

func zerologTo(w *syncBuffer) zerolog.Logger { return zerolog.New(w).Level(zerolog.InfoLevel) }

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
