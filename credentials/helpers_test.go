package credentials

import (
	"bytes"
	"errors"
	"testing"
)

// key returns deterministic 32-byte key material.
func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

// countingReader is a deterministic nonce source: 0x00 0x01 0x02 ...
type countingReader struct{ n byte }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.n
		r.n++
	}
	return len(p), nil
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("entropy exhausted") }

func newSealer(t testing.TB, active string, keys ...Key) *AESGCM {
	t.Helper()
	if len(keys) == 0 {
		keys = []Key{{ID: "k1", Material: key(1)}}
	}
	s, err := NewAESGCM(AESGCMConfig{Keys: keys, ActiveKeyID: active, Rand: &countingReader{}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type fieldErr = struct{ Field, Value, Reason string }

func fieldErrs(t *testing.T, err error) []fieldErr {
	t.Helper()
	if err == nil {
		return nil
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v does not match ErrInvalid", err)
	}
	var list ValidationErrors
	var one *ValidationError
	switch {
	case errors.As(err, &list):
	case errors.As(err, &one):
		list = ValidationErrors{one}
	default:
		t.Fatalf("error %T is not a validation error", err)
	}
	var out []fieldErr
	for _, e := range list {
		out = append(out, fieldErr{e.Field, e.Value, e.Reason})
	}
	return out
}
