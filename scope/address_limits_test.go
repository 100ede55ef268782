package scope_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
)

// allocated returns the bytes f allocates (the test must not run in
// parallel with others for the figure to mean anything).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestParseAddressListStopsAtAddressLimit (issue #14 item 4): 16 MiB of
// short addresses made 5.6M addresses and 3.6 GiB of allocations. A list
// stops at the scope's address limit (MaxListLength) with a typed error,
// having allocated a bounded amount.
func TestParseAddressListStopsAtAddressLimit(t *testing.T) {
	var b bytes.Buffer
	for b.Len() < scope.MaxAddressListSize-16 {
		fmt.Fprintf(&b, "10.%d.%d.%d\n", b.Len()>>16&255, b.Len()>>8&255, b.Len()&255)
	}
	var got []scope.Address
	var err error
	alloc := allocated(func() { got, err = scope.ParseAddressList(bytes.NewReader(b.Bytes())) })
	// The input itself is 16 MiB; reading it and 100,000 addresses need a
	// few times that, not gigabytes.
	t.Logf("allocated %d MiB for %d MiB of input", alloc>>20, b.Len()>>20)
	if alloc > 160<<20 {
		t.Errorf("allocated %d MiB", alloc>>20)
	}
	var lim *scope.AddressListLimitError
	if !errors.As(err, &lim) || !errors.Is(err, scope.ErrInvalid) || got != nil {
		t.Fatalf("ParseAddressList = %d addresses, %.200v; want *AddressListLimitError", len(got), err)
	}
	if lim.Limit != "MaxListLength" || lim.Line != scope.MaxListLength+1 {
		t.Errorf("limit %q at line %d, want MaxListLength at line %d", lim.Limit, lim.Line, scope.MaxListLength+1)
	}
	// Exactly the limit is accepted.
	lines := strings.Split(b.String(), "\n")[:scope.MaxListLength]
	if got, err := scope.ParseAddressList(strings.NewReader(strings.Join(lines, "\n"))); err != nil || len(got) != scope.MaxListLength {
		t.Fatalf("a list of exactly MaxListLength addresses: %d, %v", len(got), err)
	}
}

// TestParseAddressListStopsAfterErrors: 16 MiB of malformed lines made a
// 191 MiB error string. Reading stops after MaxAddressListErrors
// malformed lines, and the error stays short.
func TestParseAddressListStopsAfterErrors(t *testing.T) {
	long := strings.Repeat("x", scope.MaxAddressLineLength+1) + "\n"
	for _, tt := range []struct{ name, line string }{
		{"bad names", "bad name!\n"},
		{"long lines", long},
		{"invalid UTF-8", "x\xff\xfe\xfd" + strings.Repeat("\xff", 500) + "\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Repeat(tt.line, (scope.MaxAddressListSize-16)/len(tt.line))
			_, err := scope.ParseAddressList(strings.NewReader(in))
			if n := len(err.Error()); n > 64<<10 {
				t.Errorf("error string is %d bytes", n)
			}
			var lim *scope.AddressListLimitError
			if !errors.As(err, &lim) || !errors.Is(err, scope.ErrInvalid) {
				t.Fatalf("error %T, want *AddressListLimitError", err)
			}
			if lim.Limit != "MaxAddressListErrors" || len(lim.Errors) != scope.MaxAddressListErrors || lim.Line != scope.MaxAddressListErrors+1 {
				t.Errorf("limit %q at line %d with %d errors", lim.Limit, lim.Line, len(lim.Errors))
			}
			var list scope.ValidationErrors
			if !errors.As(err, &list) || len(list) != scope.MaxAddressListErrors || list[0].Line != 1 {
				t.Errorf("errors.As ValidationErrors: %d errors", len(list))
			}
		})
	}
	// Fewer errors than the limit are all reported, as before.
	_, err := scope.ParseAddressList(strings.NewReader(strings.Repeat("bad name!\n", scope.MaxAddressListErrors)))
	var list scope.ValidationErrors
	var lim *scope.AddressListLimitError
	if errors.As(err, &lim) || !errors.As(err, &list) || len(list) != scope.MaxAddressListErrors {
		t.Fatalf("%d bad lines: %T with %d errors", scope.MaxAddressListErrors, err, len(list))
	}
}

// TestImportAddressListBoundsUnknownNames: unknown names are reported up
// to MaxAddressListErrors.
func TestImportAddressListBoundsUnknownNames(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&b, "pc%05d.example.com\n", i)
	}
	_, err := scope.ImportAddressList(context.Background(), strings.NewReader(b.String()), inmem.New())
	var lim *scope.AddressListLimitError
	if !errors.As(err, &lim) || lim.Limit != "MaxAddressListErrors" || len(lim.Errors) != scope.MaxAddressListErrors {
		t.Fatalf("error %T %.200v, want *AddressListLimitError with %d errors", err, err, scope.MaxAddressListErrors)
	}
	if lim.Errors[0].Line != 1 || lim.Line != scope.MaxAddressListErrors+1 {
		t.Errorf("first error line %d, stopped at %d", lim.Errors[0].Line, lim.Line)
	}
	if n := len(err.Error()); n > 64<<10 {
		t.Errorf("error string is %d bytes", n)
	}
}
