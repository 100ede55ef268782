package storage

import (
	"context"
	"crypto/sha256"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// DeviceKey is what a device channel keeps of one device's key (the
// enrollment identity of task/transport/httptransport): hashes only,
// never a key itself.
type DeviceKey struct {
	// DeviceID is the device the key identifies (1 to MaxDeviceKeyID
	// bytes).
	DeviceID string
	// Hash is the SHA-256 of the device's current key.
	Hash [sha256.Size]byte
	// Prev is the SHA-256 of the key Hash replaced by a rotation, still
	// valid until the device first uses the new one (zero: none).
	Prev [sha256.Size]byte
	// Created is when the key was issued; Expires when it stops being
	// valid (zero: never). Stored in UTC to the microsecond.
	Created, Expires time.Time
	// Revoked: the key is refused and the device may not enroll again.
	Revoked bool
	// Used: the key has authenticated a request.
	Used bool
}

// MaxDeviceKeyID bounds DeviceKey.DeviceID.
const MaxDeviceKeyID = 256

// PutDeviceKeyParams is the input of DeviceKeyStore.PutDeviceKey.
type PutDeviceKeyParams struct {
	// Key is stored under Key.DeviceID.
	Key DeviceKey
	// Expect is the Hash of the stored key being replaced; the zero hash
	// means the device must have no stored key. When the stored key does
	// not match, PutDeviceKey returns ErrConflict and changes nothing.
	Expect [sha256.Size]byte
}

// DeviceKeyStore keeps device keys durably, one per device, for a device
// channel's enrollment identity (httptransport.StoreKeys adapts it to
// httptransport.KeyStore), so enrolled devices keep their keys across a
// server restart. Implementations are safe for concurrent use; a store
// that has it passes storagetest's DeviceKeys cases.
type DeviceKeyStore interface {
	// DeviceKey returns the key of device id, or ErrNotFound.
	DeviceKey(ctx context.Context, deviceID string) (DeviceKey, error)
	// PutDeviceKey stores p.Key if the stored key matches p.Expect (an
	// atomic compare-and-set), else returns ErrConflict. ErrInvalid for
	// an empty or over-long DeviceID or a zero Hash.
	PutDeviceKey(ctx context.Context, p PutDeviceKeyParams) error
	// PutDeviceKeys applies each of ps as PutDeviceKey would, in order, in
	// one transaction (a device channel writes concurrent enrollments
	// together): errs[i] is item i's ErrConflict or ErrInvalid (that item
	// changed nothing, the others are stored); err is a failure of the
	// whole call, which then stored nothing.
	PutDeviceKeys(ctx context.Context, ps []PutDeviceKeyParams) (errs []error, err error)
	// DeleteDeviceKey removes the key of device id (no error when there
	// is none).
	DeleteDeviceKey(ctx context.Context, deviceID string) error
}

// ValidateDeviceKey returns ErrInvalid (a *errs.ValidationError) for a key
// a DeviceKeyStore must not store.
func ValidateDeviceKey(k DeviceKey) error {
	var bad errs.ValidationErrors
	if k.DeviceID == "" || len(k.DeviceID) > MaxDeviceKeyID {
		bad = append(bad, errs.Invalid("device_id", "", "must be 1 to 256 bytes"))
	}
	if k.Hash == [sha256.Size]byte{} {
		bad = append(bad, errs.Invalid("hash", "", "must not be zero"))
	}
	return bad.Err()
}
