package hierarchyhttp_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/hierarchy"
	"github.com/taskfleet/taskfleet/task/hierarchy/hierarchyhttp"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport/testpki"
)

// The plan of the three-process test: s-de's devices de-000..de-199 and
// v-de's vde-000..vde-099 run "scan all"; every fifth fails, the others
// complete. Each server records its devices' results in batches while the
// hierarchy syncs.
const (
	sdeDevices = 200
	vdeDevices = 100
	batch      = 10
)

func TestMain(m *testing.M) {
	if role := os.Getenv("HIER_PROC"); role != "" {
		if err := runProcess(role); err != nil {
			fmt.Fprintln(os.Stderr, "process", role, "failed:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runProcess is one Administration Server: its own SQLite file for tasks,
// results and hierarchy state, its own certificate, its sync loop.
func runProcess(role string) error {
	dir := os.Getenv("HIER_DIR")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	db, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, role+".db"))
	if err != nil {
		return err
	}
	defer db.Close()
	reg := task.NewRegistry()
	if err := reg.Register(task.TaskType{Application: appES, Name: "virus_scan", Settings: Scan{Action: "disinfect"}}); err != nil {
		return err
	}
	inv := inmem.New()
	cfg := hierarchy.Config{ID: role, Store: db, Inventory: inv}
	var groups []scope.AdminGroup
	switch role {
	case "primary":
		cfg.Role = scope.Primary
		cfg.Children = []hierarchy.Child{{ID: "s-de", Role: scope.Secondary, Group: "g-de"}}
		groups = []scope.AdminGroup{{ID: "g-root", Name: "root"}, {ID: "g-de", Parent: "g-root", Name: "de"}}
	case "s-de":
		cfg.Role, cfg.Parent, cfg.Root = scope.Secondary, "primary", "managed"
		cfg.Children = []hierarchy.Child{{ID: "v-de", Role: scope.Virtual, Group: "managed"}}
		groups = []scope.AdminGroup{{ID: "managed", Name: "managed"}}
	case "v-de":
		cfg.Role, cfg.Parent, cfg.Root = scope.Virtual, "s-de", "managed"
		groups = []scope.AdminGroup{{ID: "managed", Name: "managed"}}
	}
	if err := inv.PutGroups(context.Background(), groups...); err != nil {
		return err
	}
	m, err := task.New(task.Config{Store: db, Registry: reg, Inventory: inv, Authorizer: hierarchy.ReadOnly(nil)})
	if err != nil {
		return err
	}
	cfg.Manager = m
	caPool := testpki.PoolFromPEM(mustRead(dir, "ca.pem"))
	cert, err := tls.X509KeyPair(mustRead(dir, role+".crt"), mustRead(dir, role+".key"))
	if err != nil {
		return err
	}
	lc := hierarchyhttp.Config{ID: role, Identity: httptransport.MTLS{Device: httptransport.CommonName}, PollWait: time.Second, QueryTimeout: 3 * time.Second}
	if u := os.Getenv("HIER_PARENT"); u != "" {
		lc.ParentURL = u
		lc.HTTPClient = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: caPool, Certificates: []tls.Certificate{cert}}}}
	}
	link, err := hierarchyhttp.New(lc)
	if err != nil {
		return err
	}
	cfg.Link = announcing{link}
	node, err := hierarchy.Open(ctx, cfg)
	if err != nil {
		return err
	}
	link.Attach(node)
	if addr := os.Getenv("HIER_LISTEN"); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		srvCert, err := tls.X509KeyPair(mustRead(dir, "server.crt"), mustRead(dir, "server.key"))
		if err != nil {
			return err
		}
		hs := &http.Server{Handler: link, TLSConfig: httptransport.ServerTLS(srvCert, caPool), ErrorLog: log.New(io.Discard, "", 0)}
		go func() { _ = hs.ServeTLS(ln, "", "") }()
		defer hs.Close()
	}
	if role == "primary" {
		page, err := m.List(ctx, task.System, task.ListParams{})
		if err != nil {
			return err
		}
		if len(page.Applications) == 0 {
			if _, err := m.Create(ctx, task.System, groupTask("scan all", "g-root")); err != nil {
				return err
			}
		}
	}
	sy, err := node.Start(ctx, hierarchy.SyncConfig{Interval: 100 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond})
	if err != nil {
		return err
	}
	defer sy.Stop()
	fmt.Println("READY")
	prefix, devices := map[string]string{"s-de": "de", "v-de": "vde"}[role], map[string]int{"s-de": sdeDevices, "v-de": vdeDevices}[role]
	next := 0
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if role == "primary" {
			askFailed(ctx, dir, node, m)
		}
		if devices == 0 || next >= devices {
			continue
		}
		id := inheritedCopy(ctx, node, cfg.Parent)
		if id == "" {
			continue
		}
		var rs []task.Result
		for i := next; i < min(next+batch, devices); i++ {
			st := task.Completed
			if i%5 == 0 {
				st = task.Failed
			}
			rs = append(rs, task.Result{TaskID: id, DeviceID: scope.DeviceID(fmt.Sprintf("%s-%03d", prefix, i)), RunID: 1, Seq: 2, State: st, UpdatedAt: time.Now().UTC()})
		}
		if _, err := m.Runtime().RecordResults(ctx, rs); err != nil {
			return err
		}
		next += batch
	}
}

// askFailed: when the test drops a file "ask-<server>", the primary pages
// through that server's failed devices on demand (over one or two HTTPS
// hops) and prints "FAILED <server> <count> <first>-<last>".
func askFailed(ctx context.Context, dir string, n *hierarchy.Node, m *task.Manager) {
	for _, server := range []string{"s-de", "v-de"} {
		ask := filepath.Join(dir, "ask-"+server)
		if _, err := os.Stat(ask); err != nil {
			continue
		}
		_ = os.Remove(ask)
		page, err := m.List(ctx, task.System, task.ListParams{})
		if err != nil || len(page.Applications) == 0 {
			fmt.Println("FAILED", server, "error", err)
			continue
		}
		id := page.Applications[0].Tasks[0].ID
		var got []scope.DeviceID
		p := hierarchy.DeviceResultsParams{TaskID: id, Server: server, States: []task.State{task.Failed}, Limit: 7}
		for {
			res, err := n.DeviceResults(ctx, p)
			if err != nil {
				fmt.Println("FAILED", server, "error", strings.ReplaceAll(err.Error(), " ", "_"))
				break
			}
			for _, r := range res.Results {
				got = append(got, r.DeviceID)
			}
			if res.Next == "" {
				fmt.Printf("FAILED %s %d %s-%s\n", server, len(got), got[0], got[len(got)-1])
				break
			}
			p.After = res.Next
		}
	}
}

// announcing prints a line before every report, so the test can kill the
// process while a report is under way.
type announcing struct{ *hierarchyhttp.Link }

func (a announcing) SendReport(ctx context.Context, r hierarchy.Report) error {
	fmt.Println("REPORTING")
	return a.Link.SendReport(ctx, r)
}

func inheritedCopy(ctx context.Context, n *hierarchy.Node, parent string) string {
	vs, err := n.Tasks(ctx)
	if err != nil {
		return ""
	}
	for _, v := range vs {
		if v.Inherited && v.From == parent {
			return v.Task.ID
		}
	}
	return ""
}

func mustRead(dir, name string) []byte {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		panic(err)
	}
	return b
}

func writePEM(t *testing.T, dir, name string, c tls.Certificate) {
	t.Helper()
	kb, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
}

// proc is a running server process.
type proc struct {
	cmd   *exec.Cmd
	lines chan string
}

func startProc(t *testing.T, dir, role, listen, parent string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HIER_PROC="+role, "HIER_DIR="+dir, "HIER_LISTEN="+listen, "HIER_PARENT="+parent)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	p := &proc{cmd: cmd, lines: make(chan string, 4096)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		close(p.lines)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	p.await(t, "READY")
	return p
}

func (p *proc) await(t *testing.T, line string) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("process exited before %q", line)
			}
			if l == line {
				return
			}
		case <-timeout:
			t.Fatalf("no %q within 15s", line)
		}
	}
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Wait()
}

// proxy forwards TCP from a loopback port to target; cut closes every
// connection and refuses new ones until restore.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { _ = ln.Close(); p.setCut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				_ = c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				_ = c.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
			go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
		}
	}()
	return p
}

func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.conns = nil
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// TestThreeProcesses: a primary, a secondary and a virtual server under
// the secondary run as three processes, each with its own SQLite file,
// linked over HTTPS with mTLS on loopback, the children connecting out.
// The task goes down, results come up while the devices work; the
// secondary is SIGKILLed during a report and restarted on its file; the
// link between secondary and primary is cut and restored; the primary is
// SIGKILLed and restarted on its file. At the end
// every figure on the primary equals the results stored on the server it
// counts, and the primary's total is the sum of all devices' stored
// results: nothing is counted twice.
func TestThreeProcesses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := testpki.New(time.Now())
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "ca.pem"), ca.CertPEM, 0o600))
	srv, err := ca.Server(time.Now())
	must(t, err)
	writePEM(t, dir, "server", srv)
	for _, id := range []string{"primary", "s-de", "v-de"} {
		c, err := ca.Client(id, time.Now())
		must(t, err)
		writePEM(t, dir, id, c)
	}
	pAddr, sAddr := freeAddr(t), freeAddr(t)
	primary := startProc(t, dir, "primary", pAddr, "")
	cut := newProxy(t, pAddr)
	sde := startProc(t, dir, "s-de", sAddr, "https://"+cut.ln.Addr().String())
	vde := startProc(t, dir, "v-de", "", "https://"+sAddr)

	pdb, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(dir, "primary.db"))
	must(t, err)
	defer pdb.Close()
	figureOf := func(server string) storage.HierarchyFigure {
		t.Helper()
		st, err := pdb.GetHierarchyState(context.Background(), "primary")
		must(t, err)
		for _, f := range st.Figures {
			if f.Server == server {
				return f
			}
		}
		return storage.HierarchyFigure{}
	}

	// SIGKILL s-de during a report, once some results went up.
	time.Sleep(300 * time.Millisecond)
	sde.await(t, "REPORTING")
	must(t, sde.cmd.Process.Signal(syscall.SIGKILL))
	_ = sde.cmd.Wait()
	killed := figureOf("s-de").Version
	sde = startProc(t, dir, "s-de", sAddr, "https://"+cut.ln.Addr().String())

	// Cut the link between s-de and the primary: nothing gets through
	// while it is cut.
	cut.setCut(true)
	time.Sleep(200 * time.Millisecond)
	during := figureOf("s-de").Version
	time.Sleep(600 * time.Millisecond)
	if after := figureOf("s-de").Version; after != during {
		t.Fatalf("s-de's figure changed from %v to %v while the link was cut", during, after)
	}
	cut.setCut(false)

	// The primary is SIGKILLed too and restarts on its file: it serves its
	// figures at once and takes the next reports.
	held := figureOf("s-de").Version
	must(t, primary.cmd.Process.Signal(syscall.SIGKILL))
	_ = primary.cmd.Wait()
	primary = startProc(t, dir, "primary", pAddr, "")
	if got := figureOf("s-de").Version; held.Newer(got) {
		t.Fatalf("after the primary's restart s-de's figure went back from %v to %v", held, got)
	}

	want := map[string]int{"s-de": sdeDevices, "v-de": vdeDevices}
	var figs []storage.HierarchyFigure
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := pdb.GetHierarchyState(context.Background(), "primary")
		if err == nil {
			figs = st.Figures
			if finished(figs) == want["s-de"]+want["v-de"] {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the primary's figures did not converge: %s", describe(figs))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for deadline := time.Now().Add(10 * time.Second); !figureOf("s-de").Version.Newer(held); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the restarted primary took no report of s-de newer than %v", held)
		}
	}
	// The primary pages through each server's failed devices on demand,
	// across the processes (v-de's through s-de).
	for server, want := range map[string]string{"s-de": "FAILED s-de 40 de-000-de-195", "v-de": "FAILED v-de 20 vde-000-vde-095"} {
		must(t, os.WriteFile(filepath.Join(dir, "ask-"+server), nil, 0o600))
		primary.await(t, want)
	}
	vde.stop(t)
	sde.stop(t)
	primary.stop(t)
	if v := figureOf("s-de").Version; v.Epoch <= killed.Epoch {
		t.Fatalf("s-de's last figure %v is not from after its restart (killed at %v)", v, killed)
	}

	// Every figure equals the results stored on the server it counts.
	total := 0
	for _, id := range []string{"s-de", "v-de"} {
		db, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(dir, id+".db"))
		must(t, err)
		st, err := db.GetHierarchyState(context.Background(), id)
		must(t, err)
		if len(st.Copies) != 1 {
			t.Fatalf("%s keeps %d copies, want 1", id, len(st.Copies))
		}
		stored, err := db.TaskStatistics(context.Background(), st.Copies[0].TaskID)
		must(t, err)
		_ = db.Close()
		var fig *storage.HierarchyFigure
		for i := range figs {
			if figs[i].Server == id {
				fig = &figs[i]
			}
		}
		if fig == nil {
			t.Fatalf("no figure of %s on the primary", id)
		}
		got := decodeStats(t, fig.Statistics)
		if got.Total != stored.Total || got.ByState[task.Failed] != stored.ByState["failed"] || got.ByState[task.Completed] != stored.ByState["completed"] || stored.Total != want[id] {
			t.Fatalf("%s: primary's figure %+v, stored results %+v (want %d devices)", id, got, stored, want[id])
		}
		total += stored.Total
	}
	if len(figs) != 2 || finished(figs) != total {
		t.Fatalf("primary's figures %s, devices' stored results %d", describe(figs), total)
	}
}

func decodeStats(t *testing.T, b []byte) task.Statistics {
	t.Helper()
	var s task.Statistics
	if err := jsonUnmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func finished(figs []storage.HierarchyFigure) int {
	n := 0
	for _, f := range figs {
		var s task.Statistics
		if jsonUnmarshal(f.Statistics, &s) == nil {
			n += s.Finished
		}
	}
	return n
}

func describe(figs []storage.HierarchyFigure) string {
	var b strings.Builder
	for _, f := range figs {
		fmt.Fprintf(&b, "%s@%v:%s ", f.Server, f.Version, f.Statistics)
	}
	return b.String()
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
