package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestMapErrPostgresCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code string
		want error
	}{
		{"23505", ErrConflict},
		{"23503", ErrNotFound},
		{"40001", ErrRetryable},
		{"40P01", ErrRetryable},
		{"55P03", ErrRetryable},
		{"57P01", ErrRetryable},
		{"08006", ErrRetryable},
		{"42P01", nil}, // undefined_table: a bug, not a sentinel
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			pe := &pgconn.PgError{Code: tc.code, Message: "boom"}
			got := mapErr(fmt.Errorf("exec: %w", pe))
			if s := sentinelOf(got); s != tc.want {
				t.Fatalf("mapErr(%s) matches %v, want %v", tc.code, s, tc.want)
			}
			var back *pgconn.PgError
			if !errors.As(got, &back) || back.Code != tc.code {
				t.Fatalf("mapErr(%s) lost the driver error: %v", tc.code, got)
			}
		})
	}
}

func TestMapErrGeneric(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"nil", nil, nil},
		{"no rows", sql.ErrNoRows, ErrNotFound},
		{"conn done", sql.ErrConnDone, ErrClosed},
		{"db closed", errors.New("sql: database is closed"), ErrClosed},
		{"already mapped", fmt.Errorf("x: %w", ErrConflict), ErrConflict},
		{"other", errors.New("disk full"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := mapErr(tc.err)
			if s := sentinelOf(got); s != tc.want {
				t.Fatalf("mapErr(%v) matches %v, want %v", tc.err, s, tc.want)
			}
			if tc.err != nil && !errors.Is(got, tc.err) {
				t.Fatalf("mapErr(%v) lost the original error", tc.err)
			}
		})
	}
}
