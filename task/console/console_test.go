package console_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/console"
)

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{})
	for _, tc := range []struct {
		name  string
		cfg   console.Config
		field string
	}{
		{"no manager", console.Config{Actor: actorFromHeader}, "Manager"},
		{"no actor", console.Config{Manager: f.m}, "Actor"},
		{"page size", console.Config{Manager: f.m, Actor: actorFromHeader, PageSize: console.MaxPageSize + 1}, "PageSize"},
		{"upcoming", console.Config{Manager: f.m, Actor: actorFromHeader, Upcoming: -1}, "Upcoming"},
		{"prefix", console.Config{Manager: f.m, Actor: actorFromHeader, Prefix: "console/"}, "Prefix"},
		{"short key", console.Config{Manager: f.m, Actor: actorFromHeader, CSRFKey: []byte("short")}, "CSRFKey"},
	} {
		_, err := console.New(tc.cfg)
		if !errors.Is(err, task.ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: New = %v, want ErrInvalid naming %s", tc.name, err, tc.field)
		}
	}
}

func TestListGroupsByApplicationAndType(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{})
	c := f.client("admin")
	r := c.getURL("/")
	if r.code != http.StatusOK {
		t.Fatalf("GET / = %d: %s", r.code, r.body)
	}
	for _, want := range []string{"<h2>Administration Server</h2>", "<h2>Endpoint Security</h2>", "<h3>virus_scan</h3>", "<h3>backup</h3>", "Office scan", "Lab scan", "Nightly backup"} {
		if !r.has(want) {
			t.Errorf("task list lacks %q", want)
		}
	}
	if strings.Index(r.body, "Administration Server</h2>") > strings.Index(r.body, "Endpoint Security</h2>") {
		t.Error("applications are not in name order")
	}
	for _, tc := range []struct {
		query    string
		want     []string
		dontWant []string
	}{
		{"?kind=group", []string{"Office scan"}, []string{"Lab scan", "Nightly backup"}},
		{"?kind=server", []string{"Nightly backup"}, []string{"Office scan", "Lab scan"}},
		{"?group=office", []string{"Office scan"}, []string{"Lab scan"}},
		{"?app=Administration+Server", []string{"Nightly backup"}, []string{"Office scan"}},
		{"?state=idle", []string{"Office scan", "Lab scan"}, nil},
		{"?state=suspended", nil, []string{"Office scan", "Lab scan"}},
		{"?name=lab", []string{"Lab scan"}, []string{"Office scan"}},
	} {
		r := c.getURL("/" + tc.query)
		if r.code != http.StatusOK {
			t.Fatalf("GET /%s = %d", tc.query, r.code)
		}
		for _, w := range tc.want {
			if !r.has(w) {
				t.Errorf("%s: lacks %q", tc.query, w)
			}
		}
		for _, w := range tc.dontWant {
			if r.has(w) {
				t.Errorf("%s: shows %q", tc.query, w)
			}
		}
	}
}

func TestListStateFilterFollowsRuns(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{})
	if _, err := f.m.Start(f.ctx, f.admin, f.global.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Suspend(f.ctx, f.admin, f.group.ID); err != nil {
		t.Fatal(err)
	}
	c := f.client("admin")
	if r := c.getURL("/?state=running"); !r.has("Lab scan") || r.has("Office scan") {
		t.Errorf("state=running: want only the started task:\n%s", r.body)
	}
	if r := c.getURL("/?state=suspended"); !r.has("Office scan") || r.has("Lab scan") {
		t.Errorf("state=suspended: want only the suspended task")
	}
}

func TestHostileQueriesAreRefused(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{})
	c := f.client("admin")
	long := strings.Repeat("x", 300)
	for _, path := range []string{
		"/?kind=planet",
		"/?state=exploding",
		"/?app=" + long,
		"/?after=not-a-cursor",
		"/tasks/" + f.global.ID + "?state=nope",
		"/tasks/" + f.global.ID + "?" + strings.Repeat("state=running&", 20),
		"/tasks/" + f.global.ID + "?explain=" + long,
		"/tasks/" + f.group.ID + "/compare?a=1&b=x",
		"/tasks/" + f.group.ID + "/compare?a=-1&b=2",
		"/tasks/" + f.group.ID + "/devices/dev-001?after=-5",
		"/tasks/" + f.group.ID + "/devices/" + long,
	} {
		r := c.getURL(path)
		if r.code != http.StatusBadRequest {
			t.Errorf("GET %s = %d, want 400", path[:min(len(path), 80)], r.code)
		}
		if strings.Contains(r.body, long) {
			t.Errorf("GET %s echoes the whole hostile value", path[:40])
		}
	}
	if r := c.getURL("/tasks/" + f.group.ID + "/compare?a=1&b=99"); r.code != http.StatusNotFound {
		t.Errorf("compare with a missing revision = %d, want 404", r.code)
	}
	if r := c.getURL("/tasks/no-such-task"); r.code != http.StatusNotFound {
		t.Errorf("unknown task = %d, want 404", r.code)
	}
}

func TestTaskPageShowsEverythingButSecrets(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{})
	c := f.client("admin")
	r := c.getURL("/tasks/" + f.group.ID)
	if r.code != http.StatusOK {
		t.Fatalf("GET task = %d: %s", r.code, r.body)
	}
	for _, want := range []string{
		"Office scan", "Scans the office every day",
		`CORP\scanner (password set, not shown)`,
		"max_file_size_mb", "250", "scan_archives",
		"Administration group", "office", "Distribute to subgroups",
		"schedule.kind", "every_days",
		"Statistics", "Revision history", "Roll back to this",
		`id="act-start"`, `id="act-stop"`, `id="act-suspend"`, `id="act-export"`,
	} {
		if !r.has(want) {
			t.Errorf("task page lacks %q", want)
		}
	}
	for _, secret := range []string{secretProxyPassword, secretAccountPassword, "tfsealed:"} {
		if r.has(secret) {
			t.Errorf("task page shows the secret %q", secret)
		}
	}
	if !regexp.MustCompile(`proxy_password</th><td class="secret">\[redacted\]`).MatchString(r.body) {
		t.Error("proxy_password is not shown as [redacted]")
	}
	// The compare page of the two revisions: the diff, secrets redacted.
	d := c.getURL("/tasks/" + f.group.ID + "/compare?a=1&b=2")
	if d.code != http.StatusOK {
		t.Fatalf("compare = %d: %s", d.code, d.body)
	}
	for _, want := range []string{"settings.max_file_size_mb", "<code>100</code>", "<code>250</code>", "settings.action", "description", `id="rollback-1"`} {
		if !d.has(want) {
			t.Errorf("compare lacks %q", want)
		}
	}
	for _, secret := range []string{secretProxyPassword, secretAccountPassword, "tfsealed:"} {
		if d.has(secret) {
			t.Errorf("compare shows the secret %q", secret)
		}
	}
}

func TestScheduleMarksClockChanges(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{})
	c := f.client("admin")
	// dev-002 is in New York: the US changed on 2026-03-08, so its next
	// ten days have no change; the server's Berlin zone changes on 03-29.
	r := c.getURL("/tasks/" + f.group.ID + "?zone_device=dev-002")
	if r.code != http.StatusOK {
		t.Fatalf("GET = %d", r.code)
	}
	const berlinChange = "clock change: UTC&#43;01:00 → UTC&#43;02:00"
	if got := strings.Count(r.body, berlinChange); got != 1 {
		t.Errorf("with a New York device: Berlin clock change marked %d times, want 1 (the server's zone only)", got)
	}
	if !r.has("Device dev-002") || !r.has("America/New_York") || !r.has("Fri 2026-03-20 11:00 EDT") {
		t.Error("the New York device's activations are not shown in its zone")
	}
	if !r.has(`<tr class="dst"><td>Sun 2026-03-29 11:00 CEST</td><td>2026-03-29 09:00Z</td>`) {
		t.Error("the activation after the change is not marked, or not at 11:00 CEST")
	}
	if !r.has("<td>Sat 2026-03-21 11:00 CET</td>") {
		t.Error("the first activation is not tomorrow at 11:00 CET")
	}
	// A Berlin device (dev-001) sees the change too.
	if got := strings.Count(c.getURL("/tasks/"+f.group.ID+"?zone_device=dev-001").body, berlinChange); got != 2 {
		t.Errorf("with a Berlin device: clock change marked %d times, want 2", got)
	}
	if r := c.getURL("/tasks/" + f.group.ID + "?zone_device=ghost"); !r.has("There is no device with this id.") {
		t.Error("an unknown device is not reported")
	}
}

func TestExplainSaysWhyADeviceIsInOrOut(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{})
	c := f.client("admin")
	in := c.getURL("/tasks/" + f.group.ID + "?explain=dev-001")
	if !in.has(`<span class="pill in">in</span>`) {
		t.Errorf("dev-001 (office) not explained as in:\n%s", in.body)
	}
	out := c.getURL("/tasks/" + f.group.ID + "?explain=dev-002")
	if !out.has(`<span class="pill out">out</span>`) {
		t.Error("dev-002 (lab) not explained as out")
	}
	if r := c.getURL("/tasks/" + f.group.ID + "?explain=ghost"); !r.has("There is no device with this id.") {
		t.Error("an unknown device is not reported")
	}
}

func TestResultsArePagedAndFiltered(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{devices: 12, cfg: func(c *console.Config) { c.PageSize = 5 }})
	if _, err := f.m.Start(f.ctx, f.admin, f.global.ID); err != nil {
		t.Fatal(err)
	}
	complete(t, f, f.global.ID, 3)
	c := f.client("admin")
	p1 := c.getURL("/tasks/" + f.global.ID)
	row := func(dev string) string { return "/tasks/" + f.global.ID + "/devices/" + dev + `"` }
	if !p1.has(row("dev-001")) || !p1.has(row("dev-005")) || p1.has(row("dev-006")) {
		t.Errorf("page 1 is not dev-001..dev-005")
	}
	if !p1.has("after=dev-005") {
		t.Fatal("no next page link after dev-005")
	}
	p2 := c.getURL("/tasks/" + f.global.ID + "?after=dev-005")
	if !p2.has(row("dev-006")) || p2.has(row("dev-005")) {
		t.Error("page 2 does not start after dev-005")
	}
	done := c.getURL("/tasks/" + f.global.ID + "/live?state=completed")
	if done.code != http.StatusOK {
		t.Fatalf("live = %d", done.code)
	}
	if got := strings.Count(done.body, `<span class="pill good">completed</span>`); got != 3+1 {
		t.Errorf("completed filter shows %d completed pills, want 3 rows and 1 statistics row", got)
	}
	if done.has(row("dev-004")) {
		t.Error("a pending device is shown with the completed filter")
	}
	if !done.has(`id="stat-complete">25.0%`) {
		t.Errorf("statistics do not say 25%% complete")
	}
}

// complete records n completed results of task id's run, as the engine
// would.
func complete(t testing.TB, f *fixture, id string, n int) {
	t.Helper()
	rs, err := f.m.Results(f.ctx, f.admin, id, task.ResultsParams{Limit: n})
	must(t, err)
	for i := range rs {
		rs[i].Seq++
		rs[i].State = task.Completed
		rs[i].Progress = 100
		rs[i].StartedAt = f.clk.Now()
		rs[i].FinishedAt = f.clk.Now()
	}
	_, err = f.m.Runtime().RecordResults(f.ctx, rs)
	must(t, err)
}

func TestDevicePageShowsResultAndHistory(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{})
	if _, err := f.m.Start(f.ctx, f.admin, f.global.ID); err != nil {
		t.Fatal(err)
	}
	complete(t, f, f.global.ID, 1)
	r := f.client("admin").getURL("/tasks/" + f.global.ID + "/devices/dev-001")
	if r.code != http.StatusOK {
		t.Fatalf("device page = %d", r.code)
	}
	if !r.has(`<span class="pill good">completed</span>`) || !r.has("Run history") {
		t.Errorf("device page lacks the result or history:\n%s", r.body)
	}
	none := f.client("admin").getURL("/tasks/" + f.global.ID + "/devices/dev-999")
	if none.code != http.StatusOK || !none.has("no result for this task") {
		t.Errorf("a device without a result = %d", none.code)
	}
}

func TestActions(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{})
	c := f.client("admin")
	page := "/tasks/" + f.global.ID
	tok := c.token(page)
	post := func(action string, form url.Values) response {
		t.Helper()
		if form == nil {
			form = url.Values{}
		}
		form.Set("csrf", tok)
		r := c.post(page+"/"+action, form)
		if r.code != http.StatusSeeOther {
			t.Fatalf("POST %s = %d: %s", action, r.code, r.body)
		}
		if loc := r.hdr.Get("Location"); loc != page+"?done="+action {
			t.Fatalf("POST %s redirects to %q", action, loc)
		}
		return r
	}
	stats := func() task.Statistics {
		st, err := f.m.Statistics(f.ctx, f.admin, f.global.ID)
		must(t, err)
		return st
	}

	post("start", nil)
	if st := stats(); st.ByState[task.Pending] != 12 {
		t.Fatalf("after start: %v, want 12 pending", st.ByState)
	}
	if r := c.getURL(page + "?done=start"); !r.has("The task was started.") {
		t.Error("no notice after start")
	}
	post("stop", nil)
	if st := stats(); st.ByState[task.Stopped] != 12 {
		t.Fatalf("after stop: %v, want 12 stopped", st.ByState)
	}
	post("suspend", nil)
	if tk, _ := f.m.Get(f.ctx, f.admin, f.global.ID); !tk.Suspended {
		t.Fatal("not suspended")
	}
	post("resume", nil)
	tk, _ := f.m.Get(f.ctx, f.admin, f.global.ID)
	if tk.Suspended {
		t.Fatal("not resumed")
	}
	post("start-for", url.Values{"expect": {itoa(tk.Revision)}, "device": {"dev-003"}, "devices": {"dev-004, dev-003\n"}})
	tk, _ = f.m.Get(f.ctx, f.admin, f.global.ID)
	if got := tk.Scope.Devices; len(got) != 2 || got[0] != "dev-003" || got[1] != "dev-004" {
		t.Fatalf("start-for scope = %v", got)
	}
	if r, _ := f.m.Result(f.ctx, f.admin, f.global.ID, "dev-003"); r.State != task.Pending {
		t.Fatalf("dev-003 = %s, want pending", r.State)
	}
	// Roll back to revision 1: the twelve devices again.
	post("rollback", url.Values{"revision": {"1"}, "expect": {itoa(tk.Revision)}})
	tk, _ = f.m.Get(f.ctx, f.admin, f.global.ID)
	if len(tk.Scope.Devices) != 12 {
		t.Fatalf("after rollback: %d devices, want 12", len(tk.Scope.Devices))
	}
	revs, err := f.m.Revisions(f.ctx, f.admin, f.global.ID, 0, 100)
	must(t, err)
	if last := revs[len(revs)-1]; last.Action != "rollback" || last.Author != "admin" {
		t.Fatalf("last revision = %s by %s", last.Action, last.Author)
	}

	// A stale expected revision is a conflict, not a lost write.
	form := url.Values{"csrf": {tok}, "revision": {"1"}, "expect": {"1"}}
	if r := c.post(page+"/rollback", form); r.code != http.StatusConflict {
		t.Errorf("rollback with a stale revision = %d, want 409", r.code)
	}
	// Bad form values are 400 with the field named.
	for _, tc := range []struct {
		action string
		form   url.Values
		field  string
	}{
		{"rollback", url.Values{"revision": {"x"}, "expect": {"1"}}, "revision"},
		{"start-for", url.Values{"expect": {itoa(tk.Revision)}}, "devices"},
		{"start-for", url.Values{"expect": {itoa(tk.Revision)}, "devices": {strings.Repeat("d", 300)}}, "devices[0]"},
	} {
		tc.form.Set("csrf", tok)
		r := c.post(page+"/"+tc.action, tc.form)
		if r.code != http.StatusBadRequest || !r.has(tc.field) {
			t.Errorf("POST %s %v = %d, want 400 naming %s", tc.action, tc.form, r.code, tc.field)
		}
	}
	// Start for selected devices is only for global tasks.
	gtok := c.token("/tasks/" + f.group.ID)
	r := c.post("/tasks/"+f.group.ID+"/start-for", url.Values{"csrf": {gtok}, "expect": {itoa(f.group.Revision)}, "devices": {"dev-001"}})
	if r.code != http.StatusBadRequest {
		t.Errorf("start-for on a group task = %d, want 400", r.code)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestForbiddenUserSeesNothing(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{})
	if _, err := f.m.Start(f.ctx, f.admin, f.global.ID); err != nil {
		t.Fatal(err)
	}
	eve := f.client("eve")
	list := eve.getURL("/")
	if list.code != http.StatusOK {
		t.Fatalf("eve's list = %d", list.code)
	}
	if list.has("Lab scan") || list.has("Office scan") {
		t.Error("eve's list shows tasks she may not read")
	}
	if !list.has("Nightly backup") {
		t.Error("eve's list lacks the task open to everyone")
	}
	for _, path := range []string{
		"/tasks/" + f.global.ID, "/tasks/" + f.global.ID + "/live", "/tasks/" + f.global.ID + "/compare?a=1&b=1",
		"/tasks/" + f.global.ID + "/devices/dev-001", "/tasks/" + f.global.ID + "/export",
		"/tasks/" + f.group.ID, "/tasks/" + f.group.ID + "?explain=dev-001",
	} {
		r := eve.getURL(path)
		if r.code != http.StatusForbidden {
			t.Errorf("eve GET %s = %d, want 403", path, r.code)
		}
		for _, leak := range []string{"Lab scan", "Office scan", "virus_scan", "dev-001", "pending", "scan_archives", "CORP"} {
			if r.has(leak) {
				t.Errorf("eve GET %s: the 403 page reveals %q", path, leak)
			}
		}
	}
	// Her actions are refused and change nothing.
	tok := eve.token("/import")
	for _, action := range []string{"start", "stop", "suspend", "rollback", "start-for"} {
		r := eve.post("/tasks/"+f.global.ID+"/"+action, url.Values{"csrf": {tok}, "revision": {"1"}, "expect": {"1"}, "devices": {"dev-001"}})
		if r.code != http.StatusForbidden {
			t.Errorf("eve POST %s = %d, want 403", action, r.code)
		}
	}
	st, err := f.m.Statistics(f.ctx, f.admin, f.global.ID)
	must(t, err)
	if st.ByState[task.Pending] != 12 {
		t.Errorf("after eve's actions: %v, want 12 pending still", st.ByState)
	}
	if tk, _ := f.m.Get(f.ctx, f.admin, f.global.ID); tk.Suspended || tk.Revision != 1 {
		t.Errorf("eve changed the task: suspended %v, revision %d", tk.Suspended, tk.Revision)
	}
}

func TestUnauthenticatedIs401(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{})
	r := f.client("").getURL("/tasks/" + f.group.ID)
	if r.code != http.StatusUnauthorized || r.has("Office scan") {
		t.Errorf("anonymous GET = %d", r.code)
	}
}

func TestForgedCrossSitePostIsRefused(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{})
	admin := f.client("admin")
	page := "/tasks/" + f.global.ID
	tok := admin.token(page)
	send := func(c *client, form url.Values, hdr map[string]string) int {
		r := httptest.NewRequest(http.MethodPost, "http://console.test"+page+"/start", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		return c.do(r).code
	}
	for _, tc := range []struct {
		name string
		c    *client
		form url.Values
		hdr  map[string]string
	}{
		{"cross-site fetch metadata", admin, url.Values{"csrf": {tok}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"same-site but other origin", admin, url.Values{"csrf": {tok}}, map[string]string{"Sec-Fetch-Site": "same-site"}},
		{"foreign Origin", admin, url.Values{"csrf": {tok}}, map[string]string{"Origin": "http://evil.test"}},
		{"no token", admin, url.Values{}, map[string]string{"Sec-Fetch-Site": "same-origin"}},
		{"wrong token", admin, url.Values{"csrf": {"AAAA"}}, nil},
		{"another session's token", f.client("admin"), url.Values{"csrf": {tok}}, nil},
	} {
		if got := send(tc.c, tc.form, tc.hdr); got != http.StatusForbidden {
			t.Errorf("%s: POST start = %d, want 403", tc.name, got)
		}
	}
	// Another user with the admin's session cookie and token: the token
	// is bound to the actor.
	mallory := &client{t: t, h: f.c, user: "mallory", jar: admin.jar}
	if got := send(mallory, url.Values{"csrf": {tok}}, nil); got != http.StatusForbidden {
		t.Errorf("another actor's token: POST start = %d, want 403", got)
	}
	if st, _ := f.m.Statistics(f.ctx, f.admin, f.global.ID); st.Total != 0 {
		t.Fatalf("a refused POST started the task: %v", st.ByState)
	}
	// A GET never changes anything.
	if r := admin.getURL(page + "/start"); r.code != http.StatusMethodNotAllowed {
		t.Errorf("GET start = %d, want 405", r.code)
	}
	// The genuine request works.
	if got := send(admin, url.Values{"csrf": {tok}}, map[string]string{"Sec-Fetch-Site": "same-origin"}); got != http.StatusSeeOther {
		t.Errorf("same-origin POST with the token = %d, want 303", got)
	}
}

func TestPrefixMount(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{prefix: "/console"})
	c := f.client("admin")
	if r := c.getURL("/console/"); r.code != http.StatusOK || !r.has(`href="/console/tasks/`+f.group.ID+`"`) {
		t.Errorf("GET /console/ = %d, links not under the prefix", r.code)
	}
	if r := c.getURL("/console"); r.code != http.StatusMovedPermanently {
		t.Errorf("GET /console = %d, want a redirect", r.code)
	}
	if r := c.getURL("/tasks/" + f.group.ID); r.code != http.StatusNotFound {
		t.Errorf("GET outside the prefix = %d, want 404", r.code)
	}
	if r := c.getURL("/console/static/console.css"); r.code != http.StatusOK || !strings.Contains(r.hdr.Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet = %d %s", r.code, r.hdr.Get("Content-Type"))
	}
	if r := c.getURL("/console/static/console.js"); r.code != http.StatusOK || !r.has("setInterval") {
		t.Errorf("script = %d", r.code)
	}
	tok := c.token("/console/tasks/" + f.global.ID)
	r := c.post("/console/tasks/"+f.global.ID+"/start", url.Values{"csrf": {tok}})
	if r.code != http.StatusSeeOther || r.hdr.Get("Location") != "/console/tasks/"+f.global.ID+"?done=start" {
		t.Errorf("POST under the prefix = %d → %s", r.code, r.hdr.Get("Location"))
	}
}

func TestExportAndTwoStepImport(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{})
	c := f.client("admin")
	exp := c.getURL("/tasks/" + f.group.ID + "/export")
	if exp.code != http.StatusOK || !strings.Contains(exp.hdr.Get("Content-Disposition"), `filename="Office scan.klt"`) {
		t.Fatalf("export = %d %q", exp.code, exp.hdr.Get("Content-Disposition"))
	}
	for _, secret := range []string{secretAccountPassword, "tfsealed:"} {
		if exp.has(secret) {
			t.Errorf("the KLT file holds %q", secret)
		}
	}
	if r := c.getURL("/tasks/" + f.server.ID + "/export"); r.code != http.StatusBadRequest {
		t.Errorf("exporting a server task = %d, want 400", r.code)
	}
	tasksBefore := countTasks(t, f)

	// Step 1: preview; nothing stored.
	tok := c.token("/import")
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("csrf", tok)
	fw, _ := mw.CreateFormFile("file", "office.klt")
	_, _ = fw.Write([]byte(exp.body))
	_ = mw.Close()
	req := httptest.NewRequest(http.MethodPost, "http://console.test/import", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	pv := c.do(req)
	if pv.code != http.StatusOK {
		t.Fatalf("preview = %d: %s", pv.code, pv.body)
	}
	for _, want := range []string{"Office scan", "max_file_size_mb", `CORP\scanner`, "passwords are never exported", `name="doc"`, `<option selected>group</option>`} {
		if !pv.has(want) {
			t.Errorf("preview lacks %q", want)
		}
	}
	if n := countTasks(t, f); n != tasksBefore {
		t.Fatalf("the preview stored a task: %d tasks, want %d", n, tasksBefore)
	}
	doc := regexp.MustCompile(`name="doc" value="([^"]+)"`).FindStringSubmatch(pv.body)[1]

	// Step 2: commit into the lab group; the taken name gets " (1)".
	r := c.post("/import/commit", url.Values{"csrf": {tok}, "doc": {doc}, "scope_kind": {"group"}, "scope_value": {"lab"}})
	if r.code != http.StatusSeeOther {
		t.Fatalf("commit = %d: %s", r.code, r.body)
	}
	if n := countTasks(t, f); n != tasksBefore+1 {
		t.Fatalf("after commit: %d tasks, want %d", n, tasksBefore+1)
	}
	id := strings.TrimPrefix(strings.Split(r.hdr.Get("Location"), "?")[0], "/tasks/")
	tk, err := f.m.Get(f.ctx, f.admin, id)
	must(t, err)
	if tk.Name != "Office scan (1)" || tk.Scope.Group != "lab" {
		t.Errorf("imported %q in %q", tk.Name, tk.Scope.Group)
	}
	// Hostile uploads: not KLT, too large, bad scope.
	if r := c.post("/import/commit", url.Values{"csrf": {tok}, "doc": {"%%%"}, "scope_kind": {"group"}, "scope_value": {"lab"}}); r.code != http.StatusBadRequest {
		t.Errorf("garbage doc = %d, want 400", r.code)
	}
	if r := c.post("/import/commit", url.Values{"csrf": {tok}, "doc": {doc}, "scope_kind": {"local"}, "scope_value": {"dev-001"}}); r.code != http.StatusBadRequest {
		t.Errorf("local scope = %d, want 400", r.code)
	}
	small := setup(t, setupOptions{cfg: func(c *console.Config) { c.MaxImportSize = 100 }})
	sc := small.client("admin")
	stok := sc.token("/import")
	if r := sc.post("/import/commit", url.Values{"csrf": {stok}, "doc": {doc}, "scope_kind": {"group"}, "scope_value": {"lab"}}); r.code != http.StatusBadRequest || !r.has("larger than 100 bytes") {
		t.Errorf("oversized doc = %d, want 400 saying it is too large", r.code)
	}
}

func countTasks(t *testing.T, f *fixture) int {
	t.Helper()
	page, err := f.store.ListTasks(f.ctx, storage.ListTasksParams{Limit: 1000})
	must(t, err)
	return len(page.Tasks)
}

func TestParseDeviceList(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    []scope.DeviceID
		errPath string
	}{
		{"a\nb, c\ta  b", []scope.DeviceID{"a", "b", "c"}, ""},
		{" \n,", nil, "devices"},
		{strings.Repeat("x", scope.MaxIDLength+1), nil, "devices[0]"},
		{"ok\nbad\x01id", nil, "devices[1]"},
		{"ok\n\xff\xfe", nil, "devices[1]"},
	} {
		got, err := console.ParseDeviceList(tc.in)
		if tc.errPath != "" {
			if !errors.Is(err, task.ErrInvalid) || !strings.Contains(err.Error(), tc.errPath) {
				t.Errorf("ParseDeviceList(%q) = %v, want ErrInvalid naming %s", tc.in[:min(len(tc.in), 20)], err, tc.errPath)
			}
			continue
		}
		if err != nil || strings.Join(ids(got), ",") != strings.Join(ids(tc.want), ",") {
			t.Errorf("ParseDeviceList(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	// Too many devices: refused, not truncated.
	var b strings.Builder
	for i := range scope.MaxListLength + 1 {
		b.WriteString("d")
		b.WriteString(strings.Repeat("0", 6-len(itoa64(i))))
		b.WriteString(itoa64(i))
		b.WriteByte('\n')
	}
	if _, err := console.ParseDeviceList(b.String()); !errors.Is(err, task.ErrInvalid) {
		t.Errorf("%d devices: %v, want ErrInvalid", scope.MaxListLength+1, err)
	}
}

func ids(d []scope.DeviceID) []string {
	out := make([]string, len(d))
	for i, x := range d {
		out[i] = string(x)
	}
	return out
}

func itoa64(i int) string { return strconv.Itoa(i) }

func TestImportReentersThePassword(t *testing.T) {
	t.Parallel()
	sealer, err := credentials.NewAESGCM(credentials.AESGCMConfig{Keys: []credentials.Key{{ID: "k1", Material: make([]byte, 32)}}, ActiveKeyID: "k1"})
	must(t, err)
	f := setup(t, setupOptions{cfg: func(c *console.Config) { c.Sealer = sealer }})
	c := f.client("admin")
	exp := c.getURL("/tasks/" + f.group.ID + "/export")
	tok := c.token("/import")
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("csrf", tok)
	fw, _ := mw.CreateFormFile("file", "office.klt")
	_, _ = fw.Write([]byte(exp.body))
	_ = mw.Close()
	req := httptest.NewRequest(http.MethodPost, "http://console.test/import", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	pv := c.do(req)
	if pv.code != http.StatusOK || !pv.has(`type="password" name="password"`) {
		t.Fatalf("preview (%d) has no password field", pv.code)
	}
	doc := regexp.MustCompile(`name="doc" value="([^"]+)"`).FindStringSubmatch(pv.body)[1]
	const pw = "N3w-Imported-Pa55"
	r := c.post("/import/commit", url.Values{"csrf": {tok}, "doc": {doc}, "scope_kind": {"group"}, "scope_value": {"lab"}, "password": {pw}})
	if r.code != http.StatusSeeOther {
		t.Fatalf("commit = %d: %s", r.code, r.body)
	}
	id := strings.TrimPrefix(strings.Split(r.hdr.Get("Location"), "?")[0], "/tasks/")
	tk, err := f.m.Get(f.ctx, f.admin, id)
	must(t, err)
	if tk.Account.Name != `CORP\scanner` || tk.Account.Password.IsZero() {
		t.Fatalf("imported account = %q, sealed password set %v", tk.Account.Name, !tk.Account.Password.IsZero())
	}
	got, err := sealer.Open(tk.Account.Password)
	must(t, err)
	if got.Reveal() != pw {
		t.Error("the sealed password is not the one entered")
	}
	page := c.getURL("/tasks/" + id)
	if page.has(pw) || page.has("tfsealed:") {
		t.Error("the task page shows the imported password")
	}
	// Without a Sealer a password is refused, not dropped silently.
	plain := setup(t, setupOptions{})
	pc := plain.client("admin")
	ptok := pc.token("/import")
	if r := pc.post("/import/commit", url.Values{"csrf": {ptok}, "doc": {doc}, "scope_kind": {"group"}, "scope_value": {"lab"}, "password": {pw}}); r.code != http.StatusBadRequest || r.has(pw) {
		t.Errorf("password without a Sealer = %d, want 400 without echoing it", r.code)
	}
}

func TestDeviceIDWithSlashUnderPrefix(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{prefix: "/console"})
	_, err := f.m.Runtime().RecordResults(f.ctx, []task.Result{{TaskID: f.global.ID, DeviceID: "site/pc-1", RunID: 1, Seq: 1, State: task.Completed}})
	must(t, err)
	r := f.client("admin").getURL("/console/tasks/" + f.global.ID + "/devices/site%2Fpc-1")
	if r.code != http.StatusOK || !r.has("on site/pc-1") || !r.has(`<span class="pill good">completed</span>`) {
		t.Errorf("device page of site/pc-1 = %d:\n%s", r.code, r.body)
	}
}

// TestReaderMayLookButNotAct: the access list lets viewer read the task
// but not execute or modify it; she sees the page, her actions are 403
// and change nothing.
func TestReaderMayLookButNotAct(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{})
	tk := *f.global
	tk.Security.ACL = append(tk.Security.ACL, task.AccessEntry{Principal: "viewer", Allow: []task.Permission{task.PermRead}})
	updated, err := f.m.Update(f.ctx, f.admin, tk)
	must(t, err)
	v := f.client("viewer")
	page := "/tasks/" + updated.ID
	if r := v.getURL(page); r.code != http.StatusOK || !r.has("Lab scan") {
		t.Fatalf("viewer GET = %d", r.code)
	}
	if r := v.getURL(page + "/export"); r.code != http.StatusOK {
		t.Errorf("viewer export = %d, want 200 (reading is enough)", r.code)
	}
	tok := v.token(page)
	for _, action := range []string{"start", "stop", "suspend", "start-for", "rollback"} {
		r := v.post(page+"/"+action, url.Values{"csrf": {tok}, "revision": {"1"}, "expect": {itoa(updated.Revision)}, "devices": {"dev-001"}})
		if r.code != http.StatusForbidden {
			t.Errorf("viewer POST %s = %d, want 403", action, r.code)
		}
	}
	// Resuming a task that is not suspended changes nothing (the
	// Manager's no-op); resuming a suspended one is refused.
	updated, err = f.m.Suspend(f.ctx, f.admin, updated.ID)
	must(t, err)
	if r := v.post(page+"/resume", url.Values{"csrf": {tok}}); r.code != http.StatusForbidden {
		t.Errorf("viewer POST resume = %d, want 403", r.code)
	}
	after, err := f.m.Get(f.ctx, f.admin, updated.ID)
	must(t, err)
	if after.Revision != updated.Revision {
		t.Errorf("the viewer changed the task: revision %d, want %d", after.Revision, updated.Revision)
	}
	if st, _ := f.m.Statistics(f.ctx, f.admin, updated.ID); st.Total != 0 {
		t.Errorf("the viewer started the task: %v", st.ByState)
	}
}

// TestImportIntoAForbiddenGroup: committing an import is creating a task,
// which the group's security settings refuse to eve.
func TestImportIntoAForbiddenGroup(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{})
	exp := f.client("admin").getURL("/tasks/" + f.group.ID + "/export")
	eve := f.client("eve")
	tok := eve.token("/import")
	before := countTasks(t, f)
	r := eve.post("/import/commit", url.Values{"csrf": {tok}, "doc": {base64.StdEncoding.EncodeToString([]byte(exp.body))}, "scope_kind": {"group"}, "scope_value": {"office"}})
	if r.code != http.StatusForbidden {
		t.Errorf("eve's import into office = %d, want 403", r.code)
	}
	if n := countTasks(t, f); n != before {
		t.Errorf("eve's refused import stored a task")
	}
}
