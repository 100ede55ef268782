package httptransport_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
)

// reorderEnroll sits in front of the channel's handler: the first
// enrollment is processed (its key issued) at once but answered only
// after the client saved another key, or after a second; polls are held
// until the client hangs up, so the poll loop cannot heal what the
// enrollments left behind.
type reorderEnroll struct {
	h       http.Handler
	enrolls atomic.Int32
	firstIn chan struct{}
	saved   chan struct{}
	polled  chan struct{}
}

func (x *reorderEnroll) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case httptransport.PathPoll:
		select {
		case x.polled <- struct{}{}:
		default:
		}
		<-r.Context().Done()
		return
	case httptransport.PathEnroll:
		rec := httptest.NewRecorder()
		x.h.ServeHTTP(rec, r)
		if x.enrolls.Add(1) == 1 {
			close(x.firstIn)
			select {
			case <-x.saved: // a later enrollment's key was saved first
			case <-time.After(time.Second):
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	x.h.ServeHTTP(w, r)
}

// The poll loop's first enrollment and a Send refused with 401 enroll at
// the same moment, and the server answers the first enrollment last: the
// client must end with the key the server issued last. Without the
// client's enrollment lock (enrollMu) both enrollments are in flight, the
// key of the first is saved last, the server knows only the second, and
// the device is locked out (401 with the key it saved).
func TestEnrollmentRacePollLoopAndSend(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureConfig{})
	x := &reorderEnroll{h: f.srv, firstIn: make(chan struct{}), saved: make(chan struct{}, 8), polled: make(chan struct{}, 1)}
	cert, err := f.ca.Server(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(x)
	ts.EnableHTTP2 = true
	ts.TLS = httptransport.ServerTLS(cert, f.ca.Pool)
	ts.StartTLS()
	t.Cleanup(ts.Close)

	var mu sync.Mutex
	var keys []httptransport.Secret
	c := f.client(t, httptransport.ClientConfig{URL: ts.URL, Device: "dev-1", EnrollSecret: secret, Wait: time.Second,
		SaveKey: func(_ context.Context, k httptransport.Secret) error {
			mu.Lock()
			keys = append(keys, k)
			mu.Unlock()
			x.saved <- struct{}{}
			return nil
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, transport.HandlerFunc(func(context.Context, transport.Message) {})) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	<-x.firstIn                                          // the poll loop's enrollment is in flight
	_ = c.Send(context.Background(), heartbeat("dev-1")) // no key yet: 401, and the Send enrolls
	select {
	case <-x.polled: // the poll loop enrolled and polls
	case <-time.After(10 * time.Second):
		t.Fatal("the poll loop did not poll after enrolling")
	}
	mu.Lock()
	got := append([]httptransport.Secret(nil), keys...)
	mu.Unlock()
	if len(got) == 0 {
		t.Fatal("no key saved")
	}
	last := got[len(got)-1]
	if code, reason := f.raw(t, http.MethodPost, httptransport.PathSend, auth("dev-1", last), encode(t, heartbeat("dev-1"))); code != http.StatusNoContent {
		t.Fatalf("the key the client saved last (of %d saved) is refused: %d %q; %d enrollments reached the server", len(got), code, reason, x.enrolls.Load())
	}
	if n := x.enrolls.Load(); n != 1 {
		t.Errorf("%d enrollments reached the server, want 1", n)
	}
}
