package credentials

import (
	"bytes"
	"crypto/sha256"
	"database/sql/driver"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Limits of the sealed format. The decoders check them before doing any
// work, so a hostile blob cannot make them allocate much.
const (
	// MaxPasswordLength is the longest plaintext a Sealer seals, in bytes.
	MaxPasswordLength = 1024
	// MaxKeyIDLength is the longest key id.
	MaxKeyIDLength = 64
	// NonceSize is the AES-GCM nonce size.
	NonceSize = 12
	// TagSize is the AES-GCM authentication tag size.
	TagSize = 16
	// MaxSealedBinaryLength bounds the binary encoding.
	MaxSealedBinaryLength = 2 + MaxKeyIDLength + NonceSize + TagSize + MaxPasswordLength
	// MaxSealedTextLength bounds the text encoding.
	MaxSealedTextLength = len(sealedTextPrefix) + MaxKeyIDLength + 1 + (NonceSize+TagSize+MaxPasswordLength+2)/3*4

	sealedVersion1   = 1
	sealedTextPrefix = "tfsealed:v1:"
)

// Sealed is an encrypted password: the id of the key that sealed it, a
// nonce and the ciphertext with its authentication tag. It holds no
// plaintext, so printing it is safe; String prints only the key id and a
// fingerprint of the ciphertext.
//
// The zero Sealed means "no password". Sealed values are immutable.
//
// # Encodings (stable; they are stored in databases)
//
// Binary (MarshalBinary), version 1:
//
//	byte 0       version, 0x01
//	byte 1       key id length L, 1..64
//	bytes 2..    key id (L bytes of [A-Za-z0-9_-])
//	12 bytes     nonce
//	rest         ciphertext and 16-byte tag (16..1040 bytes)
//
// Text (MarshalText, JSON string, database/sql Value):
//
//	tfsealed:v1:<key id>:<base64url without padding of nonce||ciphertext||tag>
//
// The zero Sealed encodes as an empty binary, an empty text and the JSON
// string "". The key id is readable in the text form, so a store can find
// the passwords still sealed with a retired key.
type Sealed struct {
	keyID string
	nonce []byte
	ct    []byte // ciphertext || tag
}

// KeyID returns the id of the key that sealed the password ("" for zero).
func (s Sealed) KeyID() string { return s.keyID }

// IsZero reports whether s holds no password.
func (s Sealed) IsZero() bool { return s.keyID == "" && len(s.nonce) == 0 && len(s.ct) == 0 }

// Equal reports whether s and o are the same ciphertext. Two seals of the
// same password are different ciphertexts (fresh nonces); compare
// plaintexts with Sealer.Open and Secret.Equal.
func (s Sealed) Equal(o Sealed) bool {
	return s.keyID == o.keyID && bytes.Equal(s.nonce, o.nonce) && bytes.Equal(s.ct, o.ct)
}

// Fingerprint is a short hash of the ciphertext, to tell sealed values
// apart in logs and diffs. It says nothing about the plaintext.
func (s Sealed) Fingerprint() string {
	if s.IsZero() {
		return ""
	}
	h := sha256.New()
	h.Write(s.nonce)
	h.Write(s.ct)
	return hex.EncodeToString(h.Sum(nil)[:6])
}

// String returns "sealed(<key id> #<fingerprint>)", or "sealed(none)".
func (s Sealed) String() string {
	if s.IsZero() {
		return "sealed(none)"
	}
	return "sealed(" + s.keyID + " #" + s.Fingerprint() + ")"
}

// GoString returns the same text as String, quoted in Go syntax.
func (s Sealed) GoString() string { return "credentials.Sealed(" + strconv.Quote(s.String()) + ")" }

// MarshalBinary returns the binary encoding (empty for the zero Sealed).
func (s Sealed) MarshalBinary() ([]byte, error) {
	if s.IsZero() {
		return []byte{}, nil
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	out := make([]byte, 0, 2+len(s.keyID)+len(s.nonce)+len(s.ct))
	out = append(out, sealedVersion1, byte(len(s.keyID)))
	out = append(out, s.keyID...)
	out = append(out, s.nonce...)
	out = append(out, s.ct...)
	return out, nil
}

// UnmarshalBinary decodes the binary encoding; an empty input is the zero
// Sealed. Errors match ErrMalformed (and so ErrSealed and ErrInvalid).
func (s *Sealed) UnmarshalBinary(data []byte) error {
	v, err := DecodeSealed(data)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// DecodeSealed decodes the binary encoding. It never panics, allocates at
// most MaxSealedBinaryLength bytes and copies its input.
func DecodeSealed(data []byte) (Sealed, error) {
	if len(data) == 0 {
		return Sealed{}, nil
	}
	if len(data) > MaxSealedBinaryLength {
		return Sealed{}, malformed("longer than %d bytes", MaxSealedBinaryLength)
	}
	if data[0] != sealedVersion1 {
		return Sealed{}, malformed("unsupported version %d", data[0])
	}
	if len(data) < 2 {
		return Sealed{}, malformed("truncated header")
	}
	l := int(data[1])
	rest := data[2:]
	if l < 1 || l > MaxKeyIDLength || len(rest) < l {
		return Sealed{}, malformed("bad key id length %d", l)
	}
	id := string(rest[:l])
	if err := checkKeyID(id); err != nil {
		return Sealed{}, malformed("bad key id")
	}
	rest = rest[l:]
	if len(rest) < NonceSize+TagSize {
		return Sealed{}, malformed("truncated ciphertext")
	}
	if len(rest) > NonceSize+TagSize+MaxPasswordLength {
		return Sealed{}, malformed("ciphertext longer than the longest password")
	}
	return Sealed{
		keyID: id,
		nonce: bytes.Clone(rest[:NonceSize]),
		ct:    bytes.Clone(rest[NonceSize:]),
	}, nil
}

// MarshalText returns the text encoding (empty for the zero Sealed).
func (s Sealed) MarshalText() ([]byte, error) {
	if s.IsZero() {
		return []byte{}, nil
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	body := make([]byte, 0, len(s.nonce)+len(s.ct))
	body = append(append(body, s.nonce...), s.ct...)
	out := make([]byte, 0, len(sealedTextPrefix)+len(s.keyID)+1+base64.RawURLEncoding.EncodedLen(len(body)))
	out = append(out, sealedTextPrefix...)
	out = append(out, s.keyID...)
	out = append(out, ':')
	return base64.RawURLEncoding.AppendEncode(out, body), nil
}

// UnmarshalText decodes the text encoding; an empty input is the zero
// Sealed.
func (s *Sealed) UnmarshalText(text []byte) error {
	v, err := ParseSealed(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSealed decodes the text encoding. It never panics and rejects inputs
// longer than MaxSealedTextLength before decoding.
func ParseSealed(text string) (Sealed, error) {
	if text == "" {
		return Sealed{}, nil
	}
	if len(text) > MaxSealedTextLength {
		return Sealed{}, malformed("longer than %d characters", MaxSealedTextLength)
	}
	rest, ok := strings.CutPrefix(text, sealedTextPrefix)
	if !ok {
		if strings.HasPrefix(text, "tfsealed:") {
			return Sealed{}, malformed("unsupported version")
		}
		return Sealed{}, malformed("missing the %q prefix", sealedTextPrefix)
	}
	id, body, ok := strings.Cut(rest, ":")
	if !ok {
		return Sealed{}, malformed("missing the key id separator")
	}
	if err := checkKeyID(id); err != nil {
		return Sealed{}, malformed("bad key id")
	}
	// The base64 decoder skips '\r' and '\n'; accept only the canonical
	// alphabet so every value has exactly one text form.
	for i := 0; i < len(body); i++ {
		if c := body[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return Sealed{}, malformed("bad base64 ciphertext")
		}
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil {
		return Sealed{}, malformed("bad base64 ciphertext")
	}
	if len(raw) < NonceSize+TagSize {
		return Sealed{}, malformed("truncated ciphertext")
	}
	if len(raw) > NonceSize+TagSize+MaxPasswordLength {
		return Sealed{}, malformed("ciphertext longer than the longest password")
	}
	return Sealed{keyID: id, nonce: raw[:NonceSize:NonceSize], ct: raw[NonceSize:]}, nil
}

// MarshalJSON encodes the text encoding as a JSON string ("" for zero).
func (s Sealed) MarshalJSON() ([]byte, error) {
	t, err := s.MarshalText()
	if err != nil {
		return nil, err
	}
	return []byte(strconv.Quote(string(t))), nil
}

// UnmarshalJSON decodes a JSON string holding the text encoding. "" is the
// zero Sealed; null leaves s unchanged (the encoding/json convention).
func (s *Sealed) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	if len(data) > MaxSealedTextLength+2 {
		return malformed("longer than %d characters", MaxSealedTextLength)
	}
	str, err := strconv.Unquote(string(data))
	if err != nil || len(data) < 2 || data[0] != '"' {
		return malformed("not a JSON string")
	}
	return s.UnmarshalText([]byte(str))
}

// Value implements database/sql/driver.Valuer: the text encoding, or NULL
// for the zero Sealed.
func (s Sealed) Value() (driver.Value, error) {
	if s.IsZero() {
		return nil, nil
	}
	t, err := s.MarshalText()
	if err != nil {
		return nil, err
	}
	return string(t), nil
}

// Scan implements database/sql.Scanner. It accepts NULL (zero), the text
// encoding as string or []byte, and the binary encoding as []byte.
func (s *Sealed) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*s = Sealed{}
		return nil
	case string:
		return s.UnmarshalText([]byte(v))
	case []byte:
		if len(v) > 0 && v[0] == sealedVersion1 {
			return s.UnmarshalBinary(v)
		}
		return s.UnmarshalText(v)
	}
	return malformed("cannot scan %T", src)
}

// check guards the encoders against a Sealed built by hand in this package.
func (s Sealed) check() error {
	if checkKeyID(s.keyID) != nil || len(s.nonce) != NonceSize || len(s.ct) < TagSize || len(s.ct) > TagSize+MaxPasswordLength {
		return malformed("inconsistent sealed value")
	}
	return nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// checkKeyID enforces the key id syntax: 1..64 bytes of [A-Za-z0-9_-].
func checkKeyID(id string) error {
	if id == "" || len(id) > MaxKeyIDLength {
		return fmt.Errorf("must be 1 to %d characters", MaxKeyIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("must contain only letters, digits, '_' and '-'")
		}
	}
	return nil
}
