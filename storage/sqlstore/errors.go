package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// SchemaTooNewError is returned by Open when the database was migrated by
// a newer taskfleet than this one: this code does not know the newer
// schema and refuses to touch it. Upgrade the program (or open a copy of
// an older backup).
type SchemaTooNewError struct {
	// Database is the schema version found in the database.
	Database int
	// Code is the newest schema version this code knows.
	Code int
}

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("sqlstore: the database schema is at version %d, newer than version %d this taskfleet knows; upgrade taskfleet", e.Database, e.Code)
}

// SQLite result codes (https://sqlite.org/rescode.html).
const (
	sqliteBusy       = 5
	sqliteLocked     = 6
	sqliteConstraint = 19
	// Extended constraint codes.
	sqliteConstraintFK         = 787
	sqliteConstraintPrimaryKey = 1555
	sqliteConstraintUnique     = 2067
)

// mapErr is the one place where driver errors become storage sentinels:
// unique violation -> ErrConflict, missing parent row -> ErrNotFound,
// serialization failure / deadlock / busy database / lost connection ->
// ErrRetryable, closed handle -> ErrClosed, sql.ErrNoRows -> ErrNotFound.
// The driver error stays in the chain for errors.As and the message;
// context errors pass through unchanged. The result never contains the DSN.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if sentinelOf(err) != nil {
		return err // already mapped
	}
	if s := classify(err); s != nil {
		return fmt.Errorf("%w: %w", s, err)
	}
	return err
}

// sentinelOf returns the storage sentinel err already matches, or nil.
func sentinelOf(err error) error {
	for _, s := range []error{ErrNotFound, ErrConflict, ErrRetryable, ErrClosed, ErrInvalid} {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}

func classify(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if errors.Is(err, sql.ErrConnDone) || strings.Contains(err.Error(), "sql: database is closed") {
		return ErrClosed
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		code := se.Code()
		switch code {
		case sqliteConstraintUnique, sqliteConstraintPrimaryKey:
			return ErrConflict
		case sqliteConstraintFK:
			return ErrNotFound
		}
		switch code & 0xff {
		case sqliteBusy, sqliteLocked:
			return ErrRetryable
		}
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505": // unique_violation
			return ErrConflict
		case pe.Code == "23503": // foreign_key_violation: the parent is gone
			return ErrNotFound
		case pe.Code == "40001", // serialization_failure
			pe.Code == "40P01",               // deadlock_detected
			pe.Code == "55P03",               // lock_not_available
			pe.Code == "57P01",               // admin_shutdown
			strings.HasPrefix(pe.Code, "08"): // connection exception
			return ErrRetryable
		}
		return nil
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return ErrRetryable
	}
	return nil
}
