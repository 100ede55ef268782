package credentials

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// MaxAccountNameLength is the longest account name, in characters
// ("DOMAIN\user", "user@domain" or a local name).
const MaxAccountNameLength = 256

// Account is the account a non-local task runs under (the product documentation's "Account
// settings"): the default account (the zero Account: the task runs under
// the account of the application that performs it) or a specified account
// with a name and a sealed password.
//
// Account never holds a plaintext password; printing, logging, marshalling
// and diffing it shows at most the name, the key id and a ciphertext
// fingerprint.
//
// JSON: {"name":"CORP\\svc-backup","password":"tfsealed:v1:k1:..."}; the
// default account is {}.
type Account struct {
	// Name is the account name; "" for the default account.
	Name string `json:"name,omitempty"`
	// Password is the sealed password; zero for the default account.
	Password Sealed `json:"password,omitzero"`
}

// Default returns the default account (the zero Account).
func Default() Account { return Account{} }

// IsDefault reports whether a is the default account.
func (a Account) IsDefault() bool { return a.Name == "" && a.Password.IsZero() }

// Specify seals password with s and returns the specified account. The name
// must be 1..MaxAccountNameLength characters without control characters
// or surrounding spaces; the password 1..MaxPasswordLength bytes. Errors
// are ValidationErrors for "name" and "password" (never echoing the
// password) or the Sealer's error.
func Specify(name string, password Secret, s Sealer) (Account, error) {
	var bad ValidationErrors
	if e := validateName(name, true); e != nil {
		bad = append(bad, e)
	}
	if e := validatePassword("password", password); e != nil {
		bad = append(bad, e)
	}
	if s == nil {
		bad = append(bad, errs.Invalid("sealer", "", "is required"))
	}
	if err := bad.Err(); err != nil {
		return Account{}, err
	}
	sealed, err := s.Seal(password)
	if err != nil {
		return Account{}, err
	}
	return Account{Name: name, Password: sealed}, nil
}

func validatePassword(field string, p Secret) *ValidationError {
	switch n := p.Len(); {
	case n == 0:
		return errs.Invalid(field, "", "must not be empty")
	case n > MaxPasswordLength:
		return errs.Invalid(field, "", fmt.Sprintf("must be at most %d bytes", MaxPasswordLength))
	}
	return nil
}

// validateName never echoes the name in the error: a mistyped name field
// may hold a password.
func validateName(name string, required bool) *ValidationError {
	if name == "" {
		if required {
			return errs.Invalid("name", "", "must not be empty")
		}
		return nil
	}
	if !utf8.ValidString(name) {
		return errs.Invalid("name", "", "must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(name); n > MaxAccountNameLength {
		return errs.Invalid("name", "", fmt.Sprintf("must be at most %d characters, got %d", MaxAccountNameLength, n))
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return errs.Invalid("name", "", "must not contain control characters")
		}
	}
	if strings.TrimSpace(name) != name {
		return errs.Invalid("name", "", "must not start or end with spaces")
	}
	return nil
}

// Validate checks a: the default account, or a valid name with a non-zero
// sealed password. It cannot check that the password opens (that needs the
// Sealer).
func (a Account) Validate() error {
	var bad ValidationErrors
	switch {
	case a.IsDefault():
		return nil
	case a.Name == "":
		bad = append(bad, errs.Invalid("name", "", "is required when a password is set"))
	default:
		if e := validateName(a.Name, true); e != nil {
			bad = append(bad, e)
		}
		if a.Password.IsZero() {
			bad = append(bad, errs.Invalid("password", "", "is required for a specified account"))
		} else if err := a.Password.check(); err != nil {
			bad = append(bad, errs.Invalid("password", "", "is not a consistent sealed password"))
		}
	}
	return bad.Err()
}

// SameName reports whether a is a specified account named name. Account
// names compare case-insensitively (Windows semantics), so
// "CORP\Svc" and "corp\svc" are the same account.
func (a Account) SameName(name string) bool {
	return a.Name != "" && SameAccountName(a.Name, name)
}

// SameAccountName reports whether two account names denote the same
// account: equal under Unicode case folding. No other normalisation is
// done ("CORP\svc" and "svc@corp.example" differ).
func SameAccountName(x, y string) bool { return strings.EqualFold(x, y) }

// String returns "default account" or `account "NAME" (password
// sealed(KEY #FINGERPRINT))`.
func (a Account) String() string {
	if a.IsDefault() {
		return "default account"
	}
	return "account " + strconv.Quote(a.Name) + " (password " + a.Password.String() + ")"
}

// GoString prints a Go-syntax form without plaintext.
func (a Account) GoString() string {
	return "credentials.Account{Name:" + strconv.Quote(a.Name) + ", Password:" + a.Password.GoString() + "}"
}

// MarshalZerologObject logs the name, whether it is the default account and
// the key id, never a password.
func (a Account) MarshalZerologObject(e *zerolog.Event) {
	e.Bool("default", a.IsDefault())
	if !a.IsDefault() {
		e.Str("name", a.Name).Str("key_id", a.Password.KeyID()).Str("fingerprint", a.Password.Fingerprint())
	}
}

// MarshalJSON encodes a (see the type's documentation).
func (a Account) MarshalJSON() ([]byte, error) {
	type plain Account
	return json.Marshal(plain(a))
}

// UnmarshalJSON decodes strictly (unknown fields rejected) and validates.
// Errors are ValidationErrors; on error a is unchanged.
func (a *Account) UnmarshalJSON(data []byte) error {
	type plain Account
	var p plain
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &ute):
			want := "a JSON string"
			if ute.Field == "" {
				want = "a JSON object"
			}
			return errs.Invalid(ute.Field, "", "must be "+want+", got "+ute.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return errs.Invalid(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "", "unknown field; allowed: name, password")
		case errors.Is(err, ErrMalformed):
			return errs.Invalid("password", "", err.Error())
		}
		return errs.Invalid("", "", "malformed JSON account")
	}
	if dec.More() {
		return errs.Invalid("", "", "trailing data after the account")
	}
	na := Account(p)
	if err := na.Validate(); err != nil {
		return err
	}
	*a = na
	return nil
}
