package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/storage/storagetest"
)

// target is one database the migration tests run against.
type target struct {
	name    string
	dialect sqlstore.Dialect
	// dsn makes a fresh, empty database and returns its DSN.
	dsn func(t *testing.T) string
}

func targets() []target {
	return []target{
		{"SQLite", sqlstore.SQLite, func(t *testing.T) string { return filepath.Join(t.TempDir(), "tf.db") }},
		{"Postgres", sqlstore.Postgres, func(t *testing.T) string { return pgSchemaDSN(t) }},
	}
}

func open(t *testing.T, d sqlstore.Dialect, dsn string) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), sqlstore.Config{Dialect: d, DSN: dsn})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

type schemaRow struct {
	Version   int    `db:"version"`
	Name      string `db:"name"`
	AppliedAt string `db:"applied_at"`
}

func schemaRows(t *testing.T, s *sqlstore.Store) []schemaRow {
	t.Helper()
	var rows []schemaRow
	if err := s.DB().Select(&rows, `SELECT version, name, CAST(applied_at AS text) AS applied_at FROM taskfleet_schema ORDER BY version`); err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestMigrateConcurrentOpen(t *testing.T) {
	t.Parallel()
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			dsn := tg.dsn(t)
			const openers = 6
			var wg sync.WaitGroup
			stores := make([]*sqlstore.Store, openers)
			errs := make([]error, openers)
			for i := range openers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					stores[i], errs[i] = sqlstore.Open(context.Background(), sqlstore.Config{Dialect: tg.dialect, DSN: dsn})
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("opener %d: %v", i, err)
				}
				defer stores[i].Close()
			}
			rows := schemaRows(t, stores[0])
			if len(rows) != sqlstore.SchemaVersion() {
				t.Fatalf("schema table has %d rows, want %d (one per migration): %+v", len(rows), sqlstore.SchemaVersion(), rows)
			}
			// Every store works on the shared schema.
			for i, s := range stores {
				rec := storagetest.NewTaskRecord(fmt.Sprintf("t%d", i), fmt.Sprintf("Task %d", i))
				if err := s.CreateTask(context.Background(), storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{Number: 1, Body: rec.Body}}); err != nil {
					t.Fatalf("store %d: %v", i, err)
				}
			}
		})
	}
}

func TestMigrateConcurrentProcesses(t *testing.T) {
	t.Parallel()
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			dsn := tg.dsn(t)
			const procs = 4
			cmds := make([]*exec.Cmd, procs)
			outs := make([][]byte, procs)
			var wg sync.WaitGroup
			for i := range procs {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), childEnv+"=open", childDialectEnv+"="+string(tg.dialect), childDSNEnv+"="+dsn, fmt.Sprintf("%s=proc-%d", childArgEnv, i))
				cmds[i] = cmd
				wg.Add(1)
				go func() {
					defer wg.Done()
					outs[i], _ = cmd.CombinedOutput()
				}()
			}
			wg.Wait()
			for i, cmd := range cmds {
				if !cmd.ProcessState.Success() {
					t.Fatalf("process %d: %v\n%s", i, cmd.ProcessState, outs[i])
				}
			}
			s := open(t, tg.dialect, dsn)
			defer s.Close()
			if rows := schemaRows(t, s); len(rows) != sqlstore.SchemaVersion() {
				t.Fatalf("schema table has %d rows, want %d", len(rows), sqlstore.SchemaVersion())
			}
			page, err := s.ListTasks(context.Background(), storage.ListTasksParams{Order: storage.OrderByID})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range page.Tasks {
				ids = append(ids, r.ID)
			}
			if d := cmp.Diff([]string{"proc-0", "proc-1", "proc-2", "proc-3"}, ids); d != "" {
				t.Fatalf("tasks created by the processes (-want +got):\n%s", d)
			}
		})
	}
}

func TestMigrateReopenIsNoop(t *testing.T) {
	t.Parallel()
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			dsn := tg.dsn(t)
			s := open(t, tg.dialect, dsn)
			rec := storagetest.NewTaskRecord("kept", "Kept")
			if err := s.CreateTask(context.Background(), storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{Number: 1, Body: rec.Body}}); err != nil {
				t.Fatal(err)
			}
			before := schemaRows(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				s = open(t, tg.dialect, dsn)
				if d := cmp.Diff(before, schemaRows(t, s)); d != "" {
					t.Fatalf("re-open changed the schema table (-before +after):\n%s", d)
				}
				got, err := s.GetTask(context.Background(), "kept")
				if err != nil || got.Name != "Kept" {
					t.Fatalf("task after re-open = %+v, %v", got, err)
				}
				s.Close()
			}
		})
	}
}

func TestMigrateRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			dsn := tg.dsn(t)
			s := open(t, tg.dialect, dsn)
			newer := sqlstore.SchemaVersion() + 1
			if _, err := s.DB().Exec(s.DB().Rebind(`INSERT INTO taskfleet_schema (version, name) VALUES (?, 'from_the_future')`), newer); err != nil {
				t.Fatal(err)
			}
			s.Close()
			_, err := sqlstore.Open(context.Background(), sqlstore.Config{Dialect: tg.dialect, DSN: dsn})
			var tooNew *sqlstore.SchemaTooNewError
			if !errors.As(err, &tooNew) {
				t.Fatalf("Open of a newer schema: got %v, want *SchemaTooNewError", err)
			}
			if d := cmp.Diff(&sqlstore.SchemaTooNewError{Database: newer, Code: sqlstore.SchemaVersion()}, tooNew); d != "" {
				t.Fatalf("SchemaTooNewError (-want +got):\n%s", d)
			}
		})
	}
}
