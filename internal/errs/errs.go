// Package errs holds the error vocabulary shared by every taskfleet package.
//
// Public packages re-export these names (for example
// `type ValidationError = errs.ValidationError` and
// `var ErrInvalid = errs.ErrInvalid`), so a caller can test an error from any
// package with errors.Is / errors.As against the names of the package it
// called, and an error produced deep inside (a schedule inside a task) still
// matches.
package errs

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error returned by taskfleet that falls into one of
// these classes matches it with errors.Is.
var (
	// ErrInvalid: the caller passed something the library rejects. The
	// concrete error is usually a *ValidationError or ValidationErrors.
	ErrInvalid = errors.New("taskfleet: invalid")
	// ErrNotFound: the addressed object does not exist.
	ErrNotFound = errors.New("taskfleet: not found")
	// ErrConflict: a concurrent change won (stale revision, unique name,
	// duplicate key). Re-read and retry.
	ErrConflict = errors.New("taskfleet: conflict")
	// ErrPermission: the Authorizer refused the operation.
	ErrPermission = errors.New("taskfleet: permission denied")
	// ErrRetryable: a transient backend failure (serialization failure,
	// busy database); the same call may succeed later.
	ErrRetryable = errors.New("taskfleet: retryable")
	// ErrClosed: the object was closed.
	ErrClosed = errors.New("taskfleet: closed")
)

// ValidationError reports one rejected input value.
//
// Field is a dotted path from the value the caller passed (for example
// "schedule.every_minutes" or "scope.addresses[3]"). Value is the offending
// value as text; it is never a secret (packages that validate secrets leave
// it empty). Reason says what is allowed, for example
// "must be between 1 and 1440". Line is the 1-based line of an input file
// (TXT address lists), or 0; Column the 1-based column within it or within
// an expression, or 0.
type ValidationError struct {
	Field  string
	Value  string
	Reason string
	Line   int
	Column int
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid ")
	if e.Field != "" {
		b.WriteString(e.Field)
	} else {
		b.WriteString("value")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ", column %d", e.Column)
		}
		b.WriteString(")")
	} else if e.Column > 0 {
		fmt.Fprintf(&b, " (column %d)", e.Column)
	}
	if e.Value != "" {
		fmt.Fprintf(&b, " %q", e.Value)
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	return b.String()
}

// Is makes every ValidationError match ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Invalid returns a *ValidationError.
func Invalid(field, value, reason string) *ValidationError {
	return &ValidationError{Field: field, Value: value, Reason: reason}
}

// Range returns the *ValidationError for an integer outside [min, max].
func Range(field string, v, min, max int) *ValidationError {
	return &ValidationError{Field: field, Value: fmt.Sprint(v), Reason: fmt.Sprintf("must be between %d and %d", min, max)}
}

// ValidationErrors is several ValidationErrors reported at once (a TXT
// import with many bad lines, a task with several bad fields). It matches
// ErrInvalid and each element is reachable with errors.As.
type ValidationErrors []*ValidationError

func (es ValidationErrors) Error() string {
	switch len(es) {
	case 0:
		return "no validation errors"
	case 1:
		return es[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d validation errors: ", len(es))
	for i, e := range es {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Is makes ValidationErrors match ErrInvalid.
func (es ValidationErrors) Is(target error) bool { return target == ErrInvalid }

// Unwrap exposes the elements to errors.As.
func (es ValidationErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Err returns nil for an empty list, the single error for one, and the list
// otherwise, so callers can `return errs.Err()` after collecting.
func (es ValidationErrors) Err() error {
	switch len(es) {
	case 0:
		return nil
	case 1:
		return es[0]
	}
	return es
}

// Prefix prepends prefix to the Field of every ValidationError in err (a
// *ValidationError or ValidationErrors), so a nested value's errors name the
// full path ("schedule." + "every_minutes"). Other errors are returned
// unchanged. It returns a new error and does not modify err.
func Prefix(prefix string, err error) error {
	join := func(f string) string {
		if f == "" {
			return prefix
		}
		if strings.HasPrefix(f, "[") {
			return prefix + f
		}
		return prefix + "." + f
	}
	switch e := err.(type) {
	case *ValidationError:
		c := *e
		c.Field = join(c.Field)
		return &c
	case ValidationErrors:
		out := make(ValidationErrors, len(e))
		for i, v := range e {
			c := *v
			c.Field = join(c.Field)
			out[i] = &c
		}
		return out
	}
	return err
}
