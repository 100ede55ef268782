package hierarchyhttp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/hierarchy"
	"github.com/taskfleet/taskfleet/task/hierarchy/hierarchyhttp"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport/testpki"
)

const appES = "Endpoint Security"

type Scan struct {
	Action string `json:"action" validate:"oneof=disinfect delete"`
	Depth  int    `json:"depth"`
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type server struct {
	node *hierarchy.Node
	m    *task.Manager
	link *hierarchyhttp.Link
	url  string // the server's Link, for its children
}

// pki is the fleet's CA; every server gets a client certificate naming
// its server id.
type pki struct {
	ca *testpki.CA
}

func newPKI(t *testing.T) *pki {
	ca, err := testpki.New(time.Now())
	must(t, err)
	return &pki{ca: ca}
}

func (p *pki) client(t *testing.T, ca *testpki.CA, id string) *http.Client {
	t.Helper()
	cert, err := ca.Client(id, time.Now())
	must(t, err)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: p.ca.Pool, Certificates: []tls.Certificate{cert}}}}
}

// newServer starts a server: its Node over its own Manager, its Link to
// parentURL (when not empty) and, when it has children, its Link served
// over HTTPS with mTLS on loopback.
func newServer(t *testing.T, p *pki, cfg hierarchy.Config, parentURL string, groups ...scope.AdminGroup) server {
	t.Helper()
	return newServerServing(t, p, cfg, parentURL, true, groups...)
}

// newServerServing is newServer; serve says whether the child's Link
// answers its parent's queries on its own (else Node.Start must).
func newServerServing(t *testing.T, p *pki, cfg hierarchy.Config, parentURL string, serve bool, groups ...scope.AdminGroup) server {
	t.Helper()
	reg := task.NewRegistry()
	must(t, reg.Register(task.TaskType{Application: appES, Name: "virus_scan", Settings: Scan{Action: "disinfect"}}))
	inv := inmem.New()
	must(t, inv.PutGroups(context.Background(), groups...))
	m, err := task.New(task.Config{Store: memstore.New(), Registry: reg, Inventory: inv, Authorizer: hierarchy.ReadOnly(nil)})
	must(t, err)
	lc := hierarchyhttp.Config{ID: cfg.ID, Identity: httptransport.MTLS{Device: httptransport.CommonName}, PollWait: time.Second, QueryTimeout: 5 * time.Second}
	if parentURL != "" {
		lc.ParentURL, lc.HTTPClient = parentURL, p.client(t, p.ca, cfg.ID)
	}
	link, err := hierarchyhttp.New(lc)
	must(t, err)
	cfg.Manager, cfg.Inventory, cfg.Link, cfg.Store = m, inv, link, memstore.New()
	n, err := hierarchy.Open(context.Background(), cfg)
	must(t, err)
	link.Attach(n)
	s := server{node: n, m: m, link: link}
	if len(cfg.Children) > 0 {
		cert, err := p.ca.Server(time.Now())
		must(t, err)
		hs := httptest.NewUnstartedServer(link)
		hs.TLS = httptransport.ServerTLS(cert, p.ca.Pool)
		hs.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are part of the tests
		hs.StartTLS()
		t.Cleanup(hs.Close)
		s.url = hs.URL
	}
	if parentURL != "" && serve {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = link.Serve(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	return s
}

func groupTask(name string, g scope.GroupID) task.Task {
	return task.Task{Name: name, Application: appES, Type: "virus_scan", Settings: Scan{Action: "delete", Depth: 3},
		Scope:    scope.Scope{Kind: scope.Group, Group: g, DistributeToServers: true},
		Schedule: schedule.Default(schedule.Manual, time.Date(2026, 3, 23, 9, 0, 0, 0, time.UTC), time.UTC)}
}

func record(t *testing.T, m *task.Manager, id, prefix string, seq int64, states map[task.State]int) {
	t.Helper()
	var rs []task.Result
	i := 0
	for _, st := range []task.State{task.Completed, task.Failed, task.Running} {
		for range states[st] {
			rs = append(rs, task.Result{TaskID: id, DeviceID: scope.DeviceID(fmt.Sprintf("%s-%03d", prefix, i)), RunID: 1, Seq: seq, State: st, UpdatedAt: time.Date(2026, 3, 23, 9, 0, 0, 0, time.UTC)})
			i++
		}
	}
	_, err := m.Runtime().RecordResults(context.Background(), rs)
	must(t, err)
}

func copyOf(t *testing.T, s server, parentTask string) *task.Task {
	t.Helper()
	vs, err := s.node.Tasks(context.Background())
	must(t, err)
	for _, v := range vs {
		if v.Inherited && v.ParentTaskID == parentTask {
			return v.Task
		}
	}
	t.Fatalf("%s has no copy of %q", s.node.ID(), parentTask)
	return nil
}

// tree is primary ── s-de ── v-de over HTTPS, each child connecting out to
// its parent with its own certificate.
type tree struct {
	pki             *pki
	primary, sDE    server
	vDE             server
	all, sdeCopy    string
	vdeCopy         string
	primaryChildren []hierarchy.Child
}

func newTree(t *testing.T) *tree {
	t.Helper()
	ctx := context.Background()
	tr := &tree{pki: newPKI(t)}
	tr.primaryChildren = []hierarchy.Child{{ID: "s-de", Role: scope.Secondary, Group: "g-de"}, {ID: "s-us", Role: scope.Secondary, Group: "g-de"}}
	tr.primary = newServer(t, tr.pki, hierarchy.Config{ID: "primary", Role: scope.Primary, Children: tr.primaryChildren}, "",
		scope.AdminGroup{ID: "g-root", Name: "root"}, scope.AdminGroup{ID: "g-de", Parent: "g-root", Name: "de"})
	tr.sDE = newServer(t, tr.pki, hierarchy.Config{ID: "s-de", Role: scope.Secondary, Parent: "primary", Root: "managed",
		Children: []hierarchy.Child{{ID: "v-de", Role: scope.Virtual, Group: "managed"}}}, tr.primary.url, scope.AdminGroup{ID: "managed", Name: "managed"})
	tr.vDE = newServer(t, tr.pki, hierarchy.Config{ID: "v-de", Role: scope.Virtual, Parent: "s-de", Root: "managed"}, tr.sDE.url, scope.AdminGroup{ID: "managed", Name: "managed"})
	all, err := tr.primary.m.Create(ctx, task.System, groupTask("scan all", "g-root"))
	must(t, err)
	tr.all = all.ID
	for _, s := range []server{tr.primary, tr.sDE, tr.vDE} {
		must(t, s.node.Round(ctx))
	}
	tr.sdeCopy = copyOf(t, tr.sDE, tr.all).ID
	tr.vdeCopy = copyOf(t, tr.vDE, tr.sdeCopy).ID
	return tr
}

// TestHTTPSLink: over HTTPS with mTLS, tasks go down by pull (settings
// decoded into the registered type), reports go up, and the primary pages
// through the failed devices of the virtual server two levels down,
// relayed by the secondary, all on connections the children opened.
func TestHTTPSLink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tr := newTree(t)
	c := copyOf(t, tr.vDE, tr.sdeCopy)
	if s, ok := c.Settings.(Scan); !ok || s != (Scan{Action: "delete", Depth: 3}) {
		t.Fatalf("v-de's copy has settings %#v", c.Settings)
	}
	record(t, tr.sDE.m, tr.sdeCopy, "de", 2, map[task.State]int{task.Completed: 3, task.Failed: 2})
	record(t, tr.vDE.m, tr.vdeCopy, "vde", 2, map[task.State]int{task.Failed: 7, task.Running: 1})
	must(t, tr.vDE.node.Round(ctx))
	must(t, tr.sDE.node.Round(ctx))
	st, err := tr.primary.node.RolledUp(ctx, tr.all)
	must(t, err)
	if st.Total != 13 || st.ByState[task.Failed] != 9 {
		t.Fatalf("rolled up on the primary: %+v", st)
	}
	var got []scope.DeviceID
	p := hierarchy.DeviceResultsParams{TaskID: tr.all, Server: "v-de", States: []task.State{task.Failed}, Limit: 3}
	for {
		page, err := tr.primary.node.DeviceResults(ctx, p)
		must(t, err)
		for _, r := range page.Results {
			if r.TaskID != tr.all || r.State != task.Failed {
				t.Fatalf("result %+v", r)
			}
			got = append(got, r.DeviceID)
		}
		if page.Next == "" {
			break
		}
		p.After = page.Next
	}
	want := []scope.DeviceID{"vde-000", "vde-001", "vde-002", "vde-003", "vde-004", "vde-005", "vde-006"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("failed devices of v-de (-want +got):\n%s", d)
	}
	if _, err := tr.primary.node.DeviceResults(ctx, hierarchy.DeviceResultsParams{TaskID: tr.all, Server: "v-de", Limit: 10001}); !errors.Is(err, hierarchy.ErrInvalid) {
		t.Fatalf("oversize page: %v", err)
	}
}

// TestHTTPSLinkIdentity: a server can never report for another: s-us,
// authenticated with its own certificate, cannot report as s-de (403),
// a certificate of another CA does not get through TLS, and a request
// without a certificate is 401; the primary's figures do not change.
func TestHTTPSLinkIdentity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tr := newTree(t)
	record(t, tr.sDE.m, tr.sdeCopy, "de", 2, map[task.State]int{task.Completed: 1})
	must(t, tr.sDE.node.Round(ctx))
	before := tr.primary.node.StatisticsFromSecondaries(tr.all)
	forged := hierarchy.Report{From: "s-de", To: "primary", Version: hierarchy.Version{Epoch: time.Now().Add(time.Hour).UnixNano(), Seq: 1}, Complete: true,
		Statistics: []hierarchy.TaskStatistics{{TaskID: tr.all, Server: "s-de", Path: []string{"s-de"}, Statistics: task.Statistics{Total: 1000, ByState: map[task.State]int{task.Failed: 1000}}}}}

	link := func(id string, c *http.Client) *hierarchyhttp.Link {
		l, err := hierarchyhttp.New(hierarchyhttp.Config{ID: id, ParentURL: tr.primary.url, HTTPClient: c})
		must(t, err)
		return l
	}
	if err := link("s-us", tr.pki.client(t, tr.pki.ca, "s-us")).SendReport(ctx, forged); !errors.Is(err, hierarchyhttp.ErrImpersonation) {
		t.Fatalf("s-us reporting as s-de: %v", err)
	}
	other, err := testpki.New(time.Now())
	must(t, err)
	if err := link("s-de", tr.pki.client(t, other, "s-de")).SendReport(ctx, forged); !errors.Is(err, hierarchy.ErrUnreachable) {
		t.Fatalf("a certificate of another CA: %v", err)
	}
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tr.pki.ca.Pool}}}
	if err := link("s-de", noCert).SendReport(ctx, forged); !errors.Is(err, httptransport.ErrUnauthenticated) {
		t.Fatalf("no certificate: %v", err)
	}
	// s-us pulls: it gets its own task set, never s-de's.
	if m, ok, err := link("s-us", tr.pki.client(t, tr.pki.ca, "s-us")).PullTasks(ctx, "s-us"); err != nil || !ok || m.To != "s-us" {
		t.Fatalf("s-us's pull: %+v, ok %v, %v; want its own set", m, ok, err)
	}
	// A server that is not a child at all.
	if err := link("intruder", tr.pki.client(t, tr.pki.ca, "intruder")).SendReport(ctx, hierarchy.Report{From: "intruder", To: "primary"}); !errors.Is(err, hierarchy.ErrNotFound) {
		t.Fatalf("a server that is not a child: %v", err)
	}
	if d := cmp.Diff(before, tr.primary.node.StatisticsFromSecondaries(tr.all)); d != "" {
		t.Fatalf("refused reports changed the primary (-before +after):\n%s", d)
	}
}

// TestStartRunsTheLink: one Node.Start on the secondary pulls its tasks,
// reports, and answers the primary's per-device result queries over the
// Link (it runs Link.Serve); Stop ends all of it.
func TestStartRunsTheLink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPKI(t)
	primary := newServer(t, p, hierarchy.Config{ID: "primary", Role: scope.Primary, Children: []hierarchy.Child{{ID: "s", Role: scope.Secondary, Group: "g"}}}, "",
		scope.AdminGroup{ID: "g", Name: "g"})
	s := newServerServing(t, p, hierarchy.Config{ID: "s", Role: scope.Secondary, Parent: "primary", Root: "managed"}, primary.url, false, scope.AdminGroup{ID: "managed", Name: "m"})
	all, err := primary.m.Create(ctx, task.System, groupTask("scan", "g"))
	must(t, err)
	must(t, primary.node.Round(ctx))
	rounds := make(chan error, 100)
	sy, err := s.node.Start(ctx, hierarchy.SyncConfig{Interval: 20 * time.Millisecond, OnRound: func(err error) { rounds <- err }})
	must(t, err)
	defer sy.Stop()
	must(t, <-rounds)
	record(t, s.m, copyOf(t, s, all.ID).ID, "d", 2, map[task.State]int{task.Failed: 2})
	for deadline := time.Now().Add(5 * time.Second); ; {
		if st, err := primary.node.SecondaryStatistics(all.ID, "s"); err == nil && st.Statistics.Total == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the secondary's loop did not report its results")
		}
		time.Sleep(10 * time.Millisecond)
	}
	page, err := primary.node.DeviceResults(ctx, hierarchy.DeviceResultsParams{TaskID: all.ID, Server: "s", States: []task.State{task.Failed}})
	must(t, err)
	if len(page.Results) != 2 {
		t.Fatalf("failed devices of s: %+v", page.Results)
	}
	sy.Stop()
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := primary.node.DeviceResults(qctx, hierarchy.DeviceResultsParams{TaskID: all.ID, Server: "s"}); err == nil {
		t.Fatal("a stopped secondary still answers")
	}
}
