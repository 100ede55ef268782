package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/console"
)

// chromiumPath finds Debian's chromium (installed by .ci/run when
// missing). Without it the browser test is skipped on a developer's
// machine and fails in CI (CI set).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; .ci/run installs it with apt-get")
	}
	t.Skip("chromium is not installed (apt-get install chromium); CI runs this test")
	return ""
}

// TestBrowser drives the console in headless Chromium: load the task
// list, open a task, start it, watch the statistics change without a
// reload, compare two revisions and roll back. Screenshots of each page
// go to t.ArtifactDir() (go test -artifacts keeps them) and, when
// TASKFLEET_CONSOLE_SCREENSHOTS names a directory, there too.
func TestBrowser(t *testing.T) {
	exe := chromiumPath(t)
	f := setup(t, setupOptions{prefix: "/console", cfg: func(c *console.Config) {
		c.Refresh = 250 * time.Millisecond
		c.Actor = func(*http.Request) (task.Actor, error) { return task.Actor{ID: "admin"}, nil }
	}})
	mux := http.NewServeMux()
	mux.Handle("/console/", f.c)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(cancelB)
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	t.Cleanup(cancel)

	dirs := []string{t.ArtifactDir()}
	if d := os.Getenv("TASKFLEET_CONSOLE_SCREENSHOTS"); d != "" {
		must(t, os.MkdirAll(d, 0o755))
		dirs = append(dirs, d)
	}
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg) // quality 100: PNG (lower is JPEG)
			if err != nil {
				return err
			}
			for _, d := range dirs {
				if err := os.WriteFile(filepath.Join(d, name+".png"), png, 0o644); err != nil {
					return err
				}
			}
			return nil
		})
	}
	run := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	// text reads an element's visible text in one script, once the element
	// is there: the live refresh replaces the statistics and results
	// fragments every Refresh, so a node looked up in one DevTools call can
	// be gone by the next ("No node with given id found").
	text := func(sel string) string {
		t.Helper()
		q, err := json.Marshal(sel)
		must(t, err)
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector(`+string(q)+`) !== null`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
			t.Fatalf("wait for %s: %v", sel, err)
		}
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector(`+string(q)+`) || {innerText: ""}).innerText`))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}

	// The task list, grouped by application and type.
	run("task list", chromedp.Navigate(srv.URL+"/console/"), chromedp.WaitVisible(chromedp.CSS(`tr[data-task="`+f.global.ID+`"]`)), shot("01-task-list"))
	if s := text("main"); !strings.Contains(s, "Endpoint Security") || !strings.Contains(s, "Nightly backup") {
		t.Fatalf("task list text: %s", s)
	}

	// Open the global task and start it.
	run("open task", chromedp.Click(chromedp.CSS(`a[href="/console/tasks/`+f.global.ID+`"]`)), chromedp.WaitVisible(chromedp.CSS(`#act-start`)), shot("02-task-page"))
	if got := text("#stat-total"); got != "0" {
		t.Fatalf("devices before start = %q", got)
	}
	run("start", chromedp.Click(chromedp.CSS(`#act-start`)), chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
	if got := text("p.notice"); got != "The task was started." {
		t.Fatalf("notice after start = %q", got)
	}
	if got := text("#stat-total"); got != "12" {
		t.Fatalf("devices after start = %q", got)
	}
	if got := text("#stat-complete"); got != "0.0%" {
		t.Fatalf("complete after start = %q", got)
	}

	// The engine reports: half the devices complete. The page updates
	// without a reload.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.__marker = "same page"`)); err != nil {
		t.Fatal(err)
	}
	complete(t, f, f.global.ID, 6)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("stat-complete").textContent.trim() === "50.0%"`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("the statistics did not change to 50%%: %v (page says %q)", err, text("#stat-complete"))
	}
	run("progress screenshot", shot("03-task-progress"))
	marker, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.__marker || ""`))
	if err != nil {
		t.Fatal(err)
	}
	if marker != "same page" {
		t.Fatal("the page was reloaded to show the new statistics")
	}

	// A device's run history.
	// The results fragment is replaced every refresh, so a click can
	// land on a node that is gone: check the link is there, then follow
	// its address.
	link := `/console/tasks/` + f.global.ID + `/devices/dev-001`
	if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('a[href="`+link+`"]') !== null`)); err != nil || !ok {
		t.Fatalf("the results list has no link to dev-001's page (%v)", err)
	}
	run("device page", chromedp.Navigate(srv.URL+link), chromedp.WaitVisible(chromedp.CSS(`table.events`)), shot("04-device"))

	// Compare the group task's two revisions, then roll back to the first.
	run("group task", chromedp.Navigate(srv.URL+"/console/tasks/"+f.group.ID), chromedp.WaitVisible(chromedp.CSS(`#act-compare`)),
		chromedp.Navigate(srv.URL+"/console/tasks/"+f.group.ID+"?zone_device=dev-001&explain=dev-002"), chromedp.WaitVisible(chromedp.CSS(`#act-compare`)), shot("05-group-task"))
	run("compare", chromedp.Click(chromedp.CSS(`#act-compare`)), chromedp.WaitVisible(chromedp.CSS(`#diff`)), shot("06-compare"))
	if d := text("#diff"); !strings.Contains(d, "settings.max_file_size_mb") || !strings.Contains(d, "250") || strings.Contains(d, secretProxyPassword) {
		t.Fatalf("diff: %s", d)
	}
	run("roll back", chromedp.Click(chromedp.CSS(`#rollback-1`)), chromedp.WaitVisible(chromedp.CSS(`p.notice`)), shot("07-rolled-back"))
	if got := text("p.notice"); got != "The revision was restored as a new revision." {
		t.Fatalf("notice after roll back = %q", got)
	}
	tk, err := f.m.Get(f.ctx, f.admin, f.group.ID)
	must(t, err)
	if s := tk.Settings.(*ScanSettings); tk.Revision != 3 || s.MaxFileSizeMB != 100 || s.Action != "disinfect" {
		t.Fatalf("after roll back: revision %d, settings %+v", tk.Revision, *s)
	}
	run("import page", chromedp.Navigate(srv.URL+"/console/import"), chromedp.WaitVisible(chromedp.CSS(`#act-preview`)), shot("08-import"))
}
