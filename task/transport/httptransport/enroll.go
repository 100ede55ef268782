package httptransport

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Sentinel errors, shared with every taskfleet package.
var (
	ErrInvalid  = errs.ErrInvalid
	ErrNotFound = errs.ErrNotFound
	ErrConflict = errs.ErrConflict
)

// ErrRevoked is returned by Enroll for a device whose key was revoked: it
// cannot enroll again until an operator calls Reset.
var ErrRevoked = errors.New("httptransport: device revoked")

// ErrEnrolled is returned by Enroll for a device that holds a valid key
// (see EnrollmentConfig.AllowReenroll). It matches ErrConflict.
var ErrEnrolled = fmt.Errorf("httptransport: device already enrolled: %w", errs.ErrConflict)

// ErrNotKnown is returned by Enroll for a device that
// EnrollmentConfig.Known refused (the answer is 403 with reason
// not_known).
var ErrNotKnown = errors.New("httptransport: device not known to the server")

// notKnown is the Known check's refusal: it matches ErrNotKnown and keeps
// the host's error.
type notKnown struct {
	device transport.DeviceID
	err    error
}

func (e *notKnown) Error() string {
	return "httptransport: enroll " + clipID(e.device) + ": not known: " + e.err.Error()
}
func (e *notKnown) Unwrap() error        { return e.err }
func (e *notKnown) Is(target error) bool { return target == ErrNotKnown }

// ErrRateLimited is returned by Enroll when enrollments arrive faster than
// EnrollmentConfig.Rate allows.
var ErrRateLimited = errors.New("httptransport: enrollment rate limited")

// ErrBadSecret is returned by Enroll for a wrong enrollment secret. It
// matches ErrUnauthenticated.
var ErrBadSecret = fmt.Errorf("httptransport: wrong enrollment secret: %w", ErrUnauthenticated)

// Secret is a key or an enrollment secret. Its String and Format print
// "[redacted]", so it never reaches a log line or an error by accident;
// use string(s) where the value itself is meant.
type Secret string

// String implements fmt.Stringer without the value.
func (Secret) String() string { return "[redacted]" }

// GoString implements fmt.GoStringer without the value.
func (Secret) GoString() string { return "httptransport.Secret([redacted])" }

// Format implements fmt.Formatter without the value, for every verb.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[redacted]")) }

// MarshalText refuses to encode a secret (so it never lands in a JSON
// document by accident).
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// Hash is the SHA-256 of a device key: all the server stores of it.
type Hash [sha256.Size]byte

// HashKey returns the Hash of key.
func HashKey(key Secret) Hash { return sha256.Sum256([]byte(key)) }

// newKey returns a new device key: 256 random bits, base64url.
func newKey() (Secret, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("httptransport: new key: %w", err)
	}
	return Secret(base64.RawURLEncoding.EncodeToString(b)), nil
}

// KeyRecord is what the server keeps of a device's key.
type KeyRecord struct {
	Device transport.DeviceID
	// Hash is the SHA-256 of the device's key.
	Hash Hash
	// Prev is the hash of the key the device held when it asked for the
	// rotation that issued Hash (zero: none pending). It stays valid until
	// the device first uses its new key, so rotations whose answers were
	// lost (one or several) do not lock the device out.
	Prev Hash
	// Created is when the key was issued (UTC).
	Created time.Time
	// Expires is when the key stops being valid (zero: never).
	Expires time.Time
	// Revoked is set by Revoke: the key is refused and the device cannot
	// enroll again until Reset.
	Revoked bool
	// Used is set when the key first authenticates a request, and by a
	// rotation (the device proved its identity to ask for it). Until then
	// the device may enroll again with the secret (the answer of its
	// enrollment may have been lost), which replaces the key; after, an
	// enrollment is refused (ErrEnrolled) unless AllowReenroll.
	Used bool
}

// PutKeyParams is the input of KeyStore.PutKey.
type PutKeyParams struct {
	// Record is stored under Record.Device.
	Record KeyRecord
	// Expect is the Hash of the record being replaced; the zero Hash
	// means the device must have no record. When the stored record does
	// not match, PutKey returns an error matching ErrConflict.
	Expect Hash
}

// KeyStore keeps the device keys' records durably. Implementations must be
// safe for concurrent use; MemKeyStore keeps them in memory (they are lost
// with the process: every device then enrolls again). A durable one keeps
// one row per device (device primary key, hash, prev, created, expires,
// revoked) and implements PutKey as a conditional insert or update.
type KeyStore interface {
	// Key returns the record of device; an error matching ErrNotFound
	// when there is none.
	Key(ctx context.Context, device transport.DeviceID) (KeyRecord, error)
	// PutKey stores p.Record if the stored record matches p.Expect, else
	// returns an error matching ErrConflict.
	PutKey(ctx context.Context, p PutKeyParams) error
	// DeleteKey removes the record of device (no error when there is
	// none).
	DeleteKey(ctx context.Context, device transport.DeviceID) error
}

// MemKeyStore is an in-memory KeyStore.
type MemKeyStore struct {
	mu   sync.RWMutex
	keys map[transport.DeviceID]KeyRecord
}

// NewMemKeyStore returns an empty MemKeyStore.
func NewMemKeyStore() *MemKeyStore { return &MemKeyStore{keys: map[transport.DeviceID]KeyRecord{}} }

var _ KeyStore = (*MemKeyStore)(nil)

// Key implements KeyStore.
func (s *MemKeyStore) Key(_ context.Context, device transport.DeviceID) (KeyRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.keys[device]
	if !ok {
		return KeyRecord{}, fmt.Errorf("httptransport: key of %s: %w", clipID(device), ErrNotFound)
	}
	return r, nil
}

// PutKey implements KeyStore.
func (s *MemKeyStore) PutKey(_ context.Context, p PutKeyParams) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.keys[p.Record.Device]
	if (!ok && p.Expect != Hash{}) || (ok && old.Hash != p.Expect) {
		return fmt.Errorf("httptransport: key of %s changed: %w", clipID(p.Record.Device), ErrConflict)
	}
	s.keys[p.Record.Device] = p.Record
	return nil
}

// DeleteKey implements KeyStore.
func (s *MemKeyStore) DeleteKey(_ context.Context, device transport.DeviceID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, device)
	return nil
}

// Enrollment defaults.
const (
	// DefaultEnrollRate is how many enrollments per second the server
	// accepts (DefaultEnrollBurst at once); more get 429.
	DefaultEnrollRate  = 200
	DefaultEnrollBurst = 1000
	// MinSecretBytes is the shortest enrollment secret accepted.
	MinSecretBytes = 16
)

// EnrollmentConfig configures an Enrollment.
type EnrollmentConfig struct {
	// Secret is the fleet's enrollment secret (at least MinSecretBytes),
	// given to devices once. Required.
	Secret Secret
	// Keys keeps the device keys' hashes (default: a new MemKeyStore).
	Keys KeyStore
	// Clock drives key expiry and the enrollment rate limit.
	Clock  clock.Clock
	Logger zerolog.Logger
	// KeyTTL is how long a key is valid after it was issued (zero: keys
	// do not expire). A device whose key expired enrolls again with the
	// secret (the client does so on its own when it has it); agents
	// rotate before with ClientConfig.RotateEvery.
	KeyTTL time.Duration
	// Rate and Burst bound enrollments (default DefaultEnrollRate per
	// second, DefaultEnrollBurst at once), including refused ones: a
	// guesser of the secret gets 429.
	Rate  float64
	Burst int
	// AllowReenroll lets a device that holds a valid key enroll again with
	// the secret, replacing its key (osquery's behaviour). Off by
	// default: then anyone holding the secret could take a device's
	// identity over; instead an operator calls Reset for a device that
	// lost its key.
	AllowReenroll bool
	// Known, when set, is asked whether a device id may enroll (for
	// example: it is in the inventory). An error refuses the enrollment.
	Known func(ctx context.Context, device transport.DeviceID) error
}

// Enrollment is the enrollment Identity: a device presents the
// enrollment secret once (Enroll) and receives a per-device key, which it
// presents on every request afterwards (headers Taskfleet-Device and
// Authorization: Bearer KEY). The server stores only the key's SHA-256
// and compares it in constant time. Keys can be revoked (Revoke), rotated
// by the device (Rotate) and expire (KeyTTL).
type Enrollment struct {
	cfg  EnrollmentConfig
	clk  clock.Clock
	log  zerolog.Logger
	sec  Hash
	mu   sync.Mutex // the enrollment rate limit
	tok  float64
	last time.Time
	// devs serialize the read-modify-write of one device's record: a
	// lock per device with a request on it (none for the others), so
	// devices never wait for each other, and a durable KeyStore can write
	// any number of concurrent enrollments together (StoreKeys does).
	// A fixed set of striped locks, held while the write waits for its
	// batch, let at most that many enrollments share a batch.
	devMu sync.Mutex
	devs  map[transport.DeviceID]*deviceLock
}

// deviceLock is one device's lock and the number of goroutines holding
// or waiting for it.
type deviceLock struct {
	sync.Mutex
	refs int
}

// lock locks device's record and returns the unlock.
func (e *Enrollment) lock(device transport.DeviceID) (unlock func()) {
	e.devMu.Lock()
	l := e.devs[device]
	if l == nil {
		l = &deviceLock{}
		e.devs[device] = l
	}
	l.refs++
	e.devMu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		e.devMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(e.devs, device)
		}
		e.devMu.Unlock()
	}
}

var _ Identity = (*Enrollment)(nil)

// NewEnrollment returns an Enrollment. Errors match ErrInvalid.
func NewEnrollment(cfg EnrollmentConfig) (*Enrollment, error) {
	if len(cfg.Secret) < MinSecretBytes {
		return nil, errs.Invalid("Secret", "", fmt.Sprintf("must be at least %d bytes", MinSecretBytes))
	}
	if cfg.Keys == nil {
		cfg.Keys = NewMemKeyStore()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultEnrollRate
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultEnrollBurst
	}
	if cfg.Rate < 0 || cfg.Burst < 0 || cfg.KeyTTL < 0 {
		return nil, errs.Invalid("Rate", fmt.Sprint(cfg.Rate), "Rate, Burst and KeyTTL must not be negative")
	}
	return &Enrollment{cfg: cfg, clk: cfg.Clock, log: cfg.Logger, sec: HashKey(cfg.Secret), tok: float64(cfg.Burst), last: cfg.Clock.Now(),
		devs: map[transport.DeviceID]*deviceLock{}}, nil
}

// allow takes one token of the enrollment rate limit; e.mu is held.
func (e *Enrollment) allow(now time.Time) bool {
	if d := now.Sub(e.last); d > 0 {
		e.tok = min(float64(e.cfg.Burst), e.tok+d.Seconds()*e.cfg.Rate)
	}
	e.last = now
	if e.tok < 1 {
		return false
	}
	e.tok--
	return true
}

// Enroll issues a key to device for the enrollment secret. A device whose
// key has never authenticated a request may enroll again (its first
// answer may have been lost): the new key replaces the unused one. It
// returns ErrRateLimited, ErrBadSecret, ErrRevoked, ErrEnrolled, an
// error matching ErrInvalid for a malformed device id, one matching
// ErrNotKnown (wrapping the Known check's error), or the KeyStore's
// error. The key is returned once; only its hash is kept.
func (e *Enrollment) Enroll(ctx context.Context, device transport.DeviceID, secret Secret) (Secret, error) {
	e.mu.Lock()
	now := e.clk.Now()
	ok := e.allow(now)
	e.mu.Unlock()
	if !ok {
		return "", ErrRateLimited
	}
	h := HashKey(secret)
	if subtle.ConstantTimeCompare(h[:], e.sec[:]) != 1 {
		e.log.Info().Str("device", clipID(device)).Msg("httptransport: enrollment with a wrong secret refused")
		return "", ErrBadSecret
	}
	if !validID(device) {
		return "", errs.Invalid("device", clipID(device), fmt.Sprintf("must be 1 to %d bytes of text", MaxDeviceIDBytes))
	}
	if e.cfg.Known != nil {
		if err := e.cfg.Known(ctx, device); err != nil {
			return "", &notKnown{device: device, err: err}
		}
	}
	defer e.lock(device)()
	var expect Hash
	old, err := e.cfg.Keys.Key(ctx, device)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return "", err
	case old.Revoked:
		return "", ErrRevoked
	case old.Used && !e.expired(old, now) && !e.cfg.AllowReenroll:
		return "", ErrEnrolled
	default:
		expect = old.Hash
	}
	key, err := newKey()
	if err != nil {
		return "", err
	}
	if err := e.cfg.Keys.PutKey(ctx, PutKeyParams{Record: e.record(device, HashKey(key), now), Expect: expect}); err != nil {
		return "", err
	}
	e.log.Info().Str("device", clipID(device)).Msg("httptransport: device enrolled")
	return key, nil
}

func (e *Enrollment) record(device transport.DeviceID, h Hash, now time.Time) KeyRecord {
	r := KeyRecord{Device: device, Hash: h, Created: now.UTC()}
	if e.cfg.KeyTTL > 0 {
		r.Expires = now.Add(e.cfg.KeyTTL).UTC()
	}
	return r
}

func (e *Enrollment) expired(r KeyRecord, now time.Time) bool {
	return !r.Expires.IsZero() && !now.Before(r.Expires)
}

// Rotate replaces the key of an authenticated device with a new one,
// which it returns. The key the device holds stays valid until the device
// first uses the new one (the answer may be lost), and the device stays
// established meanwhile: no enrollment with the secret replaces it.
// Errors: the KeyStore's (ErrNotFound, ErrConflict).
func (e *Enrollment) Rotate(ctx context.Context, device transport.DeviceID) (Secret, error) {
	return e.rotate(ctx, device, Hash{})
}

// rotate is Rotate for a request that presented the key whose hash is
// held (zero: not known; then the device holds the previous key if it has
// not used the current one, else the current one).
func (e *Enrollment) rotate(ctx context.Context, device transport.DeviceID, held Hash) (Secret, error) {
	defer e.lock(device)()
	old, err := e.cfg.Keys.Key(ctx, device)
	if err != nil {
		return "", err
	}
	if old.Revoked {
		return "", ErrRevoked
	}
	if held != old.Hash && held != old.Prev || held == (Hash{}) {
		// Without a rotation pending, the device holds its current key;
		// with one (Prev set), the previous one, which it last used.
		held = old.Hash
		if old.Prev != (Hash{}) {
			held = old.Prev
		}
	}
	key, err := newKey()
	if err != nil {
		return "", err
	}
	r := e.record(device, HashKey(key), e.clk.Now())
	// Prev is the key the device holds, not a key whose answer it never
	// got (a second rotation with the first's answer lost made the
	// device's own key invalid). Used: the device proved its identity.
	r.Prev, r.Used = held, true
	if err := e.cfg.Keys.PutKey(ctx, PutKeyParams{Record: r, Expect: old.Hash}); err != nil {
		return "", err
	}
	e.log.Info().Str("device", clipID(device)).Msg("httptransport: device key rotated")
	return key, nil
}

// Revoke refuses device's key from now on; the device cannot enroll again
// until Reset. Errors: ErrNotFound for a device without a key, or the
// KeyStore's.
func (e *Enrollment) Revoke(ctx context.Context, device transport.DeviceID) error {
	defer e.lock(device)()
	old, err := e.cfg.Keys.Key(ctx, device)
	if err != nil {
		return err
	}
	r := old
	r.Revoked, r.Prev = true, Hash{}
	if err := e.cfg.Keys.PutKey(ctx, PutKeyParams{Record: r, Expect: old.Hash}); err != nil {
		return err
	}
	e.log.Info().Str("device", clipID(device)).Msg("httptransport: device key revoked")
	return nil
}

// Reset forgets device's key (revoked or not): the device may enroll
// again with the secret. For a device that lost its key, or a revoked
// one the operator lets back in.
func (e *Enrollment) Reset(ctx context.Context, device transport.DeviceID) error {
	defer e.lock(device)()
	return e.cfg.Keys.DeleteKey(ctx, device)
}

// Header names of the enrollment identity.
const (
	// HeaderDevice carries the device id of a request.
	HeaderDevice = "Taskfleet-Device"
	// HeaderAuthError carries the Reason of a 401 answer.
	HeaderAuthError = "Taskfleet-Auth-Error"
)

// Authenticate implements Identity: the request's Taskfleet-Device and
// Authorization: Bearer KEY headers must name a device whose stored hash
// (or, after a rotation, previous hash) is the key's.
func (e *Enrollment) Authenticate(r *http.Request) (transport.DeviceID, error) {
	id := transport.DeviceID(r.Header.Get(HeaderDevice))
	key, ok := bearer(r)
	if !ok || !validID(id) {
		return "", &AuthError{Device: id, Reason: ReasonMissing}
	}
	rec, err := e.cfg.Keys.Key(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		return "", &AuthError{Device: id, Reason: ReasonUnknown}
	}
	if err != nil {
		return "", err
	}
	h := HashKey(key)
	cur := subtle.ConstantTimeCompare(h[:], rec.Hash[:]) == 1
	prev := rec.Prev != Hash{} && subtle.ConstantTimeCompare(h[:], rec.Prev[:]) == 1
	switch {
	case rec.Revoked:
		return "", &AuthError{Device: id, Reason: ReasonRevoked}
	case !cur && !prev:
		return "", &AuthError{Device: id, Reason: ReasonBadKey}
	case e.expired(rec, e.clk.Now()):
		return "", &AuthError{Device: id, Reason: ReasonExpired}
	}
	if cur && (rec.Prev != (Hash{}) || !rec.Used) {
		// The device uses its (new) key: it is established, and the old
		// one is done. Re-read under the lock so that a concurrent Revoke
		// is kept.
		unlock := e.lock(id)
		if nr, err := e.cfg.Keys.Key(r.Context(), id); err == nil && nr == rec {
			nr.Prev, nr.Used = Hash{}, true
			_ = e.cfg.Keys.PutKey(r.Context(), PutKeyParams{Record: nr, Expect: rec.Hash})
		}
		unlock()
	}
	return id, nil
}

func bearer(r *http.Request) (Secret, bool) {
	const p = "Bearer "
	a := r.Header.Get("Authorization")
	if len(a) <= len(p) || len(a) > 1024 || a[:len(p)] != p {
		return "", false
	}
	return Secret(a[len(p):]), true
}
