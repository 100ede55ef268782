package httptransport_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
)

// benchServer is a Server with n enrolled devices and a handler that
// does nothing: the channel's own cost, without TLS and the engine.
func benchServer(b *testing.B, n int) (*httptransport.Server, []transport.DeviceID, []httptransport.Secret) {
	b.Helper()
	ctx := context.Background()
	enr, err := httptransport.NewEnrollment(httptransport.EnrollmentConfig{Secret: secret, Rate: 1e9, Burst: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := httptransport.NewServer(httptransport.ServerConfig{Identity: enr})
	if err != nil {
		b.Fatal(err)
	}
	srv.Attach(transport.HandlerFunc(func(context.Context, transport.Message) {}))
	ids := make([]transport.DeviceID, n)
	keys := make([]httptransport.Secret, n)
	for i := range n {
		ids[i] = transport.DeviceID(fmt.Sprintf("dev-%06d", i))
		if keys[i], err = enr.Enroll(ctx, ids[i], secret); err != nil {
			b.Fatal(err)
		}
	}
	return srv, ids, keys
}

// BenchmarkStartDelivery: the engine sends a StartRun to a device and
// the device's poll takes it (authentication, queue, JSON answer): the
// channel's cost per delivered start.
func BenchmarkStartDelivery(b *testing.B) {
	const n = 1000
	srv, ids, keys := benchServer(b, n)
	ctx := context.Background()
	polls := make([]*http.Request, n)
	for i := range n {
		r := httptest.NewRequest(http.MethodGet, httptransport.PathPoll+"?wait=0", nil)
		r.Header.Set(httptransport.HeaderDevice, string(ids[i]))
		r.Header.Set("Authorization", "Bearer "+string(keys[i]))
		polls[i] = r
		srv.ServeHTTP(httptest.NewRecorder(), r) // connected
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		d := i % n
		m := transport.Message{Kind: transport.StartRun, Device: ids[d], Key: "k", Start: &transport.Start{TaskID: "task-1", RunID: int64(i), At: time.Now(), Manual: true}}
		if err := srv.Send(ctx, m); err != nil {
			b.Fatal(err)
		}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, polls[d])
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "starts/s")
}

// BenchmarkResultIntake: a device POSTs a one-result message
// (authentication, bounded read, decode): the channel's cost per result
// message before the engine sees it.
func BenchmarkResultIntake(b *testing.B) {
	const n = 1000
	srv, ids, keys := benchServer(b, n)
	body, err := transport.Encode(transport.Message{Kind: transport.Results, Key: "r/t/1/2", Merged: []string{"r/t/1/2"},
		Results: []transport.Result{{TaskID: "task-1", RunID: 1, Seq: 2, State: "completed", FinishedAt: time.Now().UTC(), Progress: 100}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		d := i % n
		r := httptest.NewRequest(http.MethodPost, httptransport.PathSend, bytes.NewReader(body))
		r.Header.Set(httptransport.HeaderDevice, string(ids[d]))
		r.Header.Set("Authorization", "Bearer "+string(keys[d]))
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		if w.Code != http.StatusNoContent {
			b.Fatal(w.Code)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "messages/s")
}

// BenchmarkStartDeliveryGzip: as BenchmarkStartDelivery, with what the
// engine sends (the StartRun carries the task's definition, so the answer
// is over the 1 KiB compression threshold) to a device that accepts gzip,
// as every Client does: the cost of a compressed poll answer.
func BenchmarkStartDeliveryGzip(b *testing.B) {
	const n = 1000
	srv, ids, keys := benchServer(b, n)
	ctx := context.Background()
	polls := make([]*http.Request, n)
	for i := range n {
		r := httptest.NewRequest(http.MethodGet, httptransport.PathPoll+"?wait=0", nil)
		r.Header.Set(httptransport.HeaderDevice, string(ids[i]))
		r.Header.Set("Authorization", "Bearer "+string(keys[i]))
		r.Header.Set("Accept-Encoding", "gzip")
		polls[i] = r
		srv.ServeHTTP(httptest.NewRecorder(), r) // connected
	}
	def := &transport.Definition{Task: transport.TaskSpec{ID: "task-1", Name: "Virus scan", Application: "Endpoint Security", Type: "virus_scan",
		Description: strings.Repeat("Scans the device's disks for threats. ", 40)}, Devices: n}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		d := i % n
		m := transport.Message{Kind: transport.StartRun, Device: ids[d], Key: "k", Start: &transport.Start{TaskID: "task-1", RunID: int64(i), At: time.Now(), Manual: true}, Definition: def}
		if err := srv.Send(ctx, m); err != nil {
			b.Fatal(err)
		}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, polls[d])
		if w.Code != http.StatusOK || w.Header().Get("Content-Encoding") != "gzip" {
			b.Fatal(w.Code, w.Header())
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "starts/s")
}

// BenchmarkStatsBeside: what Stats, counting 100,000 connected devices,
// costs the channel's other callers: the time Connected (which takes the
// lock Send and every poll take) waits while another goroutine calls
// Stats over and over (each iteration first sleeps 100 µs, so that the
// calls spread over many of Stats').
func BenchmarkStatsBeside(b *testing.B) {
	const n = 100000
	srv, ids, keys := benchServer(b, n)
	for i := range n {
		r := httptest.NewRequest(http.MethodGet, httptransport.PathPoll+"?wait=0", nil)
		r.Header.Set(httptransport.HeaderDevice, string(ids[i]))
		r.Header.Set("Authorization", "Bearer "+string(keys[i]))
		srv.ServeHTTP(httptest.NewRecorder(), r) // connected
	}
	if got := srv.Stats().Connected; got != n {
		b.Fatalf("Connected = %d, want %d", got, n)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				_ = srv.Stats()
			}
		}
	}()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		time.Sleep(100 * time.Microsecond) // spread over many Stats calls
		t0 := time.Now()
		if !srv.Connected(ids[i%n]) {
			b.Fatal("not connected")
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	close(stop)
	<-done
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
}

// BenchmarkEnrollConcurrent: a fleet enrolling at once (4,000 devices in
// flight) into StoreKeys on SQLite, the load test's enrollment storm.
// Reports enrollments/s and the devices per store call (the batches).
func BenchmarkEnrollConcurrent(b *testing.B) {
	ctx := context.Background()
	st, err := sqlstore.OpenSQLite(ctx, filepath.Join(b.TempDir(), "keys.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	c := &countingKeys{Store: st}
	e, err := httptransport.NewEnrollment(httptransport.EnrollmentConfig{Secret: secret, Keys: httptransport.StoreKeys(c, httptransport.StoreKeysConfig{}), Rate: 1e9, Burst: 1e9})
	if err != nil {
		b.Fatal(err)
	}
	const inFlight = 4000
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for range inFlight {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if _, err := e.Enroll(ctx, transport.DeviceID(fmt.Sprintf("dev-%07d", i)), secret); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "enrollments/s")
	b.ReportMetric(float64(c.items.Load())/float64(max(c.calls.Load(), 1)), "devices/batch")
}
