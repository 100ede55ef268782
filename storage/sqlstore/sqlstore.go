package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"

	// The two drivers this package speaks to: "pgx" and "sqlite".
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/storage"
)

var _ storage.Store = (*Store)(nil)

// The shared error vocabulary, re-exported so callers can test errors with
// this package's names.
type (
	ValidationError  = errs.ValidationError
	ValidationErrors = errs.ValidationErrors
)

// Sentinel errors (the same values as storage's and the task package's).
var (
	ErrInvalid   = errs.ErrInvalid
	ErrNotFound  = errs.ErrNotFound
	ErrConflict  = errs.ErrConflict
	ErrRetryable = errs.ErrRetryable
	ErrClosed    = errs.ErrClosed
)

// Dialect selects the database engine.
type Dialect string

// The supported dialects.
const (
	// SQLite through modernc.org/sqlite (pure Go, no cgo): the embedded
	// default.
	SQLite Dialect = "sqlite"
	// Postgres through github.com/jackc/pgx/v5/stdlib: for scale-out.
	Postgres Dialect = "postgres"
)

// Defaults of Config.
const (
	// DefaultBusyTimeout is how long a SQLite connection waits for
	// another connection's (or process's) write lock before a write fails
	// with ErrRetryable.
	DefaultBusyTimeout = 5 * time.Second
	// DefaultSQLiteReaders is the size of the SQLite read pool (writes
	// always go through one connection).
	DefaultSQLiteReaders = 4
	// DefaultMaxOpenConns is the PostgreSQL pool size.
	DefaultMaxOpenConns = 16
	// DefaultMaxIdleConns is the number of idle PostgreSQL connections
	// kept open.
	DefaultMaxIdleConns = 16
	// DefaultConnMaxLifetime recycles PostgreSQL connections, so a
	// failover or a pooler's restart is picked up.
	DefaultConnMaxLifetime = 30 * time.Minute
)

// Synchronous is SQLite's durability level (PRAGMA synchronous).
type Synchronous string

// The durability levels.
const (
	// SyncFull (the default) syncs the WAL on every commit: nothing
	// committed is lost, neither when the process is killed nor on power
	// loss or an OS crash.
	SyncFull Synchronous = "full"
	// SyncNormal syncs the WAL only at checkpoints: still atomic and
	// consistent, and nothing committed is lost when the process dies,
	// but the last commits can be rolled back by a power loss or an OS
	// crash. Faster for many small writes.
	SyncNormal Synchronous = "normal"
)

// Config configures Open. The zero value of every field but Dialect and DSN
// means the documented default.
type Config struct {
	// Dialect is SQLite or Postgres. Required.
	Dialect Dialect
	// DSN locates the database. SQLite: a file path (created when
	// missing), ":memory:" or a "file:" URI; "_pragma" and other
	// modernc.org/sqlite parameters may be appended after "?", the
	// store adds its own. PostgreSQL: a URL
	// ("postgres://user@host:5432/db?sslmode=disable") or a key=value
	// DSN; runtime parameters such as search_path are passed on. The DSN
	// may hold a password: it never appears in errors or logs.
	DSN string

	// BusyTimeout (SQLite) is how long a write waits for a lock held by
	// another process; 0 means DefaultBusyTimeout. Must not be negative.
	BusyTimeout time.Duration
	// Synchronous (SQLite) is the durability level; empty means SyncFull.
	Synchronous Synchronous
	// SQLiteReaders (SQLite, file databases) is the size of the read
	// pool; 0 means DefaultSQLiteReaders. Writes use one dedicated
	// connection whatever this is, because SQLite admits one writer.
	SQLiteReaders int

	// MaxOpenConns (PostgreSQL) bounds the pool; 0 means
	// DefaultMaxOpenConns.
	MaxOpenConns int
	// MaxIdleConns (PostgreSQL) is the number of idle connections kept;
	// 0 means DefaultMaxIdleConns (capped at MaxOpenConns).
	MaxIdleConns int
	// ConnMaxLifetime (PostgreSQL) recycles connections; 0 means
	// DefaultConnMaxLifetime, negative means forever.
	ConnMaxLifetime time.Duration

	// Logger receives migration and connection messages; the zero value
	// means zerolog.Nop(). The DSN is never logged.
	Logger zerolog.Logger
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.BusyTimeout == 0 {
		c.BusyTimeout = DefaultBusyTimeout
	}
	if c.Synchronous == "" {
		c.Synchronous = SyncFull
	}
	if c.SQLiteReaders == 0 {
		c.SQLiteReaders = DefaultSQLiteReaders
	}
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = DefaultMaxOpenConns
	}
	if c.MaxIdleConns == 0 && c.MaxOpenConns > 0 {
		c.MaxIdleConns = min(DefaultMaxIdleConns, c.MaxOpenConns)
	}
	if c.ConnMaxLifetime == 0 {
		c.ConnMaxLifetime = DefaultConnMaxLifetime
	}
	// The zero zerolog.Logger has no writer and logs nothing: it is
	// already the documented default, zerolog.Nop().
	return c
}

// validate checks a Config after withDefaults.
func (c Config) validate() error {
	var es ValidationErrors
	switch c.Dialect {
	case SQLite, Postgres:
	default:
		es = append(es, errs.Invalid("dialect", string(c.Dialect), `must be "sqlite" or "postgres"`))
	}
	if strings.TrimSpace(c.DSN) == "" {
		es = append(es, errs.Invalid("dsn", "", "must not be empty"))
	}
	if c.BusyTimeout < 0 {
		es = append(es, errs.Invalid("busy_timeout", c.BusyTimeout.String(), "must not be negative"))
	}
	switch c.Synchronous {
	case SyncFull, SyncNormal:
	default:
		es = append(es, errs.Invalid("synchronous", string(c.Synchronous), `must be "full" or "normal"`))
	}
	if c.SQLiteReaders < 0 || c.SQLiteReaders > 1024 {
		es = append(es, errs.Range("sqlite_readers", c.SQLiteReaders, 0, 1024))
	}
	if c.MaxOpenConns < 0 || c.MaxOpenConns > 10000 {
		es = append(es, errs.Range("max_open_conns", c.MaxOpenConns, 0, 10000))
	}
	if c.MaxOpenConns > 0 && (c.MaxIdleConns < 0 || c.MaxIdleConns > c.MaxOpenConns) {
		es = append(es, &ValidationError{Field: "max_idle_conns", Value: strconv.Itoa(c.MaxIdleConns), Reason: "must be between 0 and max_open_conns"})
	}
	return es.Err()
}

// Store is a storage.Store on SQLite or PostgreSQL. It is safe for
// concurrent use by many goroutines and by several processes sharing one
// database. Create it with Open or OpenSQLite and Close it when done.
type Store struct {
	dialect Dialect
	// w takes every write. SQLite: one connection whose transactions
	// begin IMMEDIATE (SQLite admits one writer; queuing writers in Go
	// is cheaper than letting them spin on SQLITE_BUSY). PostgreSQL: the
	// pool, the same as r.
	w *sqlx.DB
	// r serves reads. SQLite file: a pool of readers (WAL lets them run
	// beside the writer). SQLite memory and PostgreSQL: the same as w.
	r      *sqlx.DB
	log    zerolog.Logger
	closed atomic.Bool
	q      queries
	// upserts (SQLite) are the prepared multi-row result upserts of
	// sqliteChunk>>k rows at index k.
	upserts []*sql.Stmt
	// eventKeys and events (SQLite) are the prepared multi-row event key
	// reservations and event inserts, sized like upserts.
	eventKeys, events []*sql.Stmt
	// ledger (SQLite) are the prepared multi-row dispatch ledger inserts,
	// sized like upserts.
	ledger []*sql.Stmt
	// renews (SQLite) are the prepared multi-row lease renewals, sized
	// like upserts.
	renews []*sql.Stmt
	// upsertCalls counts UpsertResults calls, to compact PostgreSQL's
	// result counters now and then.
	upsertCalls atomic.Uint64
}

// OpenSQLite opens (creating when missing) the SQLite database at path with
// the default settings: the embedded default backend. path may be
// ":memory:" for a private in-memory database.
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
	return Open(ctx, Config{Dialect: SQLite, DSN: path})
}

// Open connects to the database, applies the embedded schema migrations
// that are missing (in one transaction, serialized against other processes
// opening the same database), and returns the Store.
//
// Errors: a Config breaking its documented ranges matches ErrInvalid
// (ValidationErrors naming each field); a database whose schema is newer
// than this code is a *SchemaTooNewError; a PostgreSQL search_path naming
// no existing schema is a *NoSchemaError; connection and migration
// failures are returned wrapped.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Store{dialect: cfg.Dialect, log: cfg.Logger.With().Str("component", "sqlstore").Str("dialect", string(cfg.Dialect)).Logger()}
	var err error
	switch cfg.Dialect {
	case SQLite:
		err = s.openSQLite(cfg)
	case Postgres:
		err = s.openPostgres(cfg)
	}
	if err != nil {
		return nil, err
	}
	s.q = buildQueries(s.w)
	if err := s.checkSchema(ctx); err != nil {
		s.closeDBs()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.closeDBs()
		return nil, err
	}
	if s.dialect == SQLite {
		if err := s.prepareSQLite(ctx); err != nil {
			s.closeDBs()
			return nil, err
		}
	}
	return s, nil
}

func (s *Store) openSQLite(cfg Config) error {
	path := cfg.DSN
	memory := path == ":memory:" || strings.HasPrefix(path, "file::memory:") || strings.Contains(path, "mode=memory")
	params := []string{
		"_txlock=immediate",
		"_busy_timeout=" + strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10),
		"_foreign_keys=1",
		"_synchronous=" + strings.ToUpper(string(cfg.Synchronous)),
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	dsn := path + sep + strings.Join(params, "&")
	// The writer keeps its temporary files in memory (temp_store): the
	// statement journals SQLite writes for every multi-row statement
	// inside a transaction (so a failing statement is undone alone) went
	// to a temporary file, a write system call per page, about a tenth
	// of the CPU of a simulated week. They only ever undo one statement
	// of the open transaction: durability is the WAL's, unchanged.
	w, err := sqlx.Open("sqlite", dsn+"&_pragma=temp_store(memory)")
	if err != nil {
		return fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	// One writer connection; it is never closed while the store lives,
	// which also keeps a ":memory:" database alive.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.Ping(); err != nil {
		_ = w.Close()
		return fmt.Errorf("sqlstore: open sqlite: %w", mapErr(err))
	}
	s.w, s.r = w, w
	if memory {
		// A private in-memory database exists on one connection only.
		return nil
	}
	if err := s.enableWAL(cfg); err != nil {
		_ = w.Close()
		return err
	}
	r, err := sqlx.Open("sqlite", dsn)
	if err != nil {
		_ = w.Close()
		return fmt.Errorf("sqlstore: open sqlite readers: %w", err)
	}
	r.SetMaxOpenConns(cfg.SQLiteReaders)
	r.SetMaxIdleConns(cfg.SQLiteReaders)
	s.r = r
	return nil
}

// enableWAL switches the database file to WAL (a persistent setting, so
// readers need not repeat it). The switch needs an exclusive lock and
// SQLite may refuse it with SQLITE_BUSY at once, without its busy handler,
// while another process opens the same file; it is retried for up to the
// busy timeout.
func (s *Store) enableWAL(cfg Config) error {
	const pause = 10 * time.Millisecond
	for attempt := 0; ; attempt++ {
		var mode string
		err := s.w.QueryRow("PRAGMA journal_mode=WAL").Scan(&mode)
		if err == nil {
			if !strings.EqualFold(mode, "wal") {
				return fmt.Errorf("sqlstore: open sqlite: journal mode is %q, not wal", mode)
			}
			return nil
		}
		err = mapErr(err)
		if !errors.Is(err, ErrRetryable) || time.Duration(attempt)*pause >= cfg.BusyTimeout {
			return fmt.Errorf("sqlstore: open sqlite: enable WAL: %w", err)
		}
		time.Sleep(pause)
	}
}

func (s *Store) openPostgres(cfg Config) error {
	db, err := sqlx.Open("pgx", cfg.DSN)
	if err != nil {
		// pgx's parse errors can quote the DSN; do not pass them on.
		return fmt.Errorf("sqlstore: open postgres: the DSN cannot be parsed: %w", ErrInvalid)
	}
	db.SetMaxOpenConns(cfg.MaxOpenConns)
	db.SetMaxIdleConns(cfg.MaxIdleConns)
	if cfg.ConnMaxLifetime > 0 {
		db.SetConnMaxLifetime(cfg.ConnMaxLifetime)
	}
	s.w, s.r = db, db
	return nil
}

// DB returns the database handle the store writes through, for hosts that
// need to run their own statements next to the store (health checks,
// reports over the results table, tests). On SQLite it is the single
// writer connection: a transaction held open on it blocks every write of
// the store. The schema belongs to the store; hosts must not change it.
func (s *Store) DB() *sqlx.DB { return s.w }

// Dialect returns the store's dialect.
func (s *Store) Dialect() Dialect { return s.dialect }

// Close closes the database connections. Calls after Close return an error
// matching ErrClosed; Close itself is idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.closeDBs()
}

func (s *Store) closeDBs() error {
	var err error
	for _, st := range slices.Concat(s.upserts, s.eventKeys, s.events, s.ledger, s.renews) {
		if e := st.Close(); e != nil && err == nil {
			err = e
		}
	}
	if s.r != s.w {
		err = s.r.Close()
	}
	if e := s.w.Close(); e != nil && err == nil {
		err = e
	}
	return err
}

func (s *Store) checkOpen() error {
	if s.closed.Load() {
		return fmt.Errorf("sqlstore: %w", ErrClosed)
	}
	return nil
}
