package credentials

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
)

// The known passwords grepped for in every output path. They are distinct
// enough that no encoding of anything else contains them.
const (
	knownPW  = "KnownPassw0rd!Xyzzy"
	knownPW2 = "OtherPassw0rd!Plugh"
)

// holder mixes exported and unexported fields, pointers, maps and slices
// that carry secrets and accounts.
type holder struct {
	Secret   Secret
	Ptr      *Secret
	Account  Account
	Accounts []Account
	ByName   map[string]Secret
	Any      any
	hidden   Secret // fmt and cmp print unexported fields by reflection
	hiddenA  Account
}

func leakCheck(t *testing.T, what, out string) {
	t.Helper()
	for _, pw := range []string{knownPW, knownPW2} {
		if strings.Contains(out, pw) {
			t.Errorf("%s leaks a password:\n%s", what, out)
		}
		// Also check hex and base64-ish fragments of the plaintext.
		if strings.Contains(strings.ToLower(out), fmt.Sprintf("%x", pw)[:16]) {
			t.Errorf("%s leaks a password in hex:\n%s", what, out)
		}
	}
}

func fixtures(t *testing.T) (holder, holder, Secret, Account, Account) {
	s := newSealer(t, "k1")
	sec := NewSecret(knownPW)
	a1, err := Specify(`CORP\svc`, NewSecret(knownPW), s)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := Specify(`CORP\svc`, NewSecret(knownPW2), s)
	if err != nil {
		t.Fatal(err)
	}
	h1 := holder{Secret: sec, Ptr: &sec, Account: a1, Accounts: []Account{a1}, ByName: map[string]Secret{"x": sec}, Any: sec, hidden: sec, hiddenA: a1}
	sec2 := NewSecret(knownPW2)
	h2 := holder{Secret: sec2, Ptr: &sec2, Account: a2, Accounts: []Account{a2}, ByName: map[string]Secret{"x": sec2}, Any: sec2, hidden: sec2, hiddenA: a2}
	return h1, h2, sec, a1, a2
}

func TestNoPasswordInFmt(t *testing.T) {
	t.Parallel()
	h1, _, sec, a1, _ := fixtures(t)
	for _, v := range []any{sec, &sec, a1, &a1, h1, &h1, []any{sec, a1}, map[string]Secret{"k": sec}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s", "%T"} {
			out := fmt.Sprintf(verb, v)
			leakCheck(t, fmt.Sprintf("fmt %s of %T", verb, v), out)
		}
		leakCheck(t, "fmt.Sprint", fmt.Sprint(v))
		leakCheck(t, "fmt.Sprintln", fmt.Sprintln(v))
	}
	if got := fmt.Sprintf("%v|%s|%q|%#v|%x", sec, sec, sec, sec, sec); got != `[REDACTED]|[REDACTED]|"[REDACTED]"|credentials.Secret("[REDACTED]")|[REDACTED]` {
		t.Errorf("Secret formatting = %s", got)
	}
	if sec.String() != Redacted || sec.Reveal() != knownPW {
		t.Error("String must redact, Reveal must not")
	}
}

func TestNoPasswordInJSON(t *testing.T) {
	t.Parallel()
	h1, _, sec, a1, _ := fixtures(t)
	for _, v := range []any{sec, a1, h1, map[string]any{"s": sec, "a": a1}} {
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%T: %v", v, err)
		}
		leakCheck(t, fmt.Sprintf("json of %T", v), string(out))
	}
	js, _ := json.Marshal(struct{ P Secret }{sec})
	if string(js) != `{"P":"[REDACTED]"}` {
		t.Errorf("Secret JSON = %s", js)
	}
	text, _ := sec.MarshalText()
	if string(text) != Redacted {
		t.Errorf("MarshalText = %s", text)
	}
	// A Secret cannot be decoded from JSON, so the placeholder never
	// becomes a password.
	var back struct{ P Secret }
	if err := json.Unmarshal(js, &back); err == nil {
		t.Error("decoding a Secret from JSON succeeded")
	}
}

func TestNoPasswordInZerolog(t *testing.T) {
	t.Parallel()
	h1, _, sec, a1, _ := fixtures(t)
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().Object("secret", sec).Object("account", a1).Msg("objects")
	log.Info().Interface("holder", h1).Any("secret", sec).Any("account", a1).Msg("interfaces")
	log.Info().Stringer("secret", sec).Stringer("account", a1).Str("s", sec.String()).Msg("strings")
	log.Info().EmbedObject(a1).Msg("embedded")
	log.Info().Fields(map[string]any{"secret": sec, "account": a1}).Msg("fields")
	_, err := Specify(knownPW, NewSecret(strings.Repeat(knownPW, 100)), nil)
	log.Error().Err(err).Msg("error")
	ctxLog := log.With().Object("account", a1).Logger()
	ctxLog.Info().Msg("context")
	out := buf.String()
	leakCheck(t, "zerolog", out)
	for _, want := range []string{`"secret":{"redacted":true}`, `"account":{"default":false,"name":"CORP\\svc","key_id":"k1"`, `"secret":"[REDACTED]"`} {
		if !strings.Contains(out, want) {
			t.Errorf("zerolog output lacks %s:\n%s", want, out)
		}
	}
}

func TestNoPasswordInSlog(t *testing.T) {
	t.Parallel()
	h1, _, sec, a1, _ := fixtures(t)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("json", "secret", sec, "account", a1, "holder", h1)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("text", "secret", sec, "account", a1, "holder", h1)
	leakCheck(t, "slog", buf.String())
}

func TestNoPasswordInErrors(t *testing.T) {
	t.Parallel()
	s := newSealer(t, "k1")
	var msgs []string
	add := func(err error) {
		if err != nil {
			msgs = append(msgs, err.Error(), fmt.Sprintf("%+v|%#v", err, err))
		}
	}
	// A password where a name is expected, and oversized passwords.
	_, err := Specify(knownPW+"\x00", NewSecret(strings.Repeat(knownPW, 60)), s)
	add(err)
	_, err = s.Seal(NewSecret(strings.Repeat(knownPW2, 60)))
	add(err)
	sealed, _ := s.Seal(NewSecret(knownPW))
	other := newSealer(t, "k2", Key{ID: "k2", Material: key(2)})
	_, err = other.Open(sealed)
	add(err)
	wrong := newSealer(t, "k1", Key{ID: "k1", Material: key(5)})
	_, err = wrong.Open(sealed)
	add(err)
	var a Account
	add(json.Unmarshal([]byte(`{"name":"svc","password":"`+knownPW+`"}`), &a))
	_, err = NewAESGCM(AESGCMConfig{Keys: []Key{{ID: "k", Material: []byte(knownPW)}}})
	add(err)
	if len(msgs) < 12 {
		t.Fatalf("only %d error messages collected", len(msgs))
	}
	leakCheck(t, "errors", strings.Join(msgs, "\n"))
}

// TestNoPasswordInDiffs: revision diffs are cmp.Diff outputs; cmp falls back
// to printing raw (even unexported) fields when two values stringify alike,
// which is why Secret keeps its plaintext in a closure.
func TestNoPasswordInDiffs(t *testing.T) {
	t.Parallel()
	h1, h2, _, a1, a2 := fixtures(t)
	diffs := []string{
		cmp.Diff(a1, a2),
		cmp.Diff(h1, h2, cmp.AllowUnexported(holder{})),
		cmp.Diff(struct{ S Secret }{NewSecret(knownPW)}, struct{ S Secret }{NewSecret(knownPW2)}),
		cmp.Diff([]Secret{NewSecret(knownPW)}, []Secret{NewSecret(knownPW2)}),
		cmp.Diff(map[string]Account{"t": a1}, map[string]Account{"t": a2}),
	}
	for i, d := range diffs {
		if d == "" {
			t.Errorf("diff %d is empty; the values differ", i)
		}
		leakCheck(t, fmt.Sprintf("cmp.Diff %d", i), d)
	}
	if cmp.Diff(NewSecret(knownPW), NewSecret(knownPW)) != "" {
		t.Error("equal secrets diff")
	}
}

func TestSecretBasics(t *testing.T) {
	t.Parallel()
	var z Secret
	if !z.IsZero() || z.Reveal() != "" || z.Len() != 0 || !z.Equal(NewSecret("")) || !NewSecret("").IsZero() {
		t.Error("zero Secret")
	}
	a, b := NewSecret("abc"), NewSecret("abd")
	if a.Equal(b) || !a.Equal(NewSecret("abc")) || a.Len() != 3 {
		t.Error("Equal/Len")
	}
}
