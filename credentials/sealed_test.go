package credentials

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSealedEncodingsRoundTrip(t *testing.T) {
	t.Parallel()
	s := newSealer(t, "k_1-A", Key{ID: "k_1-A", Material: key(3)})
	for _, pw := range []string{"", "a", strings.Repeat("b", MaxPasswordLength)} {
		sealed, err := s.Seal(NewSecret(pw))
		if err != nil {
			t.Fatal(err)
		}
		bin, err := sealed.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(bin) > MaxSealedBinaryLength {
			t.Fatalf("binary %d bytes > MaxSealedBinaryLength %d", len(bin), MaxSealedBinaryLength)
		}
		text, err := sealed.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		if len(text) > MaxSealedTextLength {
			t.Fatalf("text %d bytes > MaxSealedTextLength %d", len(text), MaxSealedTextLength)
		}
		js, err := json.Marshal(sealed)
		if err != nil {
			t.Fatal(err)
		}
		val, err := sealed.Value()
		if err != nil {
			t.Fatal(err)
		}
		var fromBin, fromText, fromJSON, fromValue, fromBytesText, fromBytesBin Sealed
		for _, err := range []error{
			fromBin.UnmarshalBinary(bin),
			fromText.UnmarshalText(text),
			json.Unmarshal(js, &fromJSON),
			fromValue.Scan(val),
			fromBytesText.Scan(text),
			fromBytesBin.Scan(bin),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		for i, got := range []Sealed{fromBin, fromText, fromJSON, fromValue, fromBytesText, fromBytesBin} {
			if !got.Equal(sealed) {
				t.Errorf("decoding %d: got %v, want %v", i, got, sealed)
			}
		}
	}
}

func TestSealedZero(t *testing.T) {
	t.Parallel()
	var z Sealed
	bin, _ := z.MarshalBinary()
	text, _ := z.MarshalText()
	js, _ := json.Marshal(z)
	val, _ := z.Value()
	if len(bin) != 0 || len(text) != 0 || string(js) != `""` || val != nil {
		t.Fatalf("zero encodings: %q %q %s %v", bin, text, js, val)
	}
	if z.String() != "sealed(none)" || z.Fingerprint() != "" || z.KeyID() != "" {
		t.Fatalf("zero String = %q", z.String())
	}
	s := newSealer(t, "k1")
	nonzero, _ := s.Seal(NewSecret("x"))
	for _, in := range []any{nil, "", []byte{}} {
		got := nonzero
		if err := got.Scan(in); err != nil || !got.IsZero() {
			t.Errorf("Scan(%#v) = %v, %v; want zero", in, got, err)
		}
	}
	got := nonzero
	if err := json.Unmarshal([]byte(`null`), &got); err != nil || !got.Equal(nonzero) {
		t.Errorf("null changed the value: %v %v", got, err)
	}
}

func TestSealedDecodeErrors(t *testing.T) {
	t.Parallel()
	s := newSealer(t, "k1")
	sealed, _ := s.Seal(NewSecret("pw"))
	bin, _ := sealed.MarshalBinary()
	text, _ := sealed.MarshalText()

	binCases := map[string][]byte{
		"version 2":        append([]byte{2}, bin[1:]...),
		"version 0":        append([]byte{0}, bin[1:]...),
		"header only":      {1},
		"zero key id len":  {1, 0, 1, 2, 3},
		"key id too long":  append([]byte{1, 65}, make([]byte, 100)...),
		"key id past end":  {1, 10, 'a', 'b'},
		"bad key id byte":  append([]byte{1, 2, 'a', ':'}, make([]byte, 28)...),
		"short ciphertext": bin[:len(bin)-TagSize],
		"oversized":        append(append([]byte{}, bin...), make([]byte, MaxSealedBinaryLength)...),
		"ciphertext > max": append([]byte{1, 1, 'a'}, make([]byte, NonceSize+TagSize+MaxPasswordLength+1)...),
	}
	for name, in := range binCases {
		if _, err := DecodeSealed(in); !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrSealed) || !errors.Is(err, ErrInvalid) {
			t.Errorf("binary %s: err = %v, want ErrMalformed", name, err)
		}
	}
	ts := string(text)
	textCases := map[string]string{
		"no prefix":        "v1:k1:AAAA",
		"other scheme":     "enc:" + ts,
		"version 2":        strings.Replace(ts, "tfsealed:v1:", "tfsealed:v2:", 1),
		"no separator":     "tfsealed:v1:k1",
		"empty key id":     "tfsealed:v1::" + ts[len("tfsealed:v1:k1:"):],
		"bad key id":       "tfsealed:v1:k 1:" + ts[len("tfsealed:v1:k1:"):],
		"padding":          ts + "==",
		"std base64":       strings.NewReplacer("-", "+", "_", "/").Replace(ts) + "+",
		"bad base64":       ts[:len(ts)-1] + "!",
		"truncated":        ts[:len("tfsealed:v1:k1:")+20],
		"too long":         ts + strings.Repeat("A", MaxSealedTextLength),
		"too long payload": "tfsealed:v1:k1:" + strings.Repeat("A", 1500),
		"whitespace":       " " + ts,
		"newline in body":  ts[:len(ts)-4] + "\n\r" + ts[len(ts)-4:],
	}
	for name, in := range textCases {
		if _, err := ParseSealed(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("text %s: err = %v, want ErrMalformed", name, err)
		}
	}
	var v Sealed
	for _, in := range []string{`1`, `"x`, `{}`, `"tfsealed:v1:k1:@@"`} {
		if err := json.Unmarshal([]byte(in), &v); err == nil {
			t.Errorf("JSON %s decoded", in)
		}
	}
	if err := v.Scan(42); !errors.Is(err, ErrMalformed) {
		t.Errorf("Scan(42): %v", err)
	}
	// An inconsistent value cannot be encoded.
	bad := Sealed{keyID: "k1", nonce: []byte{1}}
	if _, err := bad.MarshalBinary(); !errors.Is(err, ErrMalformed) {
		t.Errorf("MarshalBinary of an inconsistent value: %v", err)
	}
	if _, err := bad.MarshalText(); !errors.Is(err, ErrMalformed) {
		t.Errorf("MarshalText of an inconsistent value: %v", err)
	}
}

func TestSealedString(t *testing.T) {
	t.Parallel()
	s := newSealer(t, "k1")
	a, _ := s.Seal(NewSecret("pw"))
	b, _ := s.Seal(NewSecret("pw"))
	if a.String() == b.String() || !strings.HasPrefix(a.String(), "sealed(k1 #") || len(a.Fingerprint()) != 12 {
		t.Fatalf("String: %q vs %q", a, b)
	}
	if diff := cmp.Diff(`credentials.Sealed("`+a.String()+`")`, a.GoString()); diff != "" {
		t.Fatal(diff)
	}
}
