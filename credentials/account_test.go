package credentials

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultAccount(t *testing.T) {
	t.Parallel()
	if !Default().IsDefault() || !(Account{}).IsDefault() || Default().Validate() != nil {
		t.Fatal("the zero Account must be the valid default account")
	}
	js, _ := json.Marshal(Default())
	if string(js) != `{}` {
		t.Fatalf("default account JSON = %s, want {}", js)
	}
	if Default().String() != "default account" {
		t.Fatal(Default().String())
	}
}

func TestSpecify(t *testing.T) {
	t.Parallel()
	s := newSealer(t, "k1")
	tests := []struct {
		name     string
		acct     string
		password string
		sealer   Sealer
		want     []fieldErr
	}{
		{"domain account", `CORP\svc-backup`, "pw", s, nil},
		{"upn", "svc@corp.example", "pw", s, nil},
		{"unicode", "Jürgen", "pässwörd", s, nil},
		{"max name", strings.Repeat("n", MaxAccountNameLength), "pw", s, nil},
		{"max password", "a", strings.Repeat("p", MaxPasswordLength), s, nil},
		{"empty name", "", "pw", s, []fieldErr{{"name", "", "must not be empty"}}},
		{"long name", strings.Repeat("n", MaxAccountNameLength+1), "pw", s,
			[]fieldErr{{"name", "", "must be at most 256 characters, got 257"}}},
		{"spaces", " svc", "pw", s, []fieldErr{{"name", "", "must not start or end with spaces"}}},
		{"control", "svc\n", "pw", s, []fieldErr{{"name", "", "must not contain control characters"}}},
		{"bad utf8", "svc\xff", "pw", s, []fieldErr{{"name", "", "must be valid UTF-8"}}},
		{"empty password", "svc", "", s, []fieldErr{{"password", "", "must not be empty"}}},
		{"long password", "svc", strings.Repeat("p", MaxPasswordLength+1), s, []fieldErr{{"password", "", "must be at most 1024 bytes"}}},
		{"no sealer", "svc", "pw", nil, []fieldErr{{"sealer", "", "is required"}}},
		{"everything wrong", "", "", nil, []fieldErr{{"name", "", "must not be empty"}, {"password", "", "must not be empty"}, {"sealer", "", "is required"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := Specify(tt.acct, NewSecret(tt.password), tt.sealer)
			if diff := cmp.Diff(tt.want, fieldErrs(t, err)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			if err != nil {
				return
			}
			if a.IsDefault() || a.Name != tt.acct || a.Validate() != nil {
				t.Fatalf("account = %v", a)
			}
			pw, err := s.Open(a.Password)
			if err != nil || pw.Reveal() != tt.password {
				t.Fatalf("password does not open: %v", err)
			}
		})
	}
}

func TestAccountValidate(t *testing.T) {
	t.Parallel()
	s := newSealer(t, "k1")
	sealed, _ := s.Seal(NewSecret("pw"))
	tests := []struct {
		name string
		a    Account
		want []fieldErr
	}{
		{"default", Account{}, nil},
		{"specified", Account{Name: "svc", Password: sealed}, nil},
		{"password without name", Account{Password: sealed}, []fieldErr{{"name", "", "is required when a password is set"}}},
		{"name without password", Account{Name: "svc"}, []fieldErr{{"password", "", "is required for a specified account"}}},
		{"bad name", Account{Name: "a\x00", Password: sealed}, []fieldErr{{"name", "", "must not contain control characters"}}},
		{"inconsistent password", Account{Name: "svc", Password: Sealed{keyID: "k1"}}, []fieldErr{{"password", "", "is not a consistent sealed password"}}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, fieldErrs(t, tt.a.Validate())); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestAccountJSON(t *testing.T) {
	t.Parallel()
	s := newSealer(t, "k1")
	a, err := Specify(`CORP\svc`, NewSecret("pw"), s)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := a.Password.MarshalText()
	if want := `{"name":"CORP\\svc","password":"` + string(text) + `"}`; string(js) != want {
		t.Fatalf("JSON = %s, want %s", js, want)
	}
	var back Account
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, back); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	var d Account
	if err := json.Unmarshal([]byte(`{}`), &d); err != nil || !d.IsDefault() {
		t.Fatalf("{} = %v, %v", d, err)
	}

	bad := []struct {
		doc  string
		want []fieldErr
	}{
		{`{"name":"svc"}`, []fieldErr{{"password", "", "is required for a specified account"}}},
		{`{"password":"` + string(text) + `"}`, []fieldErr{{"name", "", "is required when a password is set"}}},
		{`{"name":"svc","pasword":"x"}`, []fieldErr{{"pasword", "", "unknown field; allowed: name, password"}}},
		{`{"name":1}`, []fieldErr{{"name", "", "must be a JSON string, got number"}}},
		{`[]`, []fieldErr{{"", "", "must be a JSON object, got array"}}},
		{`{"name":"svc","password":"plaintext-password"}`, nil}, // checked below: rejected without echo
	}
	for _, tt := range bad {
		var got Account
		err := json.Unmarshal([]byte(tt.doc), &got)
		if err == nil {
			t.Errorf("%s: decoded %v", tt.doc, got)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v is not ErrInvalid", tt.doc, err)
		}
		if tt.want != nil {
			if diff := cmp.Diff(tt.want, fieldErrs(t, err)); diff != "" {
				t.Errorf("%s: (-want +got):\n%s", tt.doc, diff)
			}
		}
		if strings.Contains(err.Error(), "plaintext-password") {
			t.Errorf("%s: error echoes the password: %v", tt.doc, err)
		}
	}
}

func TestSameAccountName(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		x, y string
		want bool
	}{
		{`CORP\svc`, `corp\SVC`, true},
		{"Jürgen", "JÜRGEN", true},
		{`CORP\svc`, "svc@corp", false},
		{"svc", "svc ", false},
	} {
		if got := SameAccountName(tt.x, tt.y); got != tt.want {
			t.Errorf("SameAccountName(%q, %q) = %v", tt.x, tt.y, got)
		}
	}
	if (Account{}).SameName("") {
		t.Error("the default account matches the empty name")
	}
}
