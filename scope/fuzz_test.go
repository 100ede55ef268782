package scope_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/taskfleet/taskfleet/scope"
)

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "2001:db8::1", "10.0.0.1-10.0.0.9", "10.0.0.0/24", "PC01", "pc.example.com", "10.0.0.9-10.0.0.1", "fe80::1%eth0", "a..b", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := scope.ParseAddress(s)
		if err != nil {
			var ve *scope.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, scope.ErrInvalid) {
				t.Fatalf("ParseAddress(%q) error %T %v is not a *ValidationError", s, err, err)
			}
			if ve.Column < 0 || len(ve.Value) > 4*100 {
				t.Fatalf("bad error fields %+v", ve)
			}
			return
		}
		again, err := scope.ParseAddress(a.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", a, s, err)
		}
		if again.Kind != a.Kind || again.From != a.From || again.To != a.To || again.Prefix != a.Prefix || again.Name != a.Name {
			t.Fatalf("round trip of %q: %+v != %+v", s, again, a)
		}
		if !a.IsName() && (!a.Contains(a.From) || !a.Contains(a.To) || a.From.Compare(a.To) > 0) {
			t.Fatalf("%v does not contain its own bounds", a)
		}
		if err := (scope.Scope{Kind: scope.Addresses, Addresses: []scope.Address{a}}).Validate(); err != nil {
			t.Fatalf("a parsed address fails Validate: %v", err)
		}
	})
}

func FuzzParseAddressList(f *testing.F) {
	for _, s := range []string{
		"10.0.0.1\n10.0.0.0/24\n# c\n\npc01\r\n",
		"\xef\xbb\xbfpc01.example.com\n",
		"\xff\xfe1\x000\x00.\x000\x00.\x000\x00.\x001\x00",
		"bad name\n10.0.0.9-10.0.0.1\n",
		"\xff\n\r\n\r",
		strings.Repeat("bad name\n", scope.MaxAddressListErrors+3),
		strings.Repeat("x\xff\n10.0.0.1\n", scope.MaxAddressListErrors+1),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := scope.ParseAddressList(bytes.NewReader(b))
		if err != nil {
			if got != nil {
				t.Fatal("addresses returned together with an error")
			}
			if !errors.Is(err, scope.ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			// Errors are bounded: at most MaxAddressListErrors lines,
			// each quoting a clipped value.
			if n := len(err.Error()); n > 64<<10 {
				t.Fatalf("error string is %d bytes", n)
			}
			var lim *scope.AddressListLimitError
			if errors.As(err, &lim) && (len(lim.Errors) > scope.MaxAddressListErrors || lim.Line < 0) {
				t.Fatalf("limit error %q at line %d with %d errors", lim.Limit, lim.Line, len(lim.Errors))
			}
			var list scope.ValidationErrors
			if errors.As(err, &list) {
				lines := bytes.Count(b, []byte{'\n'}) + 1
				for _, e := range list {
					if e.Line < 1 || e.Line > lines {
						t.Fatalf("line %d out of 1..%d", e.Line, lines)
					}
				}
			}
			return
		}
		if len(got) > scope.MaxListLength {
			t.Fatalf("%d addresses, more than MaxListLength", len(got))
		}
		for _, a := range got {
			if _, err := scope.ParseAddress(a.String()); err != nil {
				t.Fatalf("imported %q does not re-parse: %v", a, err)
			}
		}
	})
}

func FuzzCompileSelection(f *testing.F) {
	for _, s := range []string{
		`"accounting" in device.tags`,
		`device.os.name.startsWith("Windows 11") && !("X" in device.applications)`,
		`device.software.exists(s, s.name == "a" && int(s.version.split(".")[0]) < 3)`,
		`device.applications["x"].running`,
		`device.last_seen < timestamp("2026-01-01T00:00:00Z")`,
		`has(device.os) ? device.os.platform == "linux" : false`,
		`1 / 0 == 1`,
		`device.`,
		`[1,2,3].map(x, x * 2).size() > 1`,
		strings.Repeat("!", 50) + "true",
		`device.software[-1].name == ""`,
		`device.software + [device.software[0]] == []`,
		`dyn(device.software)[0] == 1`,
		`dyn(device.os) == dyn(device.software[0])`,
		`dyn(device.applications) == {}`,
		`device.applications.map(k, device.applications[k]).size() == 2`,
		`dyn(device.software) in [device.software]`,
	} {
		f.Add(s)
	}
	full, bare := fullDevice(), &scope.Device{ID: "bare"}
	f.Fuzz(func(t *testing.T, expr string) {
		p, err := scope.CompileSelection(expr)
		if err != nil {
			if p != nil || !errors.Is(err, scope.ErrInvalid) {
				t.Fatalf("CompileSelection(%q) = %v, %v", expr, p, err)
			}
			return
		}
		for _, d := range []*scope.Device{full, bare} {
			m, reason := p.Evaluate(d)
			if m != scope.In && m != scope.Out && m != scope.Unknown {
				t.Fatalf("membership %q", m)
			}
			if (m == scope.Unknown) != (reason != "") {
				t.Fatalf("membership %s with reason %q", m, reason)
			}
		}
	})
}
