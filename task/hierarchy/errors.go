package hierarchy

import (
	"fmt"
	"strings"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// Errors, shared with every taskfleet package.
var (
	ErrInvalid   = errs.ErrInvalid
	ErrNotFound  = errs.ErrNotFound
	ErrRetryable = errs.ErrRetryable
	// ErrUnreachable is returned (wrapped) by a Link that cannot reach the
	// other server. It matches ErrRetryable: nothing needs replaying, the
	// next Distribute or Report carries the complete current state.
	ErrUnreachable = fmt.Errorf("hierarchy: server unreachable: %w", errs.ErrRetryable)
)

// ValidationError and ValidationErrors are the shared validation types.
type (
	ValidationError  = errs.ValidationError
	ValidationErrors = errs.ValidationErrors
)

// CycleError reports servers that form a cycle: a server that would
// inherit a task from itself, relay its own statistics, or be its own
// parent. It matches ErrInvalid.
type CycleError struct {
	// Path lists the servers in the order the task or report travelled;
	// the last one repeats an earlier one.
	Path []string
}

// Error names the servers of the cycle.
func (e *CycleError) Error() string {
	return "hierarchy: Administration Servers form a cycle: " + strings.Join(e.Path, " -> ")
}

// Is makes a CycleError match ErrInvalid.
func (e *CycleError) Is(target error) bool { return target == ErrInvalid }

// UnknownServerError reports a message from or to a server that is not
// what the receiver expects: tasks from a server other than its parent,
// statistics from a server that is not one of its children, or a Link
// without a route to the server. It matches ErrNotFound.
type UnknownServerError struct {
	// Server is the unknown server's id.
	Server string
	// At is the server that did not know it ("" for a Link).
	At string
	// As is what Server had to be: "parent", "child" or "registered".
	As string
}

// Error names the server and what it had to be.
func (e *UnknownServerError) Error() string {
	if e.At == "" {
		return fmt.Sprintf("hierarchy: Administration Server %q is not %s", e.Server, e.As)
	}
	return fmt.Sprintf("hierarchy: Administration Server %q is not the %s of %q", e.Server, e.As, e.At)
}

// Is makes an UnknownServerError match ErrNotFound.
func (e *UnknownServerError) Is(target error) bool { return target == ErrNotFound }
