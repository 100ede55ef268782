package httptransport_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
)

// fault is what faultRT does to a request.
type fault int

const (
	pass       fault = iota
	dropAnswer       // the server handles the request; its answer is lost (the connection broke)
	answer503        // the server is overloaded: 503 with Retry-After, nothing done
	answer429        // enrollments are rate limited: 429, nothing done
)

// faultRT is a RoundTripper in front of the channel's own: it applies the
// armed fault to the next request of the armed path, once.
type faultRT struct {
	next  http.RoundTripper
	mu    sync.Mutex
	path  string
	fault fault
	hits  atomic.Int32 // faults applied
	// keyless, if not nil, is told of a Send without a key, whose answer
	// is then held for 100 ms.
	keyless chan struct{}
	polls   atomic.Int32
}

func (x *faultRT) arm(path string, f fault) {
	x.mu.Lock()
	x.path, x.fault = path, f
	x.mu.Unlock()
}

func (x *faultRT) RoundTrip(req *http.Request) (*http.Response, error) {
	x.mu.Lock()
	f := pass
	if x.fault != pass && req.URL.Path == x.path {
		f, x.fault = x.fault, pass
	}
	x.mu.Unlock()
	if f != pass {
		x.hits.Add(1)
	}
	if x.keyless != nil && req.URL.Path == httptransport.PathPoll && x.polls.Add(1) == 1 {
		time.Sleep(300 * time.Millisecond) // the first poll is slow to reach the server
	}
	if x.keyless != nil && req.URL.Path == httptransport.PathSend && req.Header.Get("Authorization") == "" {
		x.keyless <- struct{}{}
		resp, err := x.next.RoundTrip(req)
		time.Sleep(100 * time.Millisecond)
		return resp, err
	}
	switch f {
	case dropAnswer:
		resp, err := x.next.RoundTrip(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return nil, errors.New("injected: connection lost before the answer arrived")
	case answer503, answer429:
		code := http.StatusServiceUnavailable
		if f == answer429 {
			code = http.StatusTooManyRequests
		}
		if req.Body != nil {
			req.Body.Close()
		}
		h := http.Header{"Retry-After": {"1"}}
		return &http.Response{StatusCode: code, Status: http.StatusText(code), Header: h, Body: io.NopCloser(strings.NewReader("")), Request: req, ProtoMajor: 2}, nil
	}
	return x.next.RoundTrip(req)
}

// flakyKeys is a key store whose next failPuts writes fail (a disk error,
// a pool exhausted), changing nothing.
type flakyKeys struct {
	httptransport.KeyStore
	failPuts atomic.Int32
}

func (k *flakyKeys) PutKey(ctx context.Context, p httptransport.PutKeyParams) error {
	if k.failPuts.Add(-1) >= 0 {
		return errors.New("injected: disk I/O error")
	}
	return k.KeyStore.PutKey(ctx, p)
}

// A device that holds the enrollment secret gets in once the server is
// healthy, whatever happened to one of its enrollments: its answer lost
// after the server issued the key (the connection broke under load), the
// server overloaded (503) or rate limiting (429), or the key store failing
// a write. Both for the first enrollment and for the enrollment again
// after a 401 (here: the operator reset the device). Before the fix the
// enrollment again after a 401 was tried once per 401 episode: when that
// one try failed, the client never tried again and stayed out for ever
// (the 2 of 100,000 agents that never connected), and a key store error
// was answered 403, which the client took for a revocation.
func TestDeviceGetsInDespiteEnrollmentFaults(t *testing.T) {
	t.Parallel()
	for _, again := range []bool{false, true} {
		for _, tc := range []struct {
			name   string
			fault  fault
			store  bool // the key store fails one write instead
			sqlite bool // keys in StoreKeys on SQLite (its cache, its batches) instead of MemKeyStore
		}{
			{"answer lost", dropAnswer, false, false},
			{"answer lost, StoreKeys on SQLite", dropAnswer, false, true},
			{"503", answer503, false, false},
			{"429", answer429, false, false},
			{"key store fails", pass, true, false},
			{"key store fails, StoreKeys on SQLite", pass, true, true},
		} {
			name := "first enrollment/" + tc.name
			if again {
				name = "enrollment after a 401/" + tc.name
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				keys := &flakyKeys{KeyStore: httptransport.NewMemKeyStore()}
				if tc.sqlite {
					st, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "keys.db"))
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { st.Close() })
					keys.KeyStore = httptransport.StoreKeys(st, httptransport.StoreKeysConfig{})
				}
				f := newFixture(t, fixtureConfig{enroll: httptransport.EnrollmentConfig{Keys: keys}})
				rt := &faultRT{next: f.httpClient(t, "").Transport}
				var failures sync.Map // kind → true
				c := f.client(t, httptransport.ClientConfig{Device: "dev-1", EnrollSecret: secret, HTTPClient: &http.Client{Transport: rt},
					CheckIn: 20 * time.Millisecond, BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
					OnFailure: func(fl httptransport.Failure) { failures.Store(fl.Kind(), true) }})
				arm := func() {
					if tc.store {
						keys.failPuts.Store(1)
					} else {
						rt.arm(httptransport.PathEnroll, tc.fault)
					}
				}
				if !again {
					arm()
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- c.Run(ctx, transport.HandlerFunc(func(context.Context, transport.Message) {})) }()
				t.Cleanup(func() {
					cancel()
					<-done
				})
				in := func(not httptransport.Hash) func() bool {
					return func() bool {
						r, err := keys.Key(context.Background(), "dev-1")
						return err == nil && r.Used && r.Hash != not
					}
				}
				waitFor(t, in(httptransport.Hash{}))
				if again {
					old, _ := keys.Key(context.Background(), "dev-1")
					arm()
					if err := f.enr.Reset(context.Background(), "dev-1"); err != nil {
						t.Fatal(err)
					}
					waitFor(t, in(old.Hash))
				}
				if !tc.store && rt.hits.Load() != 1 {
					t.Fatalf("the fault was applied %d times, want 1", rt.hits.Load())
				}
				if tc.store && keys.failPuts.Load() >= 0 {
					t.Fatal("the key store's failure was not reached")
				}
				var kinds []string
				failures.Range(func(k, _ any) bool { kinds = append(kinds, k.(string)); return true })
				if len(kinds) == 0 {
					t.Error("the client reported no failure")
				}
				// The client knows it is in (its request accepted) a moment
				// after the server does.
				waitFor(t, func() bool {
					st := c.Status()
					return !st.LastContact.IsZero() && st.Consecutive == 0 && st.Failures > 0
				})
			})
		}
	}
}

// The server answers an enrollment its key store could not handle with
// 503 and Retry-After (the device retries), not 403: the client took the
// 403 for a revocation.
func TestEnrollKeyStoreFailureIs503(t *testing.T) {
	t.Parallel()
	keys := &flakyKeys{KeyStore: httptransport.NewMemKeyStore()}
	keys.failPuts.Store(1)
	f := newFixture(t, fixtureConfig{enroll: httptransport.EnrollmentConfig{Keys: keys}})
	var got []httptransport.Failure
	c := f.client(t, httptransport.ClientConfig{Device: "dev-1", EnrollSecret: secret, OnFailure: func(fl httptransport.Failure) { got = append(got, fl) }})
	err := c.Enroll(context.Background())
	if !errors.Is(err, transport.ErrUnreachable) || errors.Is(err, httptransport.ErrRevoked) {
		t.Fatalf("Enroll with the key store failing: %v, want ErrUnreachable", err)
	}
	if len(got) != 1 || got[0].Op != httptransport.OpEnroll || got[0].Status != http.StatusServiceUnavailable || got[0].Reason != httptransport.ReasonUnavailable {
		t.Fatalf("failures reported: %+v, want one enroll 503 unavailable", got)
	}
	if err := c.Enroll(context.Background()); err != nil {
		t.Fatalf("Enroll once the store works: %v", err)
	}
}

// Send before the client has a key (the poll loop is still enrolling)
// sends nothing: a request without a key is answered 401, which made the
// client enroll again and replace the key the poll loop was receiving.
func TestSendBeforeEnrollmentSendsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureConfig{})
	c := f.client(t, httptransport.ClientConfig{Device: "dev-1", EnrollSecret: secret})
	if err := c.Send(context.Background(), heartbeat("dev-1")); !errors.Is(err, transport.ErrUnreachable) {
		t.Fatalf("Send without a key: %v, want ErrUnreachable", err)
	}
	if st := f.srv.Stats(); st.Unauthenticated != 0 || st.Enrolled != 0 {
		t.Fatalf("server stats after a Send without a key: %+v, want nothing", st)
	}
	if st := c.Status(); st.Last.Op != httptransport.OpSend || st.Last.Reason != httptransport.ReasonNotEnrolled || st.Failures != 1 {
		t.Fatalf("status: %+v, want one send not_enrolled failure", st)
	}
}

// Failures are counted and reported (OnFailure, Status) with the HTTP
// status and the server's reason, and logged at warn level at most once
// per WarnEvery with the number of failures since the last warning; never
// with a secret.
func TestClientReportsFailures(t *testing.T) {
	t.Parallel()
	mock := clock.NewMock()
	mock.Set(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	f := newFixture(t, fixtureConfig{clock: mock})
	logs := &syncBuffer{}
	var kinds []string
	bad := httptransport.Secret("not-the-fleet-secret-0123456789")
	c := f.client(t, httptransport.ClientConfig{Device: "dev-1", EnrollSecret: bad, Logger: zerologTo(logs), WarnEvery: time.Minute,
		OnFailure: func(fl httptransport.Failure) { kinds = append(kinds, fl.Kind()) }})
	ctx := context.Background()
	for range 5 {
		if err := c.Enroll(ctx); !errors.Is(err, httptransport.ErrBadSecret) {
			t.Fatalf("Enroll with a wrong secret: %v", err)
		}
	}
	st := c.Status()
	if st.Failures != 5 || st.Consecutive != 5 || st.Last.Status != http.StatusUnauthorized || st.Last.Reason != httptransport.ReasonBadSecret || !st.Last.At.Equal(mock.Now()) {
		t.Errorf("status: %+v", st)
	}
	if want := "enroll 401 bad_secret"; len(kinds) != 5 || kinds[0] != want {
		t.Errorf("kinds %q, want 5 × %q", kinds, want)
	}
	if n := strings.Count(logs.String(), `"level":"warn"`); n != 1 {
		t.Errorf("%d warnings for 5 failures within WarnEvery, want 1:\n%s", n, logs)
	}
	mock.Add(time.Minute)
	_ = c.Enroll(ctx)
	out := logs.String()
	if n := strings.Count(out, `"level":"warn"`); n != 2 {
		t.Errorf("%d warnings after WarnEvery, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, `"since_last_warning":5`) || !strings.Contains(out, `"status":401`) || !strings.Contains(out, `"reason":"bad_secret"`) {
		t.Errorf("the warning lacks the count, status or reason:\n%s", out)
	}
	if strings.Contains(out, string(bad)) || strings.Contains(out, string(secret)) || strings.Contains(st.Last.Error(), string(bad)) {
		t.Error("a secret reached the log or the failure")
	}
}

// The simulators' pattern of the 100,000-agent stall: the agent
// heartbeats as soon as its key is saved, and that heartbeat leaves
// before the client uses the key (no key: 401), while the poll loop's
// first poll is slow to reach the server. The client took the 401 for a
// refusal of its new key and enrolled again, which replaced the unused
// key on the server; that answer was lost, so the client held a key the
// server no longer knew, and it never tried to enroll again.
func TestHeartbeatAtEnrollment(t *testing.T) {
	t.Parallel()
	{
		f := newFixture(t, fixtureConfig{})
		rt := &faultRT{next: f.httpClient(t, "").Transport, keyless: make(chan struct{}, 1)}
		var c *httptransport.Client
		c = f.client(t, httptransport.ClientConfig{Device: "dev-1", EnrollSecret: secret, HTTPClient: &http.Client{Transport: rt},
			CheckIn: 20 * time.Millisecond, BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
			SaveKey: func(context.Context, httptransport.Secret) error {
				rt.arm(httptransport.PathEnroll, dropAnswer)
				go func() { _ = c.Send(context.Background(), heartbeat("dev-1")) }()
				select {
				case <-rt.keyless: // the heartbeat left without the key; its 401 comes back after the key is taken
				case <-time.After(300 * time.Millisecond): // (the fixed client sends nothing without a key)
				}
				return nil
			}})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { _ = c.Run(ctx, transport.HandlerFunc(func(context.Context, transport.Message) {})) }()
		ok := false
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if err := c.Send(context.Background(), heartbeat("dev-1")); err == nil {
				ok = true
				break
			}
		}
		cancel()
		if !ok {
			t.Errorf("never got in; %d faults applied; server %+v", rt.hits.Load(), f.srv.Stats())
		}
	}
}

// Rotation answers lost: the device keeps the key it holds, however many
// rotations it asked for without getting the answer, and while it has not
// used a new key nobody can take its identity over with the enrollment
// secret. Before: a rotation stored the new key as not yet used, so any
// holder of the secret could enroll as the device meanwhile (and the
// device's own enrollment after a 401 replaced it), and the second lost
// answer made the key the device holds invalid.
func TestRotationAnswersLost(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureConfig{})
	ctx := context.Background()
	c, key := f.enrolled(t, "dev-1")
	if err := c.Send(ctx, heartbeat("dev-1")); err != nil {
		t.Fatal(err)
	}
	hb := encode(t, heartbeat("dev-1"))
	for i := range 3 {
		// The device asks for a new key; the answer never arrives.
		if code, _ := f.raw(t, http.MethodPost, httptransport.PathRotate, auth("dev-1", key), nil); code != http.StatusOK {
			t.Fatalf("rotation %d: %d", i+1, code)
		}
		if code, reason := f.raw(t, http.MethodPost, httptransport.PathSend, auth("dev-1", key), hb); code != http.StatusNoContent {
			t.Fatalf("the device's key after %d lost rotation answers: %d %q, want 204", i+1, code, reason)
		}
		if _, err := f.enr.Enroll(ctx, "dev-1", secret); !errors.Is(err, httptransport.ErrEnrolled) {
			t.Fatalf("enrolling with the secret as the device after %d lost rotation answers: %v, want ErrEnrolled", i+1, err)
		}
	}
	// The client rotates for real and uses its new key: the old one is
	// done.
	if err := c.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, heartbeat("dev-1")); err != nil {
		t.Fatal(err)
	}
	if code, _ := f.raw(t, http.MethodPost, httptransport.PathSend, auth("dev-1", key), hb); code != http.StatusUnauthorized {
		t.Fatalf("the old key after the new one was used: %d, want 401", code)
	}
}

// barrierKeys lets no key write through until n are waiting together.
type barrierKeys struct {
	httptransport.KeyStore
	n       int32
	arrived atomic.Int32
	all     chan struct{}
}

func (k *barrierKeys) PutKey(ctx context.Context, p httptransport.PutKeyParams) error {
	if k.arrived.Add(1) == k.n {
		close(k.all)
	}
	select {
	case <-k.all:
	case <-time.After(5 * time.Second):
		return errors.New("the other enrollments' writes never came")
	}
	return k.KeyStore.PutKey(ctx, p)
}

// Enrollments of distinct devices never wait for each other: all their
// key writes can be in flight at once (so StoreKeys writes them in one
// batch). Before, the devices' locks were 256 stripes held while the
// write waited for its batch: at most 256 enrollments could share a
// batch, and devices of one stripe waited for each other's commits
// (BenchmarkEnrollConcurrent: 89-105 devices per batch before, 625-770
// after).
func TestEnrollmentsOfDistinctDevicesDoNotWait(t *testing.T) {
	t.Parallel()
	const n = 300
	keys := &barrierKeys{KeyStore: httptransport.NewMemKeyStore(), n: n, all: make(chan struct{})}
	e, err := httptransport.NewEnrollment(httptransport.EnrollmentConfig{Secret: secret, Keys: keys, Rate: 1e6, Burst: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range n {
		wg.Go(func() {
			if _, err := e.Enroll(context.Background(), transport.DeviceID("dev-"+strconv.Itoa(i)), secret); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d enrollments failed: their writes could not be in flight together", failed.Load(), n)
	}
}
