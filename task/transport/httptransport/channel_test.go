package httptransport_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
)

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBodyLimits(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureConfig{})
	_, key := f.enrolled(t, "dev-1")
	hdr := auth("dev-1", key)
	big := append(append([]byte(`{"kind":"events","events":[{"message":"`), bytes.Repeat([]byte("x"), transport.MaxMessageBytes)...), `"}]}`...)
	for _, tc := range []struct {
		name string
		enc  string
		body []byte
		want int
	}{
		{"over MaxMessageBytes", "", big, http.StatusRequestEntityTooLarge},
		{"not JSON", "", []byte("{{{"), http.StatusBadRequest},
		{"no kind", "", []byte(`{"version":2}`), http.StatusBadRequest},
		{"unknown encoding", "br", encode(t, heartbeat("dev-1")), http.StatusUnsupportedMediaType},
		{"gzip that is not", "gzip", []byte("plain"), http.StatusBadRequest},
		{"gzipped, over MaxMessageBytes decoded", "gzip", gz(t, big), http.StatusRequestEntityTooLarge},
	} {
		h := map[string]string{}
		for k, v := range hdr {
			h[k] = v
		}
		if tc.enc != "" {
			h["Content-Encoding"] = tc.enc
		}
		if code, _ := f.raw(t, http.MethodPost, httptransport.PathSend, h, tc.body); code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.want)
		}
	}
	if n := len(f.rec.all()); n != 0 {
		t.Errorf("handler got %d messages from refused bodies", n)
	}
	if st := f.srv.Stats(); st.Malformed != 6 {
		t.Errorf("Stats.Malformed = %d, want 6", st.Malformed)
	}
	// An enrollment request is bounded too.
	if code, _ := f.raw(t, http.MethodPost, httptransport.PathEnroll, nil, bytes.Repeat([]byte(" "), 1<<20)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a 1 MiB enrollment: %d, want 413", code)
	}
	// The client refuses a message over the limit with ErrRefused, not
	// ErrUnreachable: resending cannot help.
	c, _ := f.enrolled(t, "dev-2")
	m := transport.Message{Kind: transport.Events, Events: []transport.Event{{TaskID: "t", Message: strings.Repeat("é", transport.MaxMessageBytes/2+1)}}}
	if err := c.Send(context.Background(), m); !errors.Is(err, httptransport.ErrRefused) {
		t.Errorf("Send of an oversized message: %v, want ErrRefused", err)
	}
}

// A gzip bomb (128 MiB of zeros in about 128 KiB) is cut off at
// MaxMessageBytes decoded: 413, and the server does not inflate it all.
func TestGzipBomb(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureConfig{})
	_, key := f.enrolled(t, "dev-1")
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 128 {
		_, _ = zw.Write(zeros)
	}
	_ = zw.Close()
	if buf.Len() > transport.MaxMessageBytes {
		t.Fatalf("the bomb is %d bytes compressed", buf.Len())
	}
	h := auth("dev-1", key)
	h["Content-Encoding"] = "gzip"
	start := time.Now()
	if code, _ := f.raw(t, http.MethodPost, httptransport.PathSend, h, buf.Bytes()); code != http.StatusRequestEntityTooLarge {
		t.Errorf("gzip bomb: %d, want 413", code)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the bomb took %s: inflated beyond the limit?", d)
	}
	if n := len(f.rec.all()); n != 0 {
		t.Errorf("handler got %d messages", n)
	}
	// An honest compressed message goes through (the client gzips 1 KiB
	// and more).
	c, _ := f.enrolled(t, "dev-2")
	m := transport.Message{Kind: transport.Events, Key: "k", Events: []transport.Event{{TaskID: "t", Level: "info", Severity: "info", Message: strings.Repeat("progress ", 400)}}}
	if err := c.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := f.rec.all()
	if len(got) != 1 || got[0].Events[0].Message != m.Events[0].Message {
		t.Errorf("the gzipped message arrived as %+v", got)
	}
}

// A held poll is answered as soon as something is queued; an idle one
// after its wait; a device that never polled is unreachable.
func TestLongPoll(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureConfig{server: httptransport.ServerConfig{MaxWait: 2 * time.Second}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := f.srv.Send(ctx, transport.Message{Kind: transport.Wake, Device: "dev-1"}); !errors.Is(err, transport.ErrUnreachable) {
		t.Errorf("Send to a device that never polled: %v, want ErrUnreachable", err)
	}
	c, _ := f.enrolled(t, "dev-1")
	got := make(chan time.Time, 10)
	go func() {
		_ = c.Run(ctx, transport.HandlerFunc(func(_ context.Context, m transport.Message) {
			if m.Kind == transport.StartRun {
				got <- time.Now()
			}
		}))
	}()
	waitFor(t, func() bool { return f.srv.Stats().Polling == 1 })
	time.Sleep(300 * time.Millisecond) // the poll is held
	sent := time.Now()
	if err := f.srv.Send(ctx, transport.Message{Kind: transport.StartRun, Device: "dev-1", Start: &transport.Start{TaskID: "t", RunID: 1}}); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-got:
		if d := at.Sub(sent); d > time.Second {
			t.Errorf("the start arrived %s after Send, want at once", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the start never arrived")
	}
	if !f.srv.Connected("dev-1") || f.srv.Connected("dev-2") {
		t.Error("Connected is wrong")
	}
	// Idle polls are answered empty after MaxWait and renewed.
	p := f.srv.Stats().Polls
	waitFor(t, func() bool { return f.srv.Stats().Polls >= p+1 })
}

func TestPollWaitParameter(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureConfig{})
	_, key := f.enrolled(t, "dev-1")
	for _, q := range []string{"-1", "x", "1e9", "99999999"} {
		if code, _ := f.raw(t, http.MethodGet, httptransport.PathPoll+"?wait="+q, auth("dev-1", key), nil); code != http.StatusBadRequest {
			t.Errorf("wait=%s: %d, want 400", q, code)
		}
	}
	start := time.Now()
	if code, _ := f.raw(t, http.MethodGet, httptransport.PathPoll+"?wait=999", auth("dev-1", key), nil); code != http.StatusOK {
		t.Errorf("wait=999: %d, want 200 after MaxWait", code)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("wait=999 held %s, want MaxWait (2s)", d)
	}
}

func TestBackoffIsJitteredAndBounded(t *testing.T) {
	t.Parallel()
	c, err := httptransport.NewClient(httptransport.ClientConfig{URL: "https://127.0.0.1:1", Device: "d", BackoffMin: time.Second, BackoffMax: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 12; n++ {
		ceil := min(time.Minute, time.Second<<(n-1))
		seen := map[time.Duration]bool{}
		for range 50 {
			d := c.Backoff(n)
			if d < ceil/2 || d > ceil {
				t.Fatalf("Backoff(%d) = %s, want within [%s, %s]", n, d, ceil/2, ceil)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("Backoff(%d): %d distinct delays in 50, want jitter", n, len(seen))
		}
	}
	if d := c.Backoff(1000); d > time.Minute {
		t.Errorf("Backoff(1000) = %s", d)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal("timed out")
}

// An agent that cannot hold a connection checks in every CheckIn: its
// polls are answered at once (none is held), and a start reaches it at
// its next check-in.
func TestCheckInMode(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureConfig{server: httptransport.ServerConfig{MaxWait: 10 * time.Second}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := f.client(t, httptransport.ClientConfig{Device: "dev-1", EnrollSecret: secret, CheckIn: 300 * time.Millisecond})
	got := make(chan struct{}, 1)
	go func() {
		_ = c.Run(ctx, transport.HandlerFunc(func(_ context.Context, m transport.Message) {
			if m.Kind == transport.StartRun {
				got <- struct{}{}
			}
		}))
	}()
	waitFor(t, func() bool { return f.srv.Connected("dev-1") })
	for range 10 {
		if n := f.srv.Stats().Polling; n != 0 {
			t.Fatalf("%d polls held in check-in mode", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := f.srv.Send(ctx, transport.Message{Kind: transport.StartRun, Device: "dev-1", Start: &transport.Start{TaskID: "t", RunID: 1}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the start did not arrive at a check-in")
	}
	if p := f.srv.Stats().Polls; p < 3 {
		t.Errorf("%d check-ins, want one every 300 ms", p)
	}
}
