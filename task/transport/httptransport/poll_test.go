package httptransport_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
)

// pollAnswer is what a raw poll got.
type pollAnswer struct {
	code int
	msgs []transport.Message
	err  error
}

// pollAsync starts a raw poll of device (wait seconds) on hc and returns
// its answer's channel.
func (f *fixture) pollAsync(ctx context.Context, hc *http.Client, device transport.DeviceID, key httptransport.Secret, wait string) <-chan pollAnswer {
	out := make(chan pollAnswer, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url+httptransport.PathPoll+"?wait="+wait, nil)
		if err != nil {
			out <- pollAnswer{err: err}
			return
		}
		for k, v := range auth(device, key) {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			out <- pollAnswer{err: err}
			return
		}
		defer resp.Body.Close()
		a := pollAnswer{code: resp.StatusCode}
		if a.code == http.StatusOK {
			a.err = json.NewDecoder(resp.Body).Decode(&a.msgs)
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		out <- a
	}()
	return out
}

func answerOf(t *testing.T, c <-chan pollAnswer) pollAnswer {
	t.Helper()
	select {
	case a := <-c:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("the poll was not answered")
		return pollAnswer{}
	}
}

// A device holds one poll: polls it opens while one is held supersede
// it (409 at once), so that a device cannot pin more than one handler
// and leftovers of dropped connections do not pile up.
func TestPollNewerSupersedesOlder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureConfig{server: httptransport.ServerConfig{MaxWait: time.Minute}})
	_, key := f.enrolled(t, "dev-1")
	hc := f.httpClient(t, "")
	ctx := context.Background()
	const n = 20
	var prev, newest <-chan pollAnswer
	for i := range n {
		newest = f.pollAsync(ctx, hc, "dev-1", key, "60")
		if prev != nil {
			if a := answerOf(t, prev); a.code != http.StatusConflict {
				t.Fatalf("poll %d: %d %v, want 409 (superseded by poll %d)", i-1, a.code, a.err, i)
			}
		}
		waitFor(t, func() bool { return f.srv.Stats().Polling == 1 })
		prev = newest
	}
	if got := f.srv.Stats().Polling; got != 1 {
		t.Errorf("Polling = %d, want 1", got)
	}
	if err := f.srv.Send(ctx, heartbeat("dev-1")); err != nil {
		t.Fatal(err)
	}
	if a := answerOf(t, newest); a.code != http.StatusOK || len(a.msgs) != 1 || a.msgs[0].Kind != transport.Heartbeat {
		t.Errorf("newest poll: %d %+v %v, want the heartbeat", a.code, a.msgs, a.err)
	}
}

// A poll whose request ended (the device's connection dropped, or its
// client gave up) takes nothing: what is queued goes to the device's next
// poll.
func TestPollOfDeparted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureConfig{server: httptransport.ServerConfig{MaxWait: time.Minute}})
	_, key := f.enrolled(t, "dev-1")
	hc := f.httpClient(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	gone := f.pollAsync(ctx, hc, "dev-1", key, "60")
	waitFor(t, func() bool { return f.srv.Stats().Polling == 1 })
	cancel()
	if a := answerOf(t, gone); a.err == nil {
		t.Fatalf("canceled poll answered %d", a.code)
	}
	// The server learns of the reset a moment later; until then the
	// departed poll would take a message like any other. Give it time.
	time.Sleep(200 * time.Millisecond)
	if err := f.srv.Send(context.Background(), heartbeat("dev-1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return f.srv.Stats().Polling == 0 })
	if st := f.srv.Stats(); st.Sent != 0 {
		t.Fatalf("Sent = %d: the departed poll took the message", st.Sent)
	}
	next := f.pollAsync(context.Background(), hc, "dev-1", key, "60")
	if a := answerOf(t, next); a.code != http.StatusOK || len(a.msgs) != 1 {
		t.Errorf("next poll: %d %+v %v, want the heartbeat", a.code, a.msgs, a.err)
	}
}
