package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer collects the program's output while it serves.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestServeConsole runs the quickstart with -serve on a loopback port,
// loads the console's task list and a task page, starts a task through
// the console's form and stops the program.
func TestServeConsole(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-devices", "20", "-days", "1", "-progress=false", "-db", filepath.Join(dir, "q.db"), "-serve", "127.0.0.1:0"}, out)
	}()
	addrRE := regexp.MustCompile(`Console: (http://\S+/console/)`)
	var base string
	for deadline := time.Now().Add(60 * time.Second); base == ""; {
		if m := addrRE.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run returned before serving: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no console address in the output:\n%s", out.String())
		}
	}
	get := func(u string) string {
		t.Helper()
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d", u, res.StatusCode)
		}
		return string(b)
	}
	list := get(base)
	for _, want := range []string{"Friday virus scan", "Endpoint Security", "Administration Server"} {
		if !strings.Contains(list, want) {
			t.Errorf("console list lacks %q", want)
		}
	}
	m := regexp.MustCompile(`href="/console/tasks/([^"]+)">Install Endpoint Security`).FindStringSubmatch(list)
	if m == nil {
		t.Fatalf("no install task in the list:\n%s", list)
	}
	page := get(base + "tasks/" + m[1])
	if !strings.Contains(page, `id="act-start"`) {
		t.Fatal("the task page has no start button")
	}
	// Start it through the form, with the session cookie and its token.
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Get(base + "tasks/" + m[1])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(string(b))
	if tok == nil {
		t.Fatal("no CSRF token")
	}
	res, err = client.PostForm(base+"tasks/"+m[1]+"/start", url.Values{"csrf": {tok[1]}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST start = %d", res.StatusCode)
	}
	// The fleet keeps running: the new run's devices move on from the
	// states they had right after the start.
	stateRE := regexp.MustCompile(`data-state="([a-z_]+)"><td><span class="pill [a-z]+">[a-z_]+</span></td><td class="n">([0-9,]+)<`)
	states := func() string {
		var parts []string
		for _, row := range stateRE.FindAllStringSubmatch(get(base+"tasks/"+m[1]+"/live"), -1) {
			parts = append(parts, row[1]+"="+row[2])
		}
		return strings.Join(parts, " ")
	}
	first := states()
	if first == "" {
		t.Fatal("no device states right after the start")
	}
	for deadline := time.Now().Add(30 * time.Second); states() == first; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s the states are still %s: the simulated fleet does not run", first)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
