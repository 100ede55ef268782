package scope_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/scope"
)

func TestParseAddressValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in        string
		kind      scope.AddressKind
		canonical string
		from, to  string
	}{
		{"192.0.2.7", scope.IP, "192.0.2.7", "192.0.2.7", "192.0.2.7"},
		{"2001:DB8::1", scope.IP, "2001:db8::1", "2001:db8::1", "2001:db8::1"},
		{"::1", scope.IP, "::1", "::1", "::1"},
		{"192.0.2.1-192.0.2.99", scope.Range, "192.0.2.1-192.0.2.99", "192.0.2.1", "192.0.2.99"},
		{"192.0.2.1 - 192.0.2.99", scope.Range, "192.0.2.1-192.0.2.99", "192.0.2.1", "192.0.2.99"},
		{"192.0.2.5-192.0.2.5", scope.Range, "192.0.2.5-192.0.2.5", "192.0.2.5", "192.0.2.5"},
		{"2001:db8::1-2001:db8::ff", scope.Range, "2001:db8::1-2001:db8::ff", "2001:db8::1", "2001:db8::ff"},
		{"10.1.0.0/16", scope.Subnet, "10.1.0.0/16", "10.1.0.0", "10.1.255.255"},
		{"10.1.2.3/32", scope.Subnet, "10.1.2.3/32", "10.1.2.3", "10.1.2.3"},
		{"0.0.0.0/0", scope.Subnet, "0.0.0.0/0", "0.0.0.0", "255.255.255.255"},
		{"2001:db8::/32", scope.Subnet, "2001:db8::/32", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"},
		{"acct-pc01", scope.NetBIOSName, "ACCT-PC01", "", ""},
		{"PC_01$", scope.NetBIOSName, "PC_01$", "", ""},
		{"ABCDEFGHIJKLMNO", scope.NetBIOSName, "ABCDEFGHIJKLMNO", "", ""},
		{"pc01.Example.COM", scope.DNSName, "pc01.example.com", "", ""},
		{"pc01.example.com.", scope.DNSName, "pc01.example.com", "", ""},
		{"host-1.sub-2.example", scope.DNSName, "host-1.sub-2.example", "", ""},
		{"1host.example", scope.DNSName, "1host.example", "", ""},
		{"a." + strings.Repeat("b", 63) + ".example", scope.DNSName, "a." + strings.Repeat("b", 63) + ".example", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			a, err := scope.ParseAddress(tt.in)
			if err != nil {
				t.Fatalf("ParseAddress(%q) = %v", tt.in, err)
			}
			if a.Kind != tt.kind || a.String() != tt.canonical {
				t.Fatalf("ParseAddress(%q) = %v %q, want %v %q", tt.in, a.Kind, a, tt.kind, tt.canonical)
			}
			if tt.from != "" && (a.From.String() != tt.from || a.To.String() != tt.to) {
				t.Fatalf("ParseAddress(%q) covers %v-%v, want %s-%s", tt.in, a.From, a.To, tt.from, tt.to)
			}
			again, err := scope.ParseAddress(a.String())
			if err != nil || again.String() != a.String() || again.Kind != a.Kind {
				t.Fatalf("round trip of %q: %v, %v", a, again, err)
			}
		})
	}
}

func TestParseAddressInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		reason string
		column int
	}{
		{"", "empty", 0},
		{" 10.0.0.1", "white space", 0},
		{"10.0.0.256", "not a valid IPv4 or IPv6 address", 0},
		{"10.0.0", "not a valid", 0},
		{"12345", "not a valid", 0},
		{"fe80::1%eth0", "zone", 0},
		{"::ffff:10.0.0.1", "IPv4-mapped", 0},
		{"10.0.0.9-10.0.0.1", "range is reversed", 0},
		{"10.0.0.1-2001:db8::1", "mixes IPv4 and IPv6", 0},
		{"10.0.0.1-", "range end is missing", 10},
		{"10.0.0.1-host", "range end", 10},
		{"10.0.0.1/24", "host bits set; the subnet is 10.0.0.0/24", 0},
		{"10.0.0.0/33", "prefix length", 10},
		{"10.0.0.0/", "prefix length", 10},
		{"host/24", "subnet address", 1},
		{"ABCDEFGHIJKLMNOP", "longer than 15", 0},
		{"pc 01", "invalid character ' ' in NetBIOS name", 3},
		{"pc*01", "invalid character '*'", 3},
		{"pcä01", "invalid character 'ä'", 3},
		{"a..example.com", "empty label", 3},
		{".example.com", "empty label", 1},
		{"-a.example.com", "starts or ends with a hyphen", 1},
		{"a.example-.com", "starts or ends with a hyphen", 3},
		{"a_b.example.com", "invalid character '_' in DNS name", 2},
		{"a." + strings.Repeat("b", 64) + ".example", "longer than 63", 3},
		{strings.Repeat("abcdefghi.", 26) + "com", "longer than 253", 0},
		{"host.123", "all-numeric top-level", 0},
		{"0A0.", "at least two labels", 0},
		{strings.Repeat("x", 2000), "longer than 1024", 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			_, err := scope.ParseAddress(tt.in)
			if !errors.Is(err, scope.ErrInvalid) {
				t.Fatalf("ParseAddress(%q) error = %v, want ErrInvalid", tt.in, err)
			}
			var ve *scope.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError", err)
			}
			if !strings.Contains(ve.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", ve.Reason, tt.reason)
			}
			if ve.Column != tt.column {
				t.Errorf("Column = %d, want %d", ve.Column, tt.column)
			}
			if tt.in != "" && ve.Value == "" {
				t.Errorf("Value is empty; the offending text must be quoted")
			}
			if len(ve.Value) > 100 {
				t.Errorf("Value is %d bytes; long input must be clipped", len(ve.Value))
			}
		})
	}
}

// TestAddressContainsOracle checks Contains, and the merged interval index
// that Resolve uses, against a brute-force oracle (netip comparisons on
// random addresses and rules).
func TestAddressContainsOracle(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	randIP := func() netip.Addr {
		if r.IntN(4) == 0 {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(r.IntN(256))})
		}
		return netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.IntN(256))})
	}
	for range 2000 {
		ip := randIP()
		var a scope.Address
		switch r.IntN(3) {
		case 0:
			a, _ = scope.ParseAddress(randIP().String())
		case 1:
			x, y := randIP(), randIP()
			if x.Is4() != y.Is4() {
				continue
			}
			if x.Compare(y) > 0 {
				x, y = y, x
			}
			a, _ = scope.ParseAddress(x.String() + "-" + y.String())
		case 2:
			p, _ := randIP().Prefix(r.IntN(8) + 24)
			if p.Addr().Is6() {
				p, _ = p.Addr().Prefix(r.IntN(16) + 112)
			}
			a, _ = scope.ParseAddress(p.String())
		}
		if a.Kind == 0 {
			t.Fatal("generator produced an invalid address")
		}
		want := ip.Is4() == a.From.Is4() && a.From.Compare(ip) <= 0 && ip.Compare(a.To) <= 0
		if a.Kind == scope.Subnet {
			want = a.Prefix.Contains(ip)
		}
		if got := a.Contains(ip); got != want {
			t.Fatalf("%v.Contains(%v) = %v, want %v", a, ip, got, want)
		}
	}
}

func TestAddressJSON(t *testing.T) {
	t.Parallel()
	var in []scope.Address
	for _, s := range []string{"10.0.0.0/24", "10.1.0.1-10.1.0.9", "2001:db8::1", "PC01", "pc02.example.com"} {
		a, err := scope.ParseAddress(s)
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, a)
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `["10.0.0.0/24","10.1.0.1-10.1.0.9","2001:db8::1","PC01","pc02.example.com"]`; got != want {
		t.Fatalf("JSON = %s, want %s", got, want)
	}
	var out []scope.Address
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if in[i].String() != out[i].String() || in[i].Kind != out[i].Kind || in[i].From != out[i].From || in[i].To != out[i].To {
			t.Errorf("round trip [%d]: %v -> %v", i, in[i], out[i])
		}
	}
	if err := json.Unmarshal([]byte(`["10.0.0.9-10.0.0.1"]`), &out); !errors.Is(err, scope.ErrInvalid) {
		t.Errorf("decoding a reversed range: error = %v, want ErrInvalid", err)
	}
	if _, err := json.Marshal(scope.Address{}); err == nil {
		t.Error("encoding the zero Address succeeded")
	}
}

func utf16File(s string, bigEndian bool) []byte {
	u := utf16.Encode([]rune(s))
	var b bytes.Buffer
	if bigEndian {
		b.Write([]byte{0xFE, 0xFF})
	} else {
		b.Write([]byte{0xFF, 0xFE})
	}
	for _, c := range u {
		if bigEndian {
			b.Write([]byte{byte(c >> 8), byte(c)})
		} else {
			b.Write([]byte{byte(c), byte(c >> 8)})
		}
	}
	return b.Bytes()
}

func TestParseAddressList(t *testing.T) {
	t.Parallel()
	want := []string{"10.0.0.1", "10.0.1.0/24", "PC01", "pc02.example.com"}
	body := "10.0.0.1\n# accounting\n\n  10.0.1.0/24  \npc01\npc02.example.com"
	tests := []struct {
		name string
		in   []byte
	}{
		{"LF", []byte(body)},
		{"CRLF", []byte(strings.ReplaceAll(body, "\n", "\r\n") + "\r\n")},
		{"UTF-8 BOM", append([]byte{0xEF, 0xBB, 0xBF}, body...)},
		{"UTF-16LE BOM", utf16File(strings.ReplaceAll(body, "\n", "\r\n"), false)},
		{"UTF-16BE BOM", utf16File(body, true)},
		{"trailing newline and comment", []byte(body + "\n   # end\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := scope.ParseAddressList(bytes.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var texts []string
			for _, a := range got {
				texts = append(texts, a.String())
			}
			if diff := cmp.Diff(want, texts); diff != "" {
				t.Fatalf("addresses (-want +got):\n%s", diff)
			}
		})
	}
	empty, err := scope.ParseAddressList(strings.NewReader("\n# nothing\n"))
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty list = %v, %v", empty, err)
	}
}

func TestParseAddressListReportsEveryErrorWithLine(t *testing.T) {
	t.Parallel()
	in := "10.0.0.1\r\n10.0.0.9-10.0.0.1\r\n# ok\r\n  pc*01\r\n10.0.0.0/33\r\ngood.example.com\r\n\xff\xfe\r\n"
	got, err := scope.ParseAddressList(strings.NewReader(in))
	if got != nil {
		t.Fatalf("addresses = %v, want nil (nothing half-imported)", got)
	}
	var list scope.ValidationErrors
	if !errors.As(err, &list) || !errors.Is(err, scope.ErrInvalid) {
		t.Fatalf("error = %#v, want ValidationErrors", err)
	}
	type row struct {
		Line, Column int
		Value        string
	}
	var rows []row
	for _, e := range list {
		rows = append(rows, row{e.Line, e.Column, e.Value})
	}
	want := []row{
		{2, 0, "10.0.0.9-10.0.0.1"},
		{4, 5, "pc*01"}, // column counts the leading spaces of the line
		{5, 10, "10.0.0.0/33"},
		{7, 0, "\ufffd"},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Fatalf("errors (-want +got):\n%s", diff)
	}
}

func TestParseAddressListLimits(t *testing.T) {
	t.Parallel()
	_, err := scope.ParseAddressList(bytes.NewReader([]byte{0xFF, 0xFE, 'a'}))
	if !errors.Is(err, scope.ErrInvalid) {
		t.Errorf("odd UTF-16: error = %v, want ErrInvalid", err)
	}
	big := strings.Repeat("10.0.0.1\n", scope.MaxAddressListSize/9+1)
	if _, err := scope.ParseAddressList(strings.NewReader(big)); !errors.Is(err, scope.ErrInvalid) {
		t.Errorf("oversized list: error = %v, want ErrInvalid", err)
	}
	if _, err := scope.ParseAddressList(failingReader{}); err == nil || errors.Is(err, scope.ErrInvalid) {
		t.Errorf("read failure: error = %v, want the reader's error", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }
