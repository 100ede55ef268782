package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
)

// NoSchemaError is returned by Open on PostgreSQL when no schema named in
// the connection's search_path exists, so there is nowhere to create
// taskfleet's tables (PostgreSQL's own message is "no schema has been
// selected to create in", SQLSTATE 3F000). Open does not create the schema:
// a typo in the DSN would otherwise silently start a second, empty
// database. Create it once (CREATE SCHEMA name, by a role allowed to) or
// fix search_path in the DSN. It matches ErrInvalid.
type NoSchemaError struct {
	// SearchPath is the connection's search_path setting as the server
	// reports it (at most 200 bytes of it).
	SearchPath string
}

func (e *NoSchemaError) Error() string {
	return fmt.Sprintf("sqlstore: no schema of the search_path %q exists, so there is nowhere to create the tables: "+
		"create it first (CREATE SCHEMA ...) or set search_path in the DSN to an existing schema", e.SearchPath)
}

// Is reports whether target is ErrInvalid.
func (e *NoSchemaError) Is(target error) bool { return target == ErrInvalid }

// checkSchema fails with a *NoSchemaError when the PostgreSQL connection
// has no current schema.
func (s *Store) checkSchema(ctx context.Context) error {
	if s.dialect != Postgres {
		return nil
	}
	var current sql.NullString
	var path string
	if err := s.w.QueryRowxContext(ctx, `SELECT current_schema(), current_setting('search_path')`).Scan(&current, &path); err != nil {
		return fmt.Errorf("sqlstore: read the current schema: %w", mapErr(err))
	}
	if current.Valid {
		return nil
	}
	if len(path) > 200 {
		path = path[:200]
	}
	return &NoSchemaError{SearchPath: path}
}
