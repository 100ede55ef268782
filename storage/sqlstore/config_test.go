package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jmoiron/sqlx"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/storage/storagetest"
)

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cfg    sqlstore.Config
		fields []string
	}{
		{"no dialect", sqlstore.Config{DSN: "x.db"}, []string{"dialect"}},
		{"unknown dialect", sqlstore.Config{Dialect: "mysql", DSN: "x"}, []string{"dialect"}},
		{"no dsn", sqlstore.Config{Dialect: sqlstore.SQLite, DSN: "  "}, []string{"dsn"}},
		{"negative busy timeout", sqlstore.Config{Dialect: sqlstore.SQLite, DSN: "x.db", BusyTimeout: -time.Second}, []string{"busy_timeout"}},
		{"unknown synchronous", sqlstore.Config{Dialect: sqlstore.SQLite, DSN: "x.db", Synchronous: "off"}, []string{"synchronous"}},
		{"negative readers", sqlstore.Config{Dialect: sqlstore.SQLite, DSN: "x.db", SQLiteReaders: -1}, []string{"sqlite_readers"}},
		{"pool too large", sqlstore.Config{Dialect: sqlstore.Postgres, DSN: "host=x", MaxOpenConns: 20000}, []string{"max_open_conns"}},
		{"more idle than open", sqlstore.Config{Dialect: sqlstore.Postgres, DSN: "host=x", MaxOpenConns: 2, MaxIdleConns: 3}, []string{"max_idle_conns"}},
		{"several at once", sqlstore.Config{Dialect: "oracle", MaxOpenConns: -1}, []string{"dialect", "dsn", "max_open_conns"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := sqlstore.Open(context.Background(), tc.cfg)
			if !errors.Is(err, sqlstore.ErrInvalid) {
				t.Fatalf("Open = %v, want an error matching ErrInvalid", err)
			}
			var fields []string
			var one *sqlstore.ValidationError
			var many sqlstore.ValidationErrors
			switch {
			case errors.As(err, &many):
				for _, e := range many {
					fields = append(fields, e.Field)
				}
			case errors.As(err, &one):
				fields = []string{one.Field}
			}
			if d := cmp.Diff(tc.fields, fields); d != "" {
				t.Fatalf("fields (-want +got):\n%s", d)
			}
		})
	}
}

func TestPostgresDSNNeverInErrors(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-passw0rd"
	_, err := sqlstore.Open(context.Background(), sqlstore.Config{Dialect: sqlstore.Postgres, DSN: "postgres://u:" + secret + "@127.0.0.1:1/db?sslmode=disable&connect_timeout=1"})
	if err == nil {
		t.Fatal("Open of an unreachable server succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("the error shows the password: %v", err)
	}
	_, err = sqlstore.Open(context.Background(), sqlstore.Config{Dialect: sqlstore.Postgres, DSN: "postgres://u:" + secret + "@[bad"})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("bad DSN: %v", err)
	}
}

func TestSQLitePragmas(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  sqlstore.Config
		want map[string]string
	}{
		// temp_store 2: the writer's statement journals are in memory.
		{"defaults", sqlstore.Config{}, map[string]string{"journal_mode": "wal", "foreign_keys": "1", "synchronous": "2", "busy_timeout": "5000", "temp_store": "2"}},
		{"normal sync", sqlstore.Config{Synchronous: sqlstore.SyncNormal, BusyTimeout: 250 * time.Millisecond}, map[string]string{"journal_mode": "wal", "foreign_keys": "1", "synchronous": "1", "busy_timeout": "250", "temp_store": "2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			cfg.Dialect, cfg.DSN = sqlstore.SQLite, filepath.Join(t.TempDir(), "p.db")
			s, err := sqlstore.Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got := map[string]string{}
			for name := range tc.want {
				var v string
				if err := s.DB().Get(&v, "PRAGMA "+name); err != nil {
					t.Fatal(err)
				}
				got[name] = v
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Fatalf("pragmas (-want +got):\n%s", d)
			}
		})
	}
}

// A write that cannot get SQLite's write lock within the busy timeout is
// ErrRetryable.
func TestSQLiteBusyIsRetryable(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "busy.db")
	a, err := sqlstore.Open(context.Background(), sqlstore.Config{Dialect: sqlstore.SQLite, DSN: path})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sqlstore.Open(context.Background(), sqlstore.Config{Dialect: sqlstore.SQLite, DSN: path, BusyTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rec := storagetest.NewTaskRecord("t", "T")
	// a holds the write lock (its transactions begin IMMEDIATE).
	tx, err := a.DB().Beginx()
	if err != nil {
		t.Fatal(err)
	}
	defer func(tx *sqlx.Tx) { _ = tx.Rollback() }(tx)
	err = b.CreateTask(context.Background(), storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{Number: 1, Body: rec.Body}})
	if !errors.Is(err, storage.ErrRetryable) {
		t.Fatalf("write while another process holds the lock = %v, want ErrRetryable", err)
	}
}

// A multi-row statement that fails halfway inside a transaction is undone
// alone (SQLite's statement journal, which the writer keeps in memory):
// the transaction's earlier writes stay and commit, none of the failed
// statement's rows do, also when the statement touched many pages.
func TestSQLiteFailedStatementUndoneAlone(t *testing.T) {
	t.Parallel()
	s := openSQLiteFile(t)
	defer s.Close()
	ctx := context.Background()
	values := func(fill string, n int, lastNull bool) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			owner := "'o'"
			if lastNull && i == n-1 {
				owner = "NULL" // leaders.owner is NOT NULL: the statement fails here
			}
			fmt.Fprintf(&b, "('n-%04d-%s', %s, 1, 0)", i, strings.Repeat(fill, 200), owner)
		}
		return b.String()
	}
	tx, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	// Interleaved names ("n-0001-aaa...", "n-0001-bbb..."), so the
	// failing statement writes into every page the first one filled:
	// pages that need the statement journal.
	if _, err := tx.ExecContext(ctx, `INSERT INTO leaders (name, owner, epoch, until) VALUES `+values("a", 500, false)); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO leaders (name, owner, epoch, until) VALUES `+values("b", 500, true)); err == nil {
		t.Fatal("a statement with a NULL owner succeeded")
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var kept, undone int
	if err := s.DB().GetContext(ctx, &kept, `SELECT COUNT(*) FROM leaders WHERE name LIKE '%aaa'`); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().GetContext(ctx, &undone, `SELECT COUNT(*) FROM leaders WHERE name LIKE '%bbb'`); err != nil {
		t.Fatal(err)
	}
	if kept != 500 || undone != 0 {
		t.Fatalf("after the failed statement: %d of the first statement's 500 rows, %d of the failed one's (want 500 and 0)", kept, undone)
	}
}
