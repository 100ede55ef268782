package hierarchy_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/hierarchy"
)

// benchServer is a server for benchmarks on a given task store.
func benchServer(b *testing.B, link *hierarchy.InProc, st storage.Store, hs storage.HierarchyStore, cfg hierarchy.Config, groups ...scope.AdminGroup) server {
	b.Helper()
	reg := task.NewRegistry()
	must(b, reg.Register(task.TaskType{Application: appES, Name: "virus_scan", Settings: Scan{Action: "disinfect"}}))
	inv := inmem.New()
	must(b, inv.PutGroups(context.Background(), groups...))
	m, err := task.New(task.Config{Store: st, Registry: reg, Inventory: inv, Authorizer: hierarchy.ReadOnly(nil)})
	must(b, err)
	cfg.Manager, cfg.Inventory, cfg.Link, cfg.Store = m, inv, link, hs
	n, err := hierarchy.Open(context.Background(), cfg)
	must(b, err)
	link.Register(n)
	return server{node: n, m: m, inv: inv, cfg: cfg}
}

// devices stores n results for task id directly in the store (the
// devices' reports, without history events), 1 in 10 failed.
func devices(b *testing.B, st storage.Store, id, prefix string, n int) {
	b.Helper()
	const chunk = 10000
	for i := 0; i < n; i += chunk {
		rs := make([]storage.ResultRecord, 0, chunk)
		for j := i; j < min(i+chunk, n); j++ {
			state := string(task.Completed)
			if j%10 == 0 {
				state = string(task.Failed)
			}
			rs = append(rs, storage.ResultRecord{TaskID: id, DeviceID: fmt.Sprintf("%s-%06d", prefix, j), RunID: 1, Seq: 1, State: state, UpdatedAt: t0})
		}
		_, err := st.UpsertResults(context.Background(), storage.UpsertResultsParams{Results: rs})
		must(b, err)
	}
}

// BenchmarkRollUp100kDevices: one report of a secondary with 100,000
// devices rolled up into the primary: the secondary counts its results,
// the report crosses the link, the primary applies it and writes it
// through to its SQLite file. Per op: one complete roll-up.
//
// With TASKFLEET_TEST_POSTGRES set, a third case keeps the primary on
// PostgreSQL (in a schema of its own, dropped afterwards).
func BenchmarkRollUp100kDevices(b *testing.B) {
	cases := []string{"secondary=memstore", "secondary=sqlite"}
	if os.Getenv("TASKFLEET_TEST_POSTGRES") != "" {
		cases = append(cases, "secondary=memstore/primary=postgres")
	}
	for _, name := range cases {
		backend := strings.TrimPrefix(strings.Split(name, "/")[0], "secondary=")
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			link := hierarchy.NewInProc()
			var pdb *sqlstore.Store
			var err error
			if strings.HasSuffix(name, "postgres") {
				pdb, err = sqlstore.Open(ctx, sqlstore.Config{Dialect: sqlstore.Postgres, DSN: pgSchema(b)})
			} else {
				pdb, err = sqlstore.OpenSQLite(ctx, filepath.Join(dir, "primary.db"))
			}
			must(b, err)
			defer pdb.Close()
			var sst storage.Store = memstore.New()
			if backend == "sqlite" {
				sdb, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "s.db"))
				must(b, err)
				defer sdb.Close()
				sst = sdb
			}
			p := benchServer(b, link, pdb, pdb, hierarchy.Config{ID: "primary", Role: scope.Primary, Children: []hierarchy.Child{{ID: "s", Role: scope.Secondary, Group: "g"}}},
				scope.AdminGroup{ID: "g", Name: "g"})
			s := benchServer(b, link, sst, memstore.New(), hierarchy.Config{ID: "s", Role: scope.Secondary, Parent: "primary", Root: "managed"}, scope.AdminGroup{ID: "managed", Name: "m"})
			all, err := p.m.Create(ctx, task.System, groupTask("scan all", "g", true))
			must(b, err)
			must(b, p.node.Distribute(ctx))
			devices(b, sst, copyID(b, s, all.ID), "d", 100000)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				must(b, s.node.Report(ctx))
			}
			b.StopTimer()
			st, err := p.node.SecondaryStatistics(all.ID, "s")
			must(b, err)
			if st.Statistics.Total != 100000 || st.Statistics.ByState[task.Failed] != 10000 {
				b.Fatalf("rolled up %+v", st.Statistics)
			}
		})
	}
}

// BenchmarkRolledUpQuery10x100k: a primary with 10 secondaries of 100,000
// devices each (1,000,000 device results in the secondaries' stores)
// answers "scan all"'s rolled-up statistics and its "Statistics from
// secondary Servers". The goal is at most 50 ms per query.
func BenchmarkRolledUpQuery10x100k(b *testing.B) {
	ctx := context.Background()
	link := hierarchy.NewInProc()
	pdb, err := sqlstore.OpenSQLite(ctx, filepath.Join(b.TempDir(), "primary.db"))
	must(b, err)
	defer pdb.Close()
	var children []hierarchy.Child
	for i := range 10 {
		children = append(children, hierarchy.Child{ID: fmt.Sprintf("s%02d", i), Role: scope.Secondary, Group: "g"})
	}
	p := benchServer(b, link, pdb, pdb, hierarchy.Config{ID: "primary", Role: scope.Primary, Children: children}, scope.AdminGroup{ID: "g", Name: "g"})
	all, err := p.m.Create(ctx, task.System, groupTask("scan all", "g", true))
	must(b, err)
	var secs []server
	var stores []*memstore.Store
	for _, c := range children {
		st := memstore.New()
		secs = append(secs, benchServer(b, link, st, memstore.New(), hierarchy.Config{ID: c.ID, Role: scope.Secondary, Parent: "primary", Root: "managed"}, scope.AdminGroup{ID: "managed", Name: "m"}))
		stores = append(stores, st)
	}
	must(b, p.node.Distribute(ctx))
	for i, s := range secs {
		devices(b, stores[i], copyID(b, s, all.ID), s.node.ID(), 100000)
		must(b, s.node.Report(ctx))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		st, err := p.node.RolledUp(ctx, all.ID)
		if err != nil || st.Total != 1000000 {
			b.Fatalf("rolled up %+v, %v", st, err)
		}
		if rows := p.node.StatisticsFromSecondaries(all.ID); len(rows) != 10 {
			b.Fatalf("%d rows", len(rows))
		}
	}
}

// pgSchema makes a schema of its own on TASKFLEET_TEST_POSTGRES and
// returns a DSN that uses it; the schema is dropped at the end.
func pgSchema(b *testing.B) string {
	b.Helper()
	base := os.Getenv("TASKFLEET_TEST_POSTGRES")
	schema := fmt.Sprintf("tf_hier_bench_%d", time.Now().UnixNano())
	admin, err := sql.Open("pgx", base)
	must(b, err)
	defer admin.Close()
	_, err = admin.Exec("CREATE SCHEMA " + schema)
	must(b, err)
	b.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err == nil {
			_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
			_ = db.Close()
		}
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}
