package credentials

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeSealed feeds arbitrary bytes to the binary decoder: it must
// never panic, reject with ErrMalformed, and re-encode anything it accepts
// to the same bytes. Opening an accepted value must fail with an ErrSealed
// error unless it is a genuine seal.
func FuzzDecodeSealed(f *testing.F) {
	s := newSealer(f, "k1")
	for _, pw := range []string{"", "hunter2", "pässwörd"} {
		sealed, _ := s.Seal(NewSecret(pw))
		bin, _ := sealed.MarshalBinary()
		f.Add(bin)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 255})
	f.Add([]byte{2, 1, 'a'})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := DecodeSealed(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrSealed) {
				t.Fatalf("rejection does not match ErrMalformed: %v", err)
			}
			return
		}
		again, err := v.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted value does not re-encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", data, again)
		}
		if v.IsZero() {
			return
		}
		if _, err := s.Open(v); err != nil && !errors.Is(err, ErrSealed) {
			t.Fatalf("Open error does not match ErrSealed: %v", err)
		}
	})
}

// FuzzOpenSealed feeds arbitrary text to ParseSealed and then Open: no
// panics, typed errors, and accepted text re-encodes identically.
func FuzzOpenSealed(f *testing.F) {
	s := newSealer(f, "k1")
	for _, pw := range []string{"", "hunter2"} {
		sealed, _ := s.Seal(NewSecret(pw))
		text, _ := sealed.MarshalText()
		f.Add(string(text))
	}
	f.Add("tfsealed:v1:k1:")
	f.Add("tfsealed:v1:k2:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("tfsealed:v2:k1:AAAA")
	f.Fuzz(func(t *testing.T, text string) {
		v, err := ParseSealed(text)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("rejection does not match ErrMalformed: %v", err)
			}
			return
		}
		again, err := v.MarshalText()
		if err != nil || string(again) != text {
			t.Fatalf("re-encoding differs: %q -> %q (%v)", text, again, err)
		}
		if v.IsZero() {
			return
		}
		_, err = s.Open(v)
		if err != nil && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrTampered) {
			t.Fatalf("Open error is neither ErrUnknownKey nor ErrTampered: %v", err)
		}
	})
}
