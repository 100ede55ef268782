package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/taskfleet/taskfleet/storage/sqlstore"
)

// pgEnv names the variable holding a PostgreSQL DSN for the tests (.ci/run
// sets it).
const pgEnv = "TASKFLEET_TEST_POSTGRES"

const pgSkip = "PostgreSQL tests need a server: set " + pgEnv + " to a DSN, e.g. " + pgEnv +
	"='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' (.ci/run starts one and sets it)"

// pgSchemaDSN creates a fresh schema on the test server, drops it when the
// test ends, and returns a DSN whose search_path points into it, so tests
// of parallel packages never see each other's tables.
func pgSchemaDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(pgEnv)
	if base == "" {
		t.Skip(pgSkip)
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	schema := "tf_test_" + hex.EncodeToString(rnd[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			t.Error(err)
			return
		}
		defer db.Close()
		if _, err := db.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return withSearchPath(t, base, schema)
}

func withSearchPath(t testing.TB, dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("%s is not a URL", pgEnv)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

func openPG(t testing.TB) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), sqlstore.Config{Dialect: sqlstore.Postgres, DSN: pgSchemaDSN(t)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openSQLiteFile(t testing.TB) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "taskfleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
