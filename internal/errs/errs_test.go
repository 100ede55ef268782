package errs

import (
	"errors"
	"testing"
)

func TestValidationErrorMatchesInvalid(t *testing.T) {
	t.Parallel()
	err := error(Range("every_minutes", 0, 1, 1440))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("errors.Is(%v, ErrInvalid) = false", err)
	}
	if got, want := err.Error(), `invalid every_minutes "0": must be between 1 and 1440`; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestValidationErrorsUnwrapAndPrefix(t *testing.T) {
	t.Parallel()
	list := ValidationErrors{
		{Field: "", Value: "10.0.0.5-10.0.0.1", Reason: "range is reversed", Line: 3},
		{Field: "[2]", Value: "bad_name", Reason: "invalid character", Line: 7, Column: 4},
	}
	err := Prefix("scope.addresses", list.Err())
	if !errors.Is(err, ErrInvalid) {
		t.Fatal("prefixed list does not match ErrInvalid")
	}
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "scope.addresses" || ve.Line != 3 {
		t.Fatalf("errors.As first element = %+v", ve)
	}
	if list[0].Field != "" {
		t.Fatal("Prefix modified its argument")
	}
	got := err.Error()
	want := `2 validation errors: invalid scope.addresses (line 3) "10.0.0.5-10.0.0.1": range is reversed; invalid scope.addresses[2] (line 7, column 4) "bad_name": invalid character`
	if got != want {
		t.Fatalf("Error() =\n%q\nwant\n%q", got, want)
	}
	if (ValidationErrors{}).Err() != nil {
		t.Fatal("empty list Err() != nil")
	}
	other := errors.New("x")
	if Prefix("a", other) != other {
		t.Fatal("Prefix changed a non-validation error")
	}
}
