package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task/transport"
)

// startServer runs the example's server in process and returns its base
// URL.
func startServer(t *testing.T, key string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, options{mode: "server", addr: "127.0.0.1:0", db: filepath.Join(t.TempDir(), "server.db"), devices: 3, key: key}, out)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	re := regexp.MustCompile(`LISTEN (http://127\.0\.0\.1:\d+)`)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
	}
	t.Fatalf("the server did not start:\n%s", out.String())
	return ""
}

func post(t *testing.T, base string, dev scope.DeviceID, token string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/send?device="+string(dev), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func getStatus(t *testing.T, base string) status {
	t.Helper()
	resp, err := http.Get(base + "/admin/status")
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

// Over HTTP, an unauthenticated 4 MB POST of 38,003 results stores
// nothing; so does a device posting them with a wrong or another
// device's token; a device's own flood is cut at transport.MaxItems and
// its items (runs nobody started) are rejected and counted; a body over
// transport.MaxMessageBytes is refused before it is decoded.
func TestHostileHTTPPostsStoreNothing(t *testing.T) {
	t.Parallel()
	const key = "test-fleet-key"
	base := startServer(t, key)
	resp, err := http.Post(base+"/admin/start", "", nil) // the scan task gets a run
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(300 * time.Millisecond) // the engine records the scheduled results
	st := getStatus(t, base)
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
		name  string
		dev   scope.DeviceID
		token string
		want  int
	}{
		{"no token", "dev-2", "", http.StatusUnauthorized},
		{"wrong token", "dev-2", "0123", http.StatusUnauthorized},
		{"another device's token", "dev-2", deviceToken(key, "dev-1"), http.StatusUnauthorized},
		{"its own token", "dev-1", deviceToken(key, "dev-1"), http.StatusNoContent},
	} {
		if got := post(t, base, c.dev, c.token, flood); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}
	huge := append(results(scan, "dev-1", 1), bytes.Repeat([]byte(" "), transport.MaxMessageBytes)...)
	if got := post(t, base, "dev-1", deviceToken(key, "dev-1"), huge); got != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over MaxMessageBytes: status %d, want 413", got)
	}
	time.Sleep(300 * time.Millisecond) // the engine ticks every 100 ms
	st = getStatus(t, base)
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
