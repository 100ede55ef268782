package credentials

import (
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
)

// Redacted is what every output path of Secret prints instead of the
// plaintext.
const Redacted = "[REDACTED]"

// Secret is a plaintext password in memory. Every way of printing,
// logging or marshalling it prints Redacted: String, GoString, every fmt
// verb (%v %+v %#v %s %q %x ...), MarshalJSON, MarshalText, zerolog's
// Object/Interface/Any and log/slog. Only Reveal returns the plaintext.
//
// The plaintext is held inside a closure, so even reflection-based printers
// that bypass methods (fmt on an unexported field, go-cmp's disambiguating
// diff output) cannot reach it. Go cannot guarantee that memory is wiped;
// keep Secrets short-lived and seal them (Sealer) before storing.
//
// The zero Secret is the empty password. Secrets are immutable and safe for
// concurrent use. Compare them with Equal (constant time); == does not
// compile.
type Secret struct {
	reveal func() string
}

// NewSecret wraps a plaintext password.
func NewSecret(plaintext string) Secret {
	if plaintext == "" {
		return Secret{}
	}
	p := strings.Clone(plaintext)
	return Secret{reveal: func() string { return p }}
}

// Reveal returns the plaintext. Call it only to hand the password to the
// operating system or a Sealer.
func (s Secret) Reveal() string {
	if s.reveal == nil {
		return ""
	}
	return s.reveal()
}

// IsZero reports whether s is the empty password.
func (s Secret) IsZero() bool { return s.Reveal() == "" }

// Len returns the length of the plaintext in bytes.
func (s Secret) Len() int { return len(s.Reveal()) }

// Equal reports whether s and o hold the same plaintext, in time that
// depends only on their lengths.
func (s Secret) Equal(o Secret) bool {
	return subtle.ConstantTimeCompare([]byte(s.Reveal()), []byte(o.Reveal())) == 1
}

// String returns Redacted.
func (s Secret) String() string { return Redacted }

// GoString returns a Go-syntax placeholder without the plaintext.
func (s Secret) GoString() string { return "credentials.Secret(" + strconv.Quote(Redacted) + ")" }

// Format prints Redacted for every verb and flag.
func (s Secret) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = io.WriteString(f, s.GoString())
	case verb == 'q':
		_, _ = io.WriteString(f, strconv.Quote(Redacted))
	default:
		_, _ = io.WriteString(f, Redacted)
	}
}

// MarshalJSON encodes the JSON string "[REDACTED]". A Secret cannot be
// decoded from JSON (it has no UnmarshalJSON), so a document never
// round-trips the placeholder into a password by accident.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(Redacted)), nil }

// MarshalText encodes Redacted.
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// MarshalZerologObject logs {"redacted":true}.
func (s Secret) MarshalZerologObject(e *zerolog.Event) { e.Bool("redacted", true) }

// LogValue makes log/slog print Redacted.
func (s Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }
