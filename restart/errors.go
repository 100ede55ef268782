package restart

import "github.com/taskfleet/taskfleet/internal/errs"

// The shared error vocabulary, re-exported so callers can test errors from
// this package with errors.Is / errors.As without importing another package.
type (
	// ValidationError reports one rejected value; Field is its dotted JSON
	// path (for example "repeat_prompt.minutes").
	ValidationError = errs.ValidationError
	// ValidationErrors is several ValidationErrors reported at once.
	ValidationErrors = errs.ValidationErrors
)

var (
	// ErrInvalid matches every validation error of this package.
	ErrInvalid = errs.ErrInvalid
)
