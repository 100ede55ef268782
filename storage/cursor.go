package storage

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// EncodeCursor makes the Next cursor of a task page from the order key and
// ID of the page's last record. Backends share it so a cursor means the
// same everywhere.
func EncodeCursor(key, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(key + "\x00" + id))
}

// DecodeCursor splits a cursor made by EncodeCursor. An undecodable cursor
// returns an error matching ErrInvalid.
func DecodeCursor(c string) (key, id string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", "", fmt.Errorf("storage: bad page cursor: %w", ErrInvalid)
	}
	key, id, ok := strings.Cut(string(b), "\x00")
	if !ok {
		return "", "", fmt.Errorf("storage: bad page cursor: %w", ErrInvalid)
	}
	return key, id, nil
}

// OrderKey returns the key a task sorts by under order o (OrderByName when
// o is empty). CreatedAt keys are fixed-width UTC text, so byte order is
// time order.
func OrderKey(t *TaskRecord, o TaskOrder) string {
	switch o {
	case OrderByCreatedAt:
		return t.CreatedAt.UTC().Format(createdAtKeyLayout)
	case OrderByID:
		return ""
	default:
		return t.Name
	}
}

const createdAtKeyLayout = "2006-01-02T15:04:05.000000Z"

// ValidOrder reports whether o is a TaskOrder a Store must support.
func ValidOrder(o TaskOrder) bool {
	switch o {
	case "", OrderByName, OrderByCreatedAt, OrderByID:
		return true
	}
	return false
}

// UTC returns t in UTC truncated to microseconds: the form every time has
// when it crosses the storage boundary.
func UTC(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}
