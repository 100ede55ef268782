package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport/testpki"
)

// server is the example's server run in process.
type server struct {
	channel, admin string
	pki, secret    string
}

// startServer runs the example's server in process.
func startServer(t *testing.T) server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	dir := t.TempDir()
	if err := writePKI(dir); err != nil {
		t.Fatal(err)
	}
	srv := server{pki: dir, secret: "test-enrollment-secret-0123456789"}
	go func() {
		done <- serve(ctx, options{mode: "server", addr: "127.0.0.1:0", admin: "127.0.0.1:0", db: filepath.Join(dir, "server.db"), devices: 3, pki: dir, secret: srv.secret}, out)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	re := regexp.MustCompile(`LISTEN (https://127\.0\.0\.1:\d+) ADMIN (http://127\.0\.0\.1:\d+)`)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			srv.channel, srv.admin = m[1], m[2]
			return srv
		}
	}
	t.Fatalf("the server did not start:\n%s", out.String())
	return srv
}

func (s server) httpClient(t *testing.T) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(s.pki, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return httptransport.NewHTTPClient(&tls.Config{RootCAs: testpki.PoolFromPEM(pem)})
}

// enroll returns a key of dev.
func (s server) enroll(t *testing.T, dev scope.DeviceID) httptransport.Secret {
	t.Helper()
	var key httptransport.Secret
	c, err := httptransport.NewClient(httptransport.ClientConfig{URL: s.channel, Device: dev, HTTPClient: s.httpClient(t), EnrollSecret: httptransport.Secret(s.secret),
		SaveKey: func(_ context.Context, k httptransport.Secret) error { key = k; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	return key
}

func (s server) post(t *testing.T, dev scope.DeviceID, key httptransport.Secret, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.channel+httptransport.PathSend, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(httptransport.HeaderDevice, string(dev))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+string(key))
	}
	resp, err := s.httpClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (s server) status(t *testing.T) status {
	t.Helper()
	resp, err := http.Get(s.admin + "/admin/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// results returns a Results message of n results of task id for dev.
func results(id string, dev scope.DeviceID, n int) []byte {
	var b strings.Builder
	b.WriteString(`{"kind":"results","key":"flood","results":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"task_id":%q,"device_id":%q,"run_id":%d,"seq":2,"state":"completed"}`, id, dev, 4*int64(i+1)+1)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// Over HTTPS, an unauthenticated 4 MB POST of 38,003 results stores
// nothing; so does a device posting them with a wrong key or with its
// key under another device's id; a device's own flood is cut at transport.MaxItems and
// its items (runs nobody started) are rejected and counted; a body over
// transport.MaxMessageBytes is refused before it is decoded.
func TestHostileHTTPPostsStoreNothing(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	key1 := srv.enroll(t, "dev-1")
	resp, err := http.Post(srv.admin+"/admin/start", "", nil) // the scan task gets a run
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(300 * time.Millisecond) // the engine records the scheduled results
	st := srv.status(t)
	if len(st.Results) == 0 {
		t.Fatal("no results after the start")
	}
	scan := st.Results[0].TaskID
	before := map[scope.DeviceID]string{}
	for _, r := range st.Results {
		before[r.DeviceID] = string(r.State) + fmt.Sprint(r.RunID, "/", r.Seq)
	}
	flood := results(scan, "dev-2", 38_003)
	if len(flood) < 3<<20 {
		t.Fatalf("the flood is %d bytes", len(flood))
	}
	for _, c := range []struct {
		name string
		dev  scope.DeviceID
		key  httptransport.Secret
		want int
	}{
		{"no key", "dev-2", "", http.StatusUnauthorized},
		{"wrong key", "dev-2", "0123", http.StatusUnauthorized},
		{"another device's key", "dev-2", key1, http.StatusUnauthorized},
		{"its own key", "dev-1", key1, http.StatusNoContent},
	} {
		if got := srv.post(t, c.dev, c.key, flood); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}
	huge := append(results(scan, "dev-1", 1), bytes.Repeat([]byte(" "), transport.MaxMessageBytes)...)
	if got := srv.post(t, "dev-1", key1, huge); got != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over MaxMessageBytes: status %d, want 413", got)
	}
	time.Sleep(300 * time.Millisecond) // the engine ticks every 100 ms
	st = srv.status(t)
	if len(st.Results) != len(before) {
		t.Errorf("%d result rows, want %d", len(st.Results), len(before))
	}
	for _, r := range st.Results {
		if got := string(r.State) + fmt.Sprint(r.RunID, "/", r.Seq); got != before[r.DeviceID] {
			t.Errorf("%s: result %s, want %s", r.DeviceID, got, before[r.DeviceID])
		}
	}
	if st.Hub.Unauthenticated != 3 || st.Hub.Malformed != 1 {
		t.Errorf("hub counted %d unauthenticated and %d malformed requests, want 3 and 1", st.Hub.Unauthenticated, st.Hub.Malformed)
	}
	if st.Engine.Rejected != 38_003 {
		t.Errorf("the engine rejected %d items, want 38003 (1000 checked, the rest over the limit)", st.Engine.Rejected)
	}
}
