package console_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/console"
)

const (
	appES     = "Endpoint Security"
	appServer = "Administration Server"
	// secretProxyPassword is a settings value that must never be shown.
	secretProxyPassword = "Hunter2-proxy-S3cret!"
	// secretAccountPassword is the run-as password that must never be shown.
	secretAccountPassword = "Acc0unt-pa55word-XYZ"
)

// ScanSettings are the settings of the test virus scan.
type ScanSettings struct {
	ScanArchives  bool   `json:"scan_archives"`
	MaxFileSizeMB int    `json:"max_file_size_mb" validate:"min=1,max=4096"`
	Action        string `json:"action" validate:"oneof=disinfect delete report"`
	ProxyPassword string `json:"proxy_password,omitempty"`
}

// BackupSettings are the settings of the server backup task.
type BackupSettings struct {
	Keep int `json:"keep" validate:"min=1,max=100"`
}

// start is the fixtures' clock: a Friday; Europe springs forward on
// Sunday 2026-03-29.
var start = time.Date(2026, 3, 20, 10, 0, 0, 0, time.UTC)

type fixture struct {
	t      testing.TB
	ctx    context.Context
	clk    *clock.Mock
	store  storage.Store
	inv    *inmem.Inventory
	m      *task.Manager
	c      *console.Console
	admin  task.Actor
	berlin *time.Location
	// tasks by role
	group, global, server *task.Task
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func registry(t testing.TB) *task.Registry {
	r := task.NewRegistry()
	must(t, r.Register(task.TaskType{Application: appES, ApplicationVersion: "12.1", Name: "virus_scan",
		Settings: &ScanSettings{MaxFileSizeMB: 100, Action: "disinfect"}}))
	must(t, r.Register(task.TaskType{Application: appServer, Name: "backup", ServerTask: true, Settings: &BackupSettings{Keep: 7}}))
	return r
}

// actorFromHeader is the test host's login: the X-User header.
func actorFromHeader(r *http.Request) (task.Actor, error) {
	u := r.Header.Get("X-User")
	if u == "" {
		return task.Actor{}, errors.New("not signed in")
	}
	return task.Actor{ID: u}, nil
}

// devices: dev-001..dev-nnn in groups office (odd) and lab (even), zones
// Berlin and New York.
func inventory(t testing.TB, n int) *inmem.Inventory {
	inv := inmem.New()
	must(t, inv.PutGroups(context.Background(),
		scope.AdminGroup{ID: "root", Name: "Managed devices"},
		scope.AdminGroup{ID: "office", Parent: "root", Name: "Office"},
		scope.AdminGroup{ID: "lab", Parent: "root", Name: "Lab"},
	))
	devs := make([]scope.Device, 0, n)
	for i := 1; i <= n; i++ {
		g, tz := scope.GroupID("office"), "Europe/Berlin"
		if i%2 == 0 {
			g, tz = "lab", "America/New_York"
		}
		devs = append(devs, scope.Device{ID: scope.DeviceID(fmt.Sprintf("dev-%03d", i)), NetBIOSName: fmt.Sprintf("PC%03d", i),
			GroupID: g, TimeZone: tz, Connected: true, Server: scope.ServerRef{ID: "primary", Role: scope.Primary},
			Applications: map[string]scope.AppState{appES: {Installed: true, Running: true}}})
	}
	must(t, inv.PutDevices(context.Background(), devs...))
	return inv
}

type setupOptions struct {
	prefix  string
	devices int
	// store is the Manager's store (default: a new memstore).
	store storage.Store
	cfg   func(*console.Config)
}

// setup builds a Manager with three tasks: a group scan (whose settings
// hold a secret-looking proxy password and whose account has a sealed
// password), a global scan of devices with an access list that only admin
// passes, and a server backup; the group scan has a second revision.
func setup(t testing.TB, o setupOptions) *fixture {
	t.Helper()
	if o.devices == 0 {
		o.devices = 12
	}
	clk := clock.NewMock()
	clk.Set(start)
	berlin, err := time.LoadLocation("Europe/Berlin")
	must(t, err)
	if o.store == nil {
		o.store = memstore.New()
	}
	f := &fixture{t: t, ctx: context.Background(), clk: clk, store: o.store, inv: inventory(t, o.devices), admin: task.Actor{ID: "admin"}, berlin: berlin}
	var idMu sync.Mutex
	ids := 0
	f.m, err = task.New(task.Config{Store: f.store, Registry: registry(t), Inventory: f.inv, Clock: clk, Location: berlin,
		Authorizer: task.ACLAuthorizer{Groups: func(_ context.Context, a task.Actor, _ task.Operation, g scope.GroupID) error {
			if a.ID == "admin" {
				return nil
			}
			return fmt.Errorf("group %s: %w", g, task.ErrPermission)
		}, Inventory: f.inv},
		NewID: func() string { idMu.Lock(); defer idMu.Unlock(); ids++; return fmt.Sprintf("task-%04d", ids) }})
	must(t, err)
	sealer, err := credentials.NewAESGCM(credentials.AESGCMConfig{Keys: []credentials.Key{{ID: "k1", Material: make([]byte, 32)}}, ActiveKeyID: "k1"})
	must(t, err)
	acct, err := credentials.Specify(`CORP\scanner`, credentials.NewSecret(secretAccountPassword), sealer)
	must(t, err)

	sch := schedule.Default(schedule.EveryDays, clk.Now(), berlin)
	sch.Time = schedule.Clock(11, 0, 0)
	f.group, err = f.m.Create(f.ctx, f.admin, task.Task{Name: "Office scan", Application: appES, Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Group, Group: "office"}, Schedule: sch, Account: acct,
		Settings: &ScanSettings{MaxFileSizeMB: 100, Action: "disinfect", ProxyPassword: secretProxyPassword}})
	must(t, err)
	next := *f.group
	next.Settings = &ScanSettings{MaxFileSizeMB: 250, Action: "report", ScanArchives: true, ProxyPassword: secretProxyPassword}
	next.Description = "Scans the office every day"
	f.group, err = f.m.Update(f.ctx, f.admin, next)
	must(t, err)

	var devs []scope.DeviceID
	for i := 1; i <= o.devices; i++ {
		devs = append(devs, scope.DeviceID(fmt.Sprintf("dev-%03d", i)))
	}
	f.global, err = f.m.Create(f.ctx, f.admin, task.Task{Name: "Lab scan", Application: appES, Type: "virus_scan",
		Scope:    scope.Scope{Kind: scope.Devices, Devices: devs},
		Security: task.Security{ACL: []task.AccessEntry{{Principal: "admin", Allow: []task.Permission{task.PermRead, task.PermModify, task.PermExecute}}}}})
	must(t, err)
	f.server, err = f.m.Create(f.ctx, f.admin, task.Task{Name: "Nightly backup", Application: appServer, Type: "backup", Scope: scope.Scope{Kind: scope.Server}})
	must(t, err)

	cfg := console.Config{Manager: f.m, Actor: actorFromHeader, Prefix: o.prefix, Inventory: f.inv, Location: berlin, Clock: clk,
		CSRFKey: []byte("0123456789abcdef0123456789abcdef")}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	f.c, err = console.New(cfg)
	must(t, err)
	return f
}

// client is one browser session of one user against the handler.
type client struct {
	t    testing.TB
	h    http.Handler
	user string
	jar  http.CookieJar
}

func (f *fixture) client(user string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: f.t, h: f.c, user: user, jar: jar}
}

var base, _ = url.Parse("http://console.test/")

type response struct {
	code int
	body string
	hdr  http.Header
}

func (r response) has(s string) bool { return strings.Contains(r.body, s) }

func (c *client) do(r *http.Request) response {
	c.t.Helper()
	if c.user != "" {
		r.Header.Set("X-User", c.user)
	}
	for _, ck := range c.jar.Cookies(r.URL) {
		r.AddCookie(ck)
	}
	w := httptest.NewRecorder()
	c.h.ServeHTTP(w, r)
	res := w.Result()
	c.jar.SetCookies(r.URL, res.Cookies())
	b, _ := io.ReadAll(res.Body)
	return response{code: res.StatusCode, body: string(b), hdr: res.Header}
}

func (c *client) getURL(raw string) response {
	c.t.Helper()
	return c.do(httptest.NewRequest(http.MethodGet, "http://console.test"+raw, nil))
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// token loads a page and returns the CSRF token of its forms.
func (c *client) token(path string) string {
	c.t.Helper()
	r := c.getURL(path)
	m := csrfRE.FindStringSubmatch(r.body)
	if m == nil {
		c.t.Fatalf("GET %s (%d): no CSRF token in the page", path, r.code)
	}
	return m[1]
}

// post sends a same-origin form, as a browser would.
func (c *client) post(path string, form url.Values) response {
	c.t.Helper()
	r := httptest.NewRequest(http.MethodPost, "http://console.test"+path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("Origin", "http://console.test")
	return c.do(r)
}
