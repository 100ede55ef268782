package credentials

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAESGCMRoundTrip(t *testing.T) {
	t.Parallel()
	s := newSealer(t, "k1")
	for _, pw := range []string{"", "x", "pässwörd ✓", strings.Repeat("z", MaxPasswordLength)} {
		sealed, err := s.Seal(NewSecret(pw))
		if err != nil {
			t.Fatalf("Seal(%d bytes): %v", len(pw), err)
		}
		if sealed.KeyID() != "k1" || sealed.IsZero() {
			t.Fatalf("sealed = %v", sealed)
		}
		got, err := s.Open(sealed)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if got.Reveal() != pw {
			t.Fatalf("Open returned a different password (len %d, want %d)", got.Len(), len(pw))
		}
	}
	// Fresh nonce each time: same password, different ciphertexts.
	a, _ := s.Seal(NewSecret("same"))
	b, _ := s.Seal(NewSecret("same"))
	if a.Equal(b) {
		t.Fatal("two seals of one password are equal; nonce reused")
	}
}

func TestAESGCMTooLong(t *testing.T) {
	t.Parallel()
	_, err := newSealer(t, "k1").Seal(NewSecret(strings.Repeat("z", MaxPasswordLength+1)))
	if diff := cmp.Diff([]fieldErr{{"password", "", "must be at most 1024 bytes"}}, fieldErrs(t, err)); diff != "" {
		t.Fatal(diff)
	}
}

func TestAESGCMRandFailure(t *testing.T) {
	t.Parallel()
	s, err := NewAESGCM(AESGCMConfig{Keys: []Key{{ID: "k1", Material: key(1)}}, ActiveKeyID: "k1", Rand: failingReader{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seal(NewSecret("pw")); err == nil || !strings.Contains(err.Error(), "entropy exhausted") {
		t.Fatalf("Seal with a failing reader: err = %v", err)
	}
}

func TestAESGCMDefaultRand(t *testing.T) {
	t.Parallel()
	s, err := NewAESGCM(AESGCMConfig{Keys: []Key{{ID: "k1", Material: key(1)}}, ActiveKeyID: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Seal(NewSecret("pw"))
	b, _ := s.Seal(NewSecret("pw"))
	if a.Equal(b) || bytes.Equal(a.nonce, make([]byte, NonceSize)) {
		t.Fatal("crypto/rand nonces look wrong")
	}
}

func TestAESGCMErrors(t *testing.T) {
	t.Parallel()
	s1 := newSealer(t, "k1")
	sealed, err := s1.Seal(NewSecret("hunter2-hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	wrongMaterial := newSealer(t, "k1", Key{ID: "k1", Material: key(9)})
	otherKeyring := newSealer(t, "k2", Key{ID: "k2", Material: key(2)})
	relabeled := sealed
	relabeled.keyID = "k2"
	bothKeys := newSealer(t, "k1", Key{ID: "k1", Material: key(1)}, Key{ID: "k2", Material: key(1)})

	flipped := func(i int) Sealed {
		c := sealed
		c.ct = bytes.Clone(sealed.ct)
		c.ct[i] ^= 0x80
		return c
	}
	flippedNonce := sealed
	flippedNonce.nonce = bytes.Clone(sealed.nonce)
	flippedNonce.nonce[0] ^= 1
	truncated := sealed
	truncated.ct = sealed.ct[:TagSize-1]

	tests := []struct {
		name   string
		s      Sealer
		sealed Sealed
		want   error
	}{
		{"wrong key material under the same id", wrongMaterial, sealed, ErrTampered},
		{"unknown key id", otherKeyring, sealed, ErrUnknownKey},
		{"ciphertext byte flipped", s1, flipped(0), ErrTampered},
		{"tag byte flipped", s1, flipped(len(sealed.ct) - 1), ErrTampered},
		{"nonce flipped", s1, flippedNonce, ErrTampered},
		// k2 holds the same material, but the key id is authenticated.
		{"key id relabeled", bothKeys, relabeled, ErrTampered},
		{"zero sealed", s1, Sealed{}, ErrMalformed},
		{"inconsistent sealed", s1, truncated, ErrMalformed},
	}
	for _, tt := range tests {
		_, err := tt.s.Open(tt.sealed)
		if !errors.Is(err, tt.want) || !errors.Is(err, ErrSealed) {
			t.Errorf("%s: err = %v, want %v matching ErrSealed", tt.name, err, tt.want)
		}
	}
	if errors.Is(ErrTampered, ErrInvalid) || errors.Is(ErrUnknownKey, ErrInvalid) || !errors.Is(ErrMalformed, ErrInvalid) {
		t.Error("only ErrMalformed should match ErrInvalid")
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	old := newSealer(t, "2025", Key{ID: "2025", Material: key(1)})
	sealed, err := old.Seal(NewSecret("rotate-me"))
	if err != nil {
		t.Fatal(err)
	}
	rotated := newSealer(t, "2026", Key{ID: "2025", Material: key(1)}, Key{ID: "2026", Material: key(2)})
	if !rotated.NeedsReseal(sealed) || rotated.NeedsReseal(Sealed{}) {
		t.Fatal("NeedsReseal is wrong")
	}
	pw, err := rotated.Open(sealed)
	if err != nil || pw.Reveal() != "rotate-me" {
		t.Fatalf("Open with the old key in the ring: %v", err)
	}
	resealed, changed, err := Reseal(rotated, sealed)
	if err != nil || !changed || resealed.KeyID() != "2026" || rotated.NeedsReseal(resealed) {
		t.Fatalf("Reseal = %v, %v, %v", resealed, changed, err)
	}
	again, changed, err := Reseal(rotated, resealed)
	if err != nil || changed || !again.Equal(resealed) {
		t.Fatalf("Reseal of an active-key password = %v, %v, %v", again, changed, err)
	}
	// After removing the old key, the re-sealed password still opens.
	retired := newSealer(t, "2026", Key{ID: "2026", Material: key(2)})
	if pw, err := retired.Open(resealed); err != nil || pw.Reveal() != "rotate-me" {
		t.Fatalf("Open after retiring the old key: %v", err)
	}
	if _, _, err := Reseal(retired, sealed); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Reseal with the old key gone: err = %v", err)
	}
}

func TestNewAESGCMValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  AESGCMConfig
		want []fieldErr
	}{
		{"no keys", AESGCMConfig{}, []fieldErr{{"keys", "", "at least one key is required"}}},
		{"short key", AESGCMConfig{Keys: []Key{{ID: "a", Material: make([]byte, 16)}}, ActiveKeyID: "a"},
			[]fieldErr{{"keys[0].material", "", "must be 32 bytes, got 16"}}},
		{"bad id", AESGCMConfig{Keys: []Key{{ID: "a:b", Material: key(1)}}, ActiveKeyID: "a:b"},
			[]fieldErr{{"keys[0].id", "a:b", "must contain only letters, digits, '_' and '-'"}}},
		{"empty id", AESGCMConfig{Keys: []Key{{ID: "", Material: key(1)}}},
			[]fieldErr{{"keys[0].id", "", "must be 1 to 64 characters"}}},
		{"duplicate id", AESGCMConfig{Keys: []Key{{ID: "a", Material: key(1)}, {ID: "a", Material: key(2)}}, ActiveKeyID: "a"},
			[]fieldErr{{"keys[1].id", "a", "duplicate key id"}}},
		{"active missing", AESGCMConfig{Keys: []Key{{ID: "a", Material: key(1)}}, ActiveKeyID: "b"},
			[]fieldErr{{"active_key_id", "b", "must be the id of one of the keys"}}},
	}
	for _, tt := range tests {
		_, err := NewAESGCM(tt.cfg)
		if diff := cmp.Diff(tt.want, fieldErrs(t, err)); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", tt.name, diff)
		}
	}
	// Key material is copied: wiping the caller's copy changes nothing.
	m := key(7)
	s, err := NewAESGCM(AESGCMConfig{Keys: []Key{{ID: "a", Material: m}}, ActiveKeyID: "a", Rand: &countingReader{}})
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := s.Seal(NewSecret("pw"))
	clear(m)
	if _, err := s.Open(sealed); err != nil {
		t.Fatalf("Open after the caller wiped its key: %v", err)
	}
}

func TestAESGCMConcurrent(t *testing.T) {
	t.Parallel()
	s := newSealer(t, "k1")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				pw := fmt.Sprintf("pw-%d-%d", g, i)
				sealed, err := s.Seal(NewSecret(pw))
				if err != nil {
					t.Error(err)
					return
				}
				got, err := s.Open(sealed)
				if err != nil || got.Reveal() != pw {
					t.Errorf("round trip failed: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestSealedGolden pins the encodings: a fixed key and nonce must keep
// producing exactly these bytes, or stored passwords stop opening.
func TestSealedGolden(t *testing.T) {
	t.Parallel()
	s := newSealer(t, "golden-1", Key{ID: "golden-1", Material: key(0x42)})
	sealed, err := s.Seal(NewSecret("golden password"))
	if err != nil {
		t.Fatal(err)
	}
	text, _ := sealed.MarshalText()
	bin, _ := sealed.MarshalBinary()
	got := fmt.Sprintf("text: %s\nbinary: %x\n", text, bin)
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile("testdata/sealed_v1.golden", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/sealed_v1.golden")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Fatalf("sealed encoding changed (-golden +got):\n%s", diff)
	}
	// And the golden value still opens.
	var back Sealed
	if err := back.UnmarshalText(text); err != nil {
		t.Fatal(err)
	}
	if pw, err := s.Open(back); err != nil || pw.Reveal() != "golden password" {
		t.Fatalf("golden value does not open: %v", err)
	}
}
