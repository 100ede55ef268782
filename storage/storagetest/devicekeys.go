package storagetest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/storage"
)

// testDeviceKeysFlag fails when Features.DeviceKeys and the store
// disagree.
func testDeviceKeysFlag(t *testing.T, s storage.Store, f Features) {
	if _, ok := s.(storage.DeviceKeyStore); ok != f.DeviceKeys {
		t.Fatalf("%T implements storage.DeviceKeyStore: %v, but Features.DeviceKeys is %v", s, ok, f.DeviceKeys)
	}
}

func keys(t *testing.T, s storage.Store) storage.DeviceKeyStore {
	t.Helper()
	k, ok := s.(storage.DeviceKeyStore)
	if !ok {
		t.Fatalf("%T does not implement storage.DeviceKeyStore", s)
	}
	return k
}

// testDeviceKeys checks storage.DeviceKeyStore: round trip of every field
// (times in UTC to the microsecond), the compare-and-set of PutDeviceKey
// (a new key only for a device without one, a replacement only of the
// expected hash; a refused put changes nothing), ErrNotFound, idempotent
// delete, isolation between devices, and ErrInvalid.
func testDeviceKeys(t *testing.T, s storage.Store, _ Features) {
	ks := keys(t, s)
	h := func(b byte) [sha256.Size]byte { return sha256.Sum256([]byte{b}) }
	berlin := time.FixedZone("CET", 3600)
	k1 := storage.DeviceKey{DeviceID: "dev-1", Hash: h(1), Created: base.In(berlin).Add(123456789 * time.Nanosecond), Expires: base.Add(90 * 24 * time.Hour)}
	if _, err := ks.DeviceKey(ctx(), "dev-1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeviceKey of a device without one: %v, want ErrNotFound", err)
	}
	if err := ks.PutDeviceKey(ctx(), storage.PutDeviceKeyParams{Key: k1}); err != nil {
		t.Fatalf("PutDeviceKey of a new device: %v", err)
	}
	want := k1
	want.Created = k1.Created.UTC().Truncate(time.Microsecond)
	want.Expires = k1.Expires.UTC()
	get := func(id string) storage.DeviceKey {
		t.Helper()
		k, err := ks.DeviceKey(ctx(), id)
		if err != nil {
			t.Fatalf("DeviceKey(%s): %v", id, err)
		}
		return k
	}
	if diff := cmp.Diff(want, get("dev-1")); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	if loc := get("dev-1").Created.Location(); loc != time.UTC {
		t.Fatalf("Created in %v, want UTC", loc)
	}
	// A second new key for the device, or a replacement of another hash,
	// is a conflict and changes nothing.
	other := k1
	other.Hash = h(9)
	if err := ks.PutDeviceKey(ctx(), storage.PutDeviceKeyParams{Key: other}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("a new key over an existing one: %v, want ErrConflict", err)
	}
	if err := ks.PutDeviceKey(ctx(), storage.PutDeviceKeyParams{Key: other, Expect: h(7)}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("a replacement of the wrong hash: %v, want ErrConflict", err)
	}
	if diff := cmp.Diff(want, get("dev-1")); diff != "" {
		t.Fatalf("after refused puts (-want +got):\n%s", diff)
	}
	// A rotation: the expected hash is replaced; every field is kept.
	k2 := storage.DeviceKey{DeviceID: "dev-1", Hash: h(2), Prev: h(1), Created: base.Add(time.Hour), Revoked: true, Used: true}
	if err := ks.PutDeviceKey(ctx(), storage.PutDeviceKeyParams{Key: k2, Expect: h(1)}); err != nil {
		t.Fatalf("PutDeviceKey replacing the expected hash: %v", err)
	}
	if diff := cmp.Diff(k2, get("dev-1")); diff != "" {
		t.Fatalf("after the rotation (-want +got):\n%s", diff)
	}
	// Another device is independent; a replacement of a device without a
	// key is a conflict.
	if err := ks.PutDeviceKey(ctx(), storage.PutDeviceKeyParams{Key: storage.DeviceKey{DeviceID: "dev-2", Hash: h(3)}, Expect: h(1)}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("a replacement for a device without a key: %v, want ErrConflict", err)
	}
	if err := ks.PutDeviceKey(ctx(), storage.PutDeviceKeyParams{Key: storage.DeviceKey{DeviceID: "dev-2", Hash: h(3)}}); err != nil {
		t.Fatal(err)
	}
	if err := ks.DeleteDeviceKey(ctx(), "dev-1"); err != nil {
		t.Fatalf("DeleteDeviceKey: %v", err)
	}
	if err := ks.DeleteDeviceKey(ctx(), "dev-1"); err != nil {
		t.Fatalf("DeleteDeviceKey of a device without a key: %v", err)
	}
	if _, err := ks.DeviceKey(ctx(), "dev-1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeviceKey after the delete: %v, want ErrNotFound", err)
	}
	if got := get("dev-2"); got.Hash != h(3) || got.Revoked || got.Used || !got.Expires.IsZero() {
		t.Fatalf("dev-2 after dev-1's changes: %+v", got)
	}
	for _, bad := range []storage.DeviceKey{{Hash: h(1)}, {DeviceID: strings.Repeat("x", storage.MaxDeviceKeyID+1), Hash: h(1)}, {DeviceID: "dev-3"}} {
		if err := ks.PutDeviceKey(ctx(), storage.PutDeviceKeyParams{Key: bad}); !errors.Is(err, storage.ErrInvalid) {
			t.Fatalf("PutDeviceKey(%.20q, zero hash %v): %v, want ErrInvalid", bad.DeviceID, bad.Hash == [sha256.Size]byte{}, err)
		}
	}
	if _, err := ks.DeviceKey(ctx(), "dev-3"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("an invalid key was stored: %v", err)
	}
	// A batch: each item as PutDeviceKey, in order, in one call; a
	// refused item leaves the others stored.
	errs, err := ks.PutDeviceKeys(ctx(), []storage.PutDeviceKeyParams{
		{Key: storage.DeviceKey{DeviceID: "dev-4", Hash: h(4)}},
		{Key: storage.DeviceKey{DeviceID: "dev-2", Hash: h(5)}}, // dev-2 has a key
		{Key: storage.DeviceKey{DeviceID: "dev-5"}},             // no hash
		{Key: storage.DeviceKey{DeviceID: "dev-2", Hash: h(6), Prev: h(3)}, Expect: h(3)},
	})
	if err != nil || len(errs) != 4 || errs[0] != nil || !errors.Is(errs[1], storage.ErrConflict) || !errors.Is(errs[2], storage.ErrInvalid) || errs[3] != nil {
		t.Fatalf("PutDeviceKeys: %v, %v; want nil, ErrConflict, ErrInvalid, nil", errs, err)
	}
	if get("dev-4").Hash != h(4) || get("dev-2").Hash != h(6) || get("dev-2").Prev != h(3) {
		t.Fatalf("after the batch: dev-4 %+v, dev-2 %+v", get("dev-4"), get("dev-2"))
	}
	if _, err := ks.DeviceKey(ctx(), "dev-5"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the batch's invalid key was stored: %v", err)
	}
	// A batch of distinct devices mixing new keys, a replacement and a
	// replacement of a device without a key.
	errs, err = ks.PutDeviceKeys(ctx(), []storage.PutDeviceKeyParams{
		{Key: storage.DeviceKey{DeviceID: "dev-6", Hash: h(60), Created: base}},
		{Key: storage.DeviceKey{DeviceID: "dev-4", Hash: h(41), Prev: h(4), Used: true}, Expect: h(4)},
		{Key: storage.DeviceKey{DeviceID: "dev-7", Hash: h(70)}, Expect: h(71)},
		{Key: storage.DeviceKey{DeviceID: "dev-8", Hash: h(80), Revoked: true}},
	})
	if err != nil || len(errs) != 4 || errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], storage.ErrConflict) || errs[3] != nil {
		t.Fatalf("PutDeviceKeys of distinct devices: %v, %v; want nil, nil, ErrConflict, nil", errs, err)
	}
	if diff := cmp.Diff(storage.DeviceKey{DeviceID: "dev-4", Hash: h(41), Prev: h(4), Used: true}, get("dev-4")); diff != "" {
		t.Fatalf("dev-4 after the batch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(storage.DeviceKey{DeviceID: "dev-6", Hash: h(60), Created: base}, get("dev-6")); diff != "" {
		t.Fatalf("dev-6 after the batch (-want +got):\n%s", diff)
	}
	if got := get("dev-8"); !got.Revoked || got.Hash != h(80) {
		t.Fatalf("dev-8 after the batch: %+v", got)
	}
	if _, err := ks.DeviceKey(ctx(), "dev-7"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a refused replacement created a key: %v", err)
	}
}

// testDeviceKeysConcurrent: writers racing to enroll the same device
// (zero Expect) or to rotate the same key: exactly one wins each race.
func testDeviceKeysConcurrent(t *testing.T, s storage.Store, f Features) {
	ks := keys(t, s)
	for round := range 3 {
		id := fmt.Sprintf("dev-%d", round)
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, conflicts := 0, 0
		for w := range f.Writers {
			wg.Go(func() {
				p := storage.PutDeviceKeyParams{Key: storage.DeviceKey{DeviceID: id, Hash: sha256.Sum256(fmt.Appendf(nil, "%d/%d", round, w))}}
				err := ks.PutDeviceKey(ctx(), p)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, storage.ErrConflict):
					conflicts++
				default:
					t.Errorf("PutDeviceKey: %v", err)
				}
			})
		}
		wg.Wait()
		if wins != 1 || conflicts != f.Writers-1 {
			t.Fatalf("round %d: %d writers won, %d conflicts; want 1 and %d", round, wins, conflicts, f.Writers-1)
		}
	}
}
