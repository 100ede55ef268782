package sqlstore_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/taskfleet/taskfleet/storage/sqlstore"
)

// A search_path naming a schema that does not exist fails Open with a
// typed error that says what to do, not PostgreSQL's bare SQLSTATE 3F000.
func TestOpenPostgresWithMissingSchema(t *testing.T) {
	t.Parallel()
	base := os.Getenv(pgEnv)
	if base == "" {
		t.Skip(pgSkip)
	}
	dsn := withSearchPath(t, base, "tf_no_such_schema_4711")
	_, err := sqlstore.Open(context.Background(), sqlstore.Config{Dialect: sqlstore.Postgres, DSN: dsn})
	var nse *sqlstore.NoSchemaError
	if !errors.As(err, &nse) {
		t.Fatalf("Open = %v, want a *NoSchemaError", err)
	}
	if !errors.Is(err, sqlstore.ErrInvalid) {
		t.Errorf("%v does not match ErrInvalid", err)
	}
	if !strings.Contains(nse.SearchPath, "tf_no_such_schema_4711") || !strings.Contains(err.Error(), "CREATE SCHEMA") {
		t.Errorf("error %q does not name the search_path and the fix", err)
	}
	// The schema, once created, is used.
	s, err := sqlstore.Open(context.Background(), sqlstore.Config{Dialect: sqlstore.Postgres, DSN: pgSchemaDSN(t)})
	if err != nil {
		t.Fatalf("Open with an existing schema: %v", err)
	}
	_ = s.Close()
}
