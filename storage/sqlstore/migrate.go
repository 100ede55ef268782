package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// migrationsFS holds the schema, one numbered file per version and dialect:
// migrations/<dialect>/<version>_<name>.sql. Migrations are additive (new
// tables, columns and indexes), so an older binary keeps working on a
// database until a newer one migrates it past what the older one knows —
// and then Open refuses with *SchemaTooNewError rather than guess.
//
//go:embed migrations
var migrationsFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the dialect's migrations in version order.
func migrations(d Dialect) ([]migration, error) {
	dir := path.Join("migrations", string(d))
	entries, err := fs.ReadDir(migrationsFS, dir)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: embedded migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("sqlstore: embedded migration %q is not named <version>_<name>.sql", name)
		}
		b, err := fs.ReadFile(migrationsFS, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("sqlstore: embedded migrations: %w", err)
		}
		ms = append(ms, migration{version: v, name: strings.TrimSuffix(name, ".sql"), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("sqlstore: embedded migrations skip from version %d to %d", i, m.version)
		}
	}
	return ms, nil
}

// SchemaVersion is the newest schema version this code knows (the same for
// both dialects).
func SchemaVersion() int {
	ms, err := migrations(SQLite)
	if err != nil {
		return 0
	}
	return len(ms)
}

// migrationLockKey is the first key of the PostgreSQL advisory lock that
// serializes migrations ("tf"); the second is a hash of the schema, so
// stores in different schemas of one database do not wait for each other.
const migrationLockKey = 0x7466

// migrate applies the missing migrations in one transaction. Two processes
// opening the same database at once serialize: on PostgreSQL on a
// transaction-scoped advisory lock, on SQLite on the write lock that BEGIN
// IMMEDIATE takes (waiting up to the busy timeout). The loser finds the
// schema current and does nothing.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations(s.dialect)
	if err != nil {
		return err
	}
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: migrate: begin: %w", mapErr(err))
	}
	defer func() { _ = tx.Rollback() }()
	if s.dialect == Postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))`, migrationLockKey); err != nil {
			return fmt.Errorf("sqlstore: migrate: lock: %w", mapErr(err))
		}
	}
	create := `CREATE TABLE IF NOT EXISTS taskfleet_schema (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at text NOT NULL DEFAULT CURRENT_TIMESTAMP
)`
	if _, err := tx.ExecContext(ctx, create); err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", mapErr(err))
	}
	var current int
	if err := tx.GetContext(ctx, &current, `SELECT COALESCE(MAX(version), 0) FROM taskfleet_schema`); err != nil {
		return fmt.Errorf("sqlstore: migrate: read version: %w", mapErr(err))
	}
	latest := len(ms)
	if current > latest {
		return &SchemaTooNewError{Database: current, Code: latest}
	}
	if current == latest {
		return nil // nothing to do; the rollback only ends the transaction
	}
	for _, m := range ms[current:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("sqlstore: migrate to version %d (%s): %w", m.version, m.name, mapErr(err))
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO taskfleet_schema (version, name) VALUES (?, ?)`), m.version, m.name); err != nil {
			return fmt.Errorf("sqlstore: migrate: record version %d: %w", m.version, mapErr(err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: migrate: commit: %w", mapErr(err))
	}
	s.log.Info().Int("from_version", current).Int("to_version", latest).Msg("database schema migrated")
	return nil
}
