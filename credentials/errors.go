package credentials

import (
	"errors"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// The shared error vocabulary, re-exported so callers can test errors from
// this package with errors.Is / errors.As without importing another package.
type (
	// ValidationError reports one rejected value; Field is its dotted JSON
	// path. Its Value is always empty for passwords and keys.
	ValidationError = errs.ValidationError
	// ValidationErrors is several ValidationErrors reported at once.
	ValidationErrors = errs.ValidationErrors
)

var (
	// ErrInvalid matches every validation error.
	ErrInvalid = errs.ErrInvalid
	// ErrNotFound: a task addressed through TaskAccounts no longer exists.
	ErrNotFound = errs.ErrNotFound
	// ErrConflict: a task's revision moved (compare-and-set lost).
	ErrConflict = errs.ErrConflict
)

// ErrSealed matches every failure to open or decode a sealed password:
// ErrUnknownKey, ErrTampered and ErrMalformed all match it with errors.Is.
var ErrSealed = errors.New("credentials: cannot open sealed password")

// sealError is a sentinel that also matches ErrSealed (and, for
// ErrMalformed, ErrInvalid).
type sealError struct {
	msg     string
	invalid bool
}

func (e *sealError) Error() string { return e.msg }

func (e *sealError) Is(target error) bool {
	return target == ErrSealed || (e.invalid && target == ErrInvalid)
}

var (
	// ErrUnknownKey: the sealed password names a key id the Sealer does
	// not hold (a key removed too early from the keyring).
	ErrUnknownKey error = &sealError{msg: "credentials: sealed with an unknown key id"}
	// ErrTampered: authentication failed: the ciphertext, nonce or key id
	// was modified, or the key material registered under that key id is
	// not the one that sealed it. AES-GCM cannot tell these apart.
	ErrTampered error = &sealError{msg: "credentials: sealed password failed authentication (tampered, or wrong key material for its key id)"}
	// ErrMalformed: the encoded sealed password cannot be decoded (bad
	// prefix, version, key id, size or encoding). It also matches
	// ErrInvalid.
	ErrMalformed error = &sealError{msg: "credentials: malformed sealed password", invalid: true}
)
