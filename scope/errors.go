package scope

import "github.com/taskfleet/taskfleet/internal/errs"

// The shared error vocabulary, re-exported so callers can test errors with
// the names of the package they called.
type (
	// ValidationError reports one rejected input value; it matches ErrInvalid.
	ValidationError = errs.ValidationError
	// ValidationErrors is several ValidationErrors reported at once; it
	// matches ErrInvalid.
	ValidationErrors = errs.ValidationErrors
)

var (
	// ErrInvalid matches every *ValidationError and ValidationErrors.
	ErrInvalid = errs.ErrInvalid
	// ErrNotFound: the inventory has no such device or group.
	ErrNotFound = errs.ErrNotFound
)
