package credentials

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"io"
	"sync"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// Sealer seals and opens passwords.
//
// Implementations must be safe for concurrent use by multiple goroutines.
// Seal must return a fresh, authenticated ciphertext whose Sealed.KeyID names
// the key used; it returns a *ValidationError for a plaintext longer than
// MaxPasswordLength. Open must return an error matching ErrUnknownKey when
// it does not hold the key id, ErrTampered when authentication fails and
// ErrMalformed for a zero or inconsistent Sealed; errors never contain the
// plaintext.
type Sealer interface {
	// Seal encrypts plaintext with the active key.
	Seal(plaintext Secret) (Sealed, error)
	// Open decrypts sealed with the key it names.
	Open(sealed Sealed) (Secret, error)
}

// KeySize is the AES-256 key size in bytes.
const KeySize = 32

// Key is one AES-256 key of a keyring. Material is copied by NewAESGCM; the
// caller may wipe its copy afterwards.
type Key struct {
	// ID names the key in every Sealed it seals: 1..64 characters of
	// [A-Za-z0-9_-]. Never reuse an id for different material.
	ID string
	// Material is the 32-byte key.
	Material []byte
}

// AESGCMConfig configures an AESGCM sealer.
type AESGCMConfig struct {
	// Keys is the keyring: every key that may have sealed a stored
	// password. At least one.
	Keys []Key
	// ActiveKeyID is the key Seal uses; it must be in Keys.
	ActiveKeyID string
	// Rand supplies nonces; nil means crypto/rand. Tests inject a
	// deterministic reader. Calls to it are serialised, so it need not be
	// safe for concurrent use.
	Rand io.Reader
}

// AESGCM is a Sealer using AES-256-GCM with a keyring of host-supplied keys.
// Every seal uses the active key and a random 96-bit nonce; the key id and
// the format version are authenticated as additional data. Rotate keys by
// adding a new key, making it active, re-sealing stored passwords with
// Reseal (or AESGCM.NeedsReseal to find them) and only then removing the
// old key. With random nonces, seal at most 2^32 passwords per key.
//
// AESGCM is safe for concurrent use.
type AESGCM struct {
	active string
	aeads  map[string]cipher.AEAD

	randMu sync.Mutex
	rand   io.Reader
}

var _ Sealer = (*AESGCM)(nil)

// NewAESGCM validates cfg and returns the sealer. Errors are
// ValidationErrors naming fields like "keys[1].material"; they never
// contain key material.
func NewAESGCM(cfg AESGCMConfig) (*AESGCM, error) {
	var bad ValidationErrors
	if len(cfg.Keys) == 0 {
		bad = append(bad, errs.Invalid("keys", "", "at least one key is required"))
	}
	a := &AESGCM{active: cfg.ActiveKeyID, aeads: make(map[string]cipher.AEAD, len(cfg.Keys)), rand: cfg.Rand}
	for i, k := range cfg.Keys {
		field := fmt.Sprintf("keys[%d]", i)
		if err := checkKeyID(k.ID); err != nil {
			bad = append(bad, errs.Invalid(field+".id", printable(k.ID), err.Error()))
			continue
		}
		if _, dup := a.aeads[k.ID]; dup {
			bad = append(bad, errs.Invalid(field+".id", k.ID, "duplicate key id"))
			continue
		}
		if len(k.Material) != KeySize {
			bad = append(bad, errs.Invalid(field+".material", "", fmt.Sprintf("must be %d bytes, got %d", KeySize, len(k.Material))))
			continue
		}
		block, err := aes.NewCipher(bytes.Clone(k.Material))
		if err != nil {
			bad = append(bad, errs.Invalid(field+".material", "", err.Error()))
			continue
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			bad = append(bad, errs.Invalid(field+".material", "", err.Error()))
			continue
		}
		a.aeads[k.ID] = aead
	}
	if len(cfg.Keys) > 0 {
		if _, ok := a.aeads[cfg.ActiveKeyID]; !ok && len(bad) == 0 {
			bad = append(bad, errs.Invalid("active_key_id", printable(cfg.ActiveKeyID), "must be the id of one of the keys"))
		}
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	if a.rand == nil {
		a.rand = rand.Reader
	}
	return a, nil
}

func printable(s string) string {
	if len(s) > MaxKeyIDLength {
		return s[:MaxKeyIDLength] + "..."
	}
	return s
}

// ActiveKeyID returns the id of the key Seal uses.
func (a *AESGCM) ActiveKeyID() string { return a.active }

// HasKey reports whether the keyring holds id.
func (a *AESGCM) HasKey(id string) bool { _, ok := a.aeads[id]; return ok }

// NeedsReseal reports whether s was sealed with a key other than the active
// one.
func (a *AESGCM) NeedsReseal(s Sealed) bool { return !s.IsZero() && s.keyID != a.active }

func additionalData(keyID string) []byte {
	return append([]byte("taskfleet/credentials sealed v1\x00"), keyID...)
}

// Seal encrypts plaintext with the active key.
func (a *AESGCM) Seal(plaintext Secret) (Sealed, error) {
	if plaintext.Len() > MaxPasswordLength {
		return Sealed{}, errs.Invalid("password", "", fmt.Sprintf("must be at most %d bytes", MaxPasswordLength))
	}
	nonce := make([]byte, NonceSize)
	a.randMu.Lock()
	_, err := io.ReadFull(a.rand, nonce)
	a.randMu.Unlock()
	if err != nil {
		return Sealed{}, fmt.Errorf("credentials: reading a nonce: %w", err)
	}
	aead := a.aeads[a.active]
	ct := aead.Seal(nil, nonce, []byte(plaintext.Reveal()), additionalData(a.active))
	return Sealed{keyID: a.active, nonce: nonce, ct: ct}, nil
}

// Open decrypts s with the key named by its key id.
func (a *AESGCM) Open(s Sealed) (Secret, error) {
	if s.IsZero() {
		return Secret{}, fmt.Errorf("%w: no sealed password", ErrMalformed)
	}
	if err := s.check(); err != nil {
		return Secret{}, err
	}
	aead, ok := a.aeads[s.keyID]
	if !ok {
		return Secret{}, fmt.Errorf("%w %q", ErrUnknownKey, s.keyID)
	}
	pt, err := aead.Open(nil, s.nonce, s.ct, additionalData(s.keyID))
	if err != nil {
		return Secret{}, fmt.Errorf("%w (key id %q)", ErrTampered, s.keyID)
	}
	secret := NewSecret(string(pt))
	clear(pt)
	return secret, nil
}

// ActiveKeyer is an optional interface of a Sealer that can tell which key
// it seals with; Reseal uses it to skip passwords already sealed with it.
type ActiveKeyer interface {
	// ActiveKeyID returns the id of the key Seal uses.
	ActiveKeyID() string
}

// Reseal opens old with any key s holds and seals it again with the active
// key. When s is an ActiveKeyer and old already uses the active key, old is
// returned unchanged with resealed false. Errors are those of Open and Seal.
func Reseal(s Sealer, old Sealed) (sealed Sealed, resealed bool, err error) {
	if ak, ok := s.(ActiveKeyer); ok && !old.IsZero() && old.keyID == ak.ActiveKeyID() {
		return old, false, nil
	}
	pt, err := s.Open(old)
	if err != nil {
		return Sealed{}, false, err
	}
	n, err := s.Seal(pt)
	if err != nil {
		return Sealed{}, false, err
	}
	return n, true, nil
}
