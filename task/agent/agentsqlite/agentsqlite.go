package agentsqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Store is an agent.Store in a SQLite file: task definitions, local
// schedule state and the outbox survive agent and device restarts. Every
// write is its own transaction; the database runs in WAL mode with full
// synchronous commits, so an acknowledged write survives a power loss.
type Store struct {
	db     *sql.DB
	mu     sync.Mutex
	closed bool
}

const sqliteSchema = `
CREATE TABLE IF NOT EXISTS agent_tasks (id TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS agent_outbox (ord INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS agent_meta (name TEXT PRIMARY KEY, at TEXT NOT NULL, n INTEGER NOT NULL);
`

// Open opens (creating if needed) the agent store in the SQLite file at
// path. An empty path is an ErrInvalid *ValidationError.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errs.Invalid("path", "", "is required")
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, fmt.Errorf("agent: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, sqliteSchema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("agent: create schema: %w", err)
	}
	return &Store{db: db}, nil
}

func (s *Store) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errs.ErrClosed
	}
	return nil
}

// Tasks implements agent.Store.
func (s *Store) Tasks(ctx context.Context) ([]agent.LocalTask, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT body FROM agent_tasks ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("agent: tasks: %w", err)
	}
	defer rows.Close()
	var out []agent.LocalTask
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		var t agent.LocalTask
		if err := json.Unmarshal(b, &t); err != nil {
			return nil, fmt.Errorf("agent: decode task: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// PutTask implements agent.Store.
func (s *Store) PutTask(ctx context.Context, t agent.LocalTask) error {
	if err := s.check(); err != nil {
		return err
	}
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("agent: encode task: %w", err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO agent_tasks (id, body) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET body = excluded.body`, t.Def.Task.ID, b)
	return err
}

// DeleteTask implements agent.Store.
func (s *Store) DeleteTask(ctx context.Context, id string) error {
	if err := s.check(); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `DELETE FROM agent_tasks WHERE id = ?`, id)
	return err
}

// Enqueue implements agent.Store.
func (s *Store) Enqueue(ctx context.Context, m transport.Message) error {
	if err := s.check(); err != nil {
		return err
	}
	if m.Key == "" {
		return errs.Invalid("key", "", "an outbox message needs an idempotency key")
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("agent: encode message: %w", err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO agent_outbox (key, body) VALUES (?, ?) ON CONFLICT(key) DO NOTHING`, m.Key, b)
	return err
}

// Outbox implements agent.Store.
func (s *Store) Outbox(ctx context.Context) ([]transport.Message, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT body FROM agent_outbox ORDER BY ord`)
	if err != nil {
		return nil, fmt.Errorf("agent: outbox: %w", err)
	}
	defer rows.Close()
	var out []transport.Message
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		var m transport.Message
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("agent: decode message: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Remove implements agent.Store.
func (s *Store) Remove(ctx context.Context, keys []string) error {
	if err := s.check(); err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	for _, k := range keys {
		if _, err := tx.ExecContext(ctx, `DELETE FROM agent_outbox WHERE key = ?`, k); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Meta implements agent.Store.
func (s *Store) Meta(ctx context.Context, name string) (time.Time, int64, error) {
	if err := s.check(); err != nil {
		return time.Time{}, 0, err
	}
	var at string
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT at, n FROM agent_meta WHERE name = ?`, name).Scan(&at, &n)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, 0, nil
	}
	if err != nil {
		return time.Time{}, 0, err
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("agent: meta %s: %w", name, err)
	}
	return t, n, nil
}

// SetMeta implements agent.Store.
func (s *Store) SetMeta(ctx context.Context, name string, t time.Time, n int64) error {
	if err := s.check(); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO agent_meta (name, at, n) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET at = excluded.at, n = excluded.n`,
		name, t.UTC().Format(time.RFC3339Nano), n)
	return err
}

// Close implements agent.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.db.Close()
}

var _ agent.Store = (*Store)(nil)
