package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// Protocol versions. See the package documentation, "Wire protocol".
const (
	// ProtocolVersion is the version this package's runtimes speak and
	// write into Message.Version.
	ProtocolVersion = 4
	// MinProtocolVersion is the oldest version a server of this version
	// accepts: an agent one version older keeps working. Version 0 (no
	// version field) is protocol 1.
	MinProtocolVersion = 1
)

// Limits of a message from a device. The server checks them before it
// looks at an item; transports enforce MaxMessageBytes before decoding.
const (
	// MaxMessageBytes is the largest encoded message (8 MiB): a
	// transport reads no more than this of one message.
	MaxMessageBytes = 8 << 20
	// MaxItems is the most results, events or acknowledged keys one
	// message carries; items beyond it are rejected.
	MaxItems = 1000
	// MaxHeld is the most held tasks one heartbeat lists; entries beyond
	// it are rejected.
	MaxHeld = 10000
	// MaxText is the longest result or event message, in bytes (the
	// task package's MaxResultMessage). Agents clip longer texts (Clip).
	MaxText = 4096
	// MaxKeyBytes is the longest key, task id or merged key.
	MaxKeyBytes = 512
	// MaxUserBytes is the longest local user name of an Edit.
	MaxUserBytes = 256
	// MaxEditBytes is the largest edited task document of an Edit.
	MaxEditBytes = 1 << 20
	// MaxSeq is the largest result Seq a device may send.
	MaxSeq = 1 << 20
)

// ErrTooLarge is returned by Decode for a message over MaxMessageBytes.
var ErrTooLarge = errors.New("transport: message larger than MaxMessageBytes")

// Encode returns the JSON form of m, with Version set to ProtocolVersion
// when it is zero.
func Encode(m Message) ([]byte, error) {
	if m.Version == 0 {
		m.Version = ProtocolVersion
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("transport: encode %s message: %w", m.Kind, err)
	}
	return b, nil
}

// Decode reads one JSON message of at most MaxMessageBytes from r.
// Unknown fields are ignored (a newer sender may add some); a message
// without a version is protocol 1. It checks the envelope only: the
// receiver checks the items (see the package documentation). Errors wrap
// ErrInvalid, or are ErrTooLarge.
func Decode(r io.Reader) (Message, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, MaxMessageBytes+1))
	if err != nil {
		return Message{}, fmt.Errorf("transport: read message: %w", err)
	}
	if n > MaxMessageBytes {
		return Message{}, ErrTooLarge
	}
	return DecodeBytes(buf.Bytes())
}

// DecodeBytes is Decode of a message already in memory.
func DecodeBytes(b []byte) (Message, error) {
	if len(b) > MaxMessageBytes {
		return Message{}, ErrTooLarge
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return Message{}, errs.Invalid("message", "", "is not a JSON message: "+err.Error())
	}
	if m.Kind == "" {
		return Message{}, errs.Invalid("kind", "", "is required")
	}
	if m.Version < 0 {
		return Message{}, errs.Invalid("version", fmt.Sprint(m.Version), "must not be negative")
	}
	return m, nil
}

// Clip returns s cut to at most n bytes at a UTF-8 boundary, ending in
// "…" when it was cut: how agents keep texts within MaxText.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ell = "…"
	if n < len(ell) {
		return ""
	}
	cut := n - len(ell)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}

// KnownKind reports whether k is a kind of this protocol version.
func KnownKind(k Kind) bool {
	switch k {
	case Deliver, Withdraw, StartRun, StopRun, PauseRun, ResumeRun, Wake, Shutdown, Sync,
		Heartbeat, Results, Events, UpdatesDownloaded, VirusOutbreak, LocalEdit, Ack, Error:
		return true
	}
	return false
}
