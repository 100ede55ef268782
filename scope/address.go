package scope

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// AddressKind says how an Address identifies devices.
type AddressKind uint8

// Address kinds.
const (
	// IP is one IPv4 or IPv6 address.
	IP AddressKind = iota + 1
	// Range is an inclusive range of addresses "a-b" of one family.
	Range
	// Subnet is a CIDR prefix such as "10.1.0.0/16".
	Subnet
	// NetBIOSName is a single-label name of at most 15 characters.
	NetBIOSName
	// DNSName is a dotted host name.
	DNSName
)

// String returns the kind's name: "ip", "range", "subnet", "netbios" or
// "dns".
func (k AddressKind) String() string {

	switch k {
	case IP:
		return "ip"
	case Range:
		return "range"
	case Subnet:
		return "subnet"
	case NetBIOSName:
		return "netbios"
	case DNSName:
		return "dns"
	}
	return fmt.Sprintf("AddressKind(%d)", uint8(k))
}

// Limits on addresses, documented so hosts can tell administrators.
const (
	// MaxNetBIOSNameLength is the longest NetBIOS name (15 characters; the
	// 16th byte of a NetBIOS name is the service suffix).
	MaxNetBIOSNameLength = 15
	// MaxDNSNameLength is the longest DNS name, without a trailing dot.
	MaxDNSNameLength = 253
	// MaxDNSLabelLength is the longest label of a DNS name.
	MaxDNSLabelLength = 63
	// MaxAddressListSize is the largest TXT address list ParseAddressList
	// reads, in bytes (16 MiB).
	MaxAddressListSize = 16 << 20
	// MaxAddressLineLength is the longest line of a TXT address list, in
	// bytes, after trimming surrounding white space.
	MaxAddressLineLength = 1024
	// MaxAddressListErrors is the most malformed lines (or, for
	// ImportAddressList, unknown names) a TXT address list reports:
	// reading stops at the next one with an *AddressListLimitError.
	MaxAddressListErrors = 100
	// maxValueInError bounds the offending text quoted in an error.
	maxValueInError = 80
)

// Address is one entry of an address scope: an IP address, an IP range, a
// CIDR subnet, a NetBIOS name or a DNS name. Build it with ParseAddress; the
// zero Address is invalid.
//
// Its JSON (and text) encoding is the canonical string form returned by
// String: "192.0.2.7", "2001:db8::1", "192.0.2.1-192.0.2.99",
// "10.1.0.0/16", "ACCT-PC01" (NetBIOS names upper case), "pc01.example.com"
// (DNS names lower case, no trailing dot). ParseAddress(a.String()) == a.
type Address struct {
	// Kind is what the address is: an IP, a range, a subnet, a NetBIOS
	// or a DNS name.
	Kind AddressKind
	// From and To bound the addresses covered (inclusive): equal for IP,
	// the range ends for Range, the first and last address of Subnet.
	From, To netip.Addr
	// Prefix is set for Subnet.
	Prefix netip.Prefix
	// Name is set for NetBIOSName (upper case) and DNSName (lower case,
	// without a trailing dot).
	Name string
}

// String returns the canonical text form.
func (a Address) String() string {
	switch a.Kind {
	case IP:
		return a.From.String()
	case Range:
		return a.From.String() + "-" + a.To.String()
	case Subnet:
		return a.Prefix.String()
	case NetBIOSName, DNSName:
		return a.Name
	}
	return ""
}

// IsName reports whether the address is a NetBIOS or DNS name, which must
// resolve to devices already in the inventory.
func (a Address) IsName() bool { return a.Kind == NetBIOSName || a.Kind == DNSName }

// Contains reports whether ip is covered by an IP, Range or Subnet address.
// It is false for names.
func (a Address) Contains(ip netip.Addr) bool {
	switch a.Kind {
	case IP, Range, Subnet:
		ip = ip.Unmap()
		return ip.BitLen() == a.From.BitLen() && a.From.Compare(ip) <= 0 && ip.Compare(a.To) <= 0
	}
	return false
}

// MarshalText encodes the canonical form.
func (a Address) MarshalText() ([]byte, error) {
	if a.Kind < IP || a.Kind > DNSName {
		return nil, &ValidationError{Reason: "zero Address cannot be encoded"}
	}
	return []byte(a.String()), nil
}

// UnmarshalText parses like ParseAddress.
func (a *Address) UnmarshalText(b []byte) error {
	p, err := ParseAddress(string(b))
	if err != nil {
		return err
	}
	*a = p
	return nil
}

func clip(s string) string {
	if len(s) <= maxValueInError {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	cut := maxValueInError
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.ToValidUTF8(s[:cut], "\uFFFD") + "…"
}

func addrErr(s string, col int, format string, args ...any) *ValidationError {
	return &ValidationError{Value: clip(s), Reason: fmt.Sprintf(format, args...), Column: col}
}

// ParseAddress parses one device address: an IPv4 or IPv6 address, a range
// "a-b" of one family with a <= b (spaces around the dash allowed), a CIDR
// subnet with no host bits set, a NetBIOS name (one label, at most 15
// characters: letters, digits and - _ ! @ # $ % ^ & ' ( ) { } ~), or a DNS
// name (dot-separated labels of letters, digits and inner hyphens, each at
// most 63 bytes, at most 253 bytes in all, one trailing dot allowed). IPv6
// zones are rejected, IPv4-mapped IPv6 addresses are rejected (write the
// IPv4 address). Text that looks numeric (only digits and dots) must be a
// valid IPv4 address.
//
// A malformed address returns a *ValidationError (matching ErrInvalid) with
// an empty Field (the caller prefixes its own path), the offending text as
// Value and, when one character is to blame, its 1-based Column.
func ParseAddress(s string) (Address, error) {
	if s == "" {
		return Address{}, addrErr(s, 0, "address is empty")
	}
	if t := strings.TrimSpace(s); t != s {
		return Address{}, addrErr(s, 0, "address has surrounding white space")
	}
	if len(s) > MaxAddressLineLength {
		return Address{}, addrErr(s, 0, "address is longer than %d bytes", MaxAddressLineLength)
	}
	if strings.Contains(s, "/") {
		return parseSubnet(s)
	}
	if i := strings.IndexByte(s, '-'); i >= 0 && looksIP(strings.TrimSpace(s[:i])) {
		return parseRange(s, i)
	}
	if looksIP(s) {
		ip, err := parseIP(s)
		if err != nil {
			return Address{}, addrErr(s, 0, "%s", err)
		}
		return Address{Kind: IP, From: ip, To: ip}, nil
	}
	return parseName(s)
}

// looksIP: text that can only be meant as an IP address: it contains a colon
// or consists of digits and dots only.
func looksIP(s string) bool {
	if s == "" {
		return false
	}
	if strings.Contains(s, ":") {
		return true
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}

func parseIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("not a valid IPv4 or IPv6 address")
	}
	if ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("IPv6 zone %q is not allowed", ip.Zone())
	}
	if ip.Is4In6() {
		return netip.Addr{}, fmt.Errorf("IPv4-mapped IPv6 address is not allowed; write %s", ip.Unmap())
	}
	return ip, nil
}

func parseRange(s string, dash int) (Address, error) {
	left, right := strings.TrimSpace(s[:dash]), strings.TrimSpace(s[dash+1:])
	from, err := parseIP(left)
	if err != nil {
		return Address{}, addrErr(s, 1, "range start: %s", err)
	}
	if right == "" {
		return Address{}, addrErr(s, dash+2, "range end is missing")
	}
	to, err := parseIP(right)
	if err != nil {
		return Address{}, addrErr(s, dash+2, "range end: %s", err)
	}
	if from.Is4() != to.Is4() {
		return Address{}, addrErr(s, 0, "range mixes IPv4 and IPv6")
	}
	if from.Compare(to) > 0 {
		return Address{}, addrErr(s, 0, "range is reversed: start %s is after end %s", from, to)
	}
	return Address{Kind: Range, From: from, To: to}, nil
}

func parseSubnet(s string) (Address, error) {
	slash := strings.IndexByte(s, '/')
	if _, err := parseIP(s[:slash]); err != nil {
		return Address{}, addrErr(s, 1, "subnet address: %s", err)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return Address{}, addrErr(s, slash+2, "subnet prefix length must be 0-32 for IPv4, 0-128 for IPv6")
	}
	if p.Masked() != p {
		return Address{}, addrErr(s, 0, "subnet has host bits set; the subnet is %s", p.Masked())
	}
	from := p.Addr()
	to := lastAddr(p)
	return Address{Kind: Subnet, From: from, To: to, Prefix: p}, nil
}

// lastAddr returns the highest address of a masked prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

const netbiosSpecial = "-_!@#$%^&'(){}~"

func parseName(s string) (Address, error) {
	if !strings.Contains(s, ".") {
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !isAlnum(c) && strings.IndexByte(netbiosSpecial, c) < 0 {
				return Address{}, addrErr(s, runeCol(s, i), "invalid character %s in NetBIOS name (allowed: letters, digits and %s)", quoteChar(s, i), netbiosSpecial)
			}
		}
		if len(s) > MaxNetBIOSNameLength {
			return Address{}, addrErr(s, 0, "NetBIOS name is longer than %d characters", MaxNetBIOSNameLength)
		}
		return Address{Kind: NetBIOSName, Name: strings.ToUpper(s)}, nil
	}
	name := strings.TrimSuffix(s, ".")
	if name != "" && !strings.Contains(name, ".") {
		return Address{}, addrErr(s, 0, "a DNS name needs at least two labels; write a single-label name without the dot (a NetBIOS name)")
	}
	if len(name) > MaxDNSNameLength {
		return Address{}, addrErr(s, 0, "DNS name is longer than %d bytes", MaxDNSNameLength)
	}
	start := 0
	for start <= len(name) {
		end := strings.IndexByte(name[start:], '.')
		if end < 0 {
			end = len(name)
		} else {
			end += start
		}
		label := name[start:end]
		switch {
		case label == "":
			return Address{}, addrErr(s, start+1, "DNS name has an empty label")
		case len(label) > MaxDNSLabelLength:
			return Address{}, addrErr(s, start+1, "DNS label %q is longer than %d bytes", clip(label), MaxDNSLabelLength)
		case label[0] == '-' || label[len(label)-1] == '-':
			return Address{}, addrErr(s, start+1, "DNS label %q starts or ends with a hyphen", clip(label))
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return Address{}, addrErr(s, runeCol(s, start+i), "invalid character %s in DNS name (allowed: letters, digits, inner hyphens)", quoteChar(s, start+i))
			}
		}
		start = end + 1
	}
	last := name[strings.LastIndexByte(name, '.')+1:]
	if looksIP(last) {
		return Address{}, addrErr(s, 0, "DNS name has an all-numeric top-level label")
	}
	return Address{Kind: DNSName, Name: strings.ToLower(name)}, nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// runeCol converts a byte offset to a 1-based column counted in characters.
func runeCol(s string, i int) int { return utf8.RuneCountInString(s[:i]) + 1 }

func quoteChar(s string, i int) string {
	r, _ := utf8.DecodeRuneInString(s[i:])
	return fmt.Sprintf("%q", r)
}

// ParseAddressList reads a TXT list of device addresses, one per line (the
// product documentation's "import from a TXT file"). Blank lines and lines starting with '#'
// (after leading white space) are skipped; white space around an address is
// trimmed; LF and CRLF line ends are accepted; a UTF-8 byte order mark is
// skipped, and a UTF-16 file (with its byte order mark, as Windows Notepad
// writes it) is decoded.
//
// Every malformed line is reported, all at once, as ValidationErrors with
// the 1-based Line (and Column where one character is to blame); on any
// error no address is returned. Names are not checked against an inventory
// here: use ImportAddressList for that.
//
// Reading stops with an *AddressListLimitError at the first limit passed:
// more than MaxAddressListSize bytes, more than MaxListLength addresses (a
// scope holds no more), or a malformed line after MaxAddressListErrors
// of them. The memory used and the error are bounded accordingly.
func ParseAddressList(r io.Reader) ([]Address, error) {
	lines, err := parseList(r)
	if err != nil {
		return nil, err
	}
	out := make([]Address, len(lines))
	for i, l := range lines {
		out[i] = l.addr
	}
	return out, nil
}

// AddressListLimitError reports a TXT address list that exceeds a
// documented limit, so it was not read (or not checked) to its end: more
// than MaxAddressListSize bytes, more addresses than a scope may hold
// (MaxListLength), or more than MaxAddressListErrors malformed lines or
// unknown names. It matches ErrInvalid, and errors.As finds Errors.
type AddressListLimitError struct {
	// Limit names the limit exceeded: "MaxAddressListSize",
	// "MaxListLength" or "MaxAddressListErrors".
	Limit string
	// Line is the 1-based line where reading stopped (0 for
	// MaxAddressListSize, which is checked before any line is read).
	Line int
	// Errors are the malformed lines (or unknown names) found before
	// Line, at most MaxAddressListErrors.
	Errors ValidationErrors
}

func (e *AddressListLimitError) Error() string {
	var b strings.Builder
	switch e.Limit {
	case "MaxAddressListSize":
		fmt.Fprintf(&b, "invalid address list: larger than %d bytes (MaxAddressListSize)", MaxAddressListSize)
	case "MaxListLength":
		fmt.Fprintf(&b, "invalid address list: more than %d addresses (MaxListLength); reading stopped at line %d", MaxListLength, e.Line)
	default:
		fmt.Fprintf(&b, "invalid address list: more than %d errors (MaxAddressListErrors); reading stopped at line %d", MaxAddressListErrors, e.Line)
	}
	if len(e.Errors) > 0 {
		b.WriteString("; before it: ")
		b.WriteString(e.Errors.Error())
	}
	return b.String()
}

// Is makes the error match ErrInvalid.
func (e *AddressListLimitError) Is(target error) bool { return target == ErrInvalid }

// Unwrap exposes Errors to errors.As (nil when there are none).
func (e *AddressListLimitError) Unwrap() error {
	if len(e.Errors) == 0 {
		return nil
	}
	return e.Errors
}

type listLine struct {
	addr Address
	line int
}

func parseList(r io.Reader) ([]listLine, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxAddressListSize+1))
	if err != nil {
		return nil, fmt.Errorf("scope: read address list: %w", err)
	}
	if len(data) > MaxAddressListSize {
		return nil, &AddressListLimitError{Limit: "MaxAddressListSize"}
	}
	text, err := decodeText(data)
	if err != nil {
		return nil, err
	}
	var (
		out  []listLine
		bad  ValidationErrors
		line int
	)
	for len(text) > 0 || line == 0 {
		line++
		var l string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			l, text = text[:i], text[i+1:]
		} else {
			l, text = text, ""
		}
		l = strings.TrimSuffix(l, "\r")
		if !utf8.ValidString(l) {
			if len(bad) == MaxAddressListErrors {
				return nil, &AddressListLimitError{Limit: "MaxAddressListErrors", Line: line, Errors: bad}
			}
			bad = append(bad, &ValidationError{Value: clip(l), Reason: "line is not valid UTF-8", Line: line})
			continue
		}
		t := strings.TrimSpace(l)
		if t == "" || t[0] == '#' {
			continue
		}
		a, err := ParseAddress(t)
		if err != nil {
			if len(bad) == MaxAddressListErrors {
				return nil, &AddressListLimitError{Limit: "MaxAddressListErrors", Line: line, Errors: bad}
			}
			ve := err.(*ValidationError)
			c := *ve
			c.Line = line
			if c.Column > 0 {
				c.Column += utf8.RuneCountInString(l[:strings.Index(l, t)])
			}
			bad = append(bad, &c)
			continue
		}
		if len(out) == MaxListLength {
			return nil, &AddressListLimitError{Limit: "MaxListLength", Line: line, Errors: bad}
		}
		out = append(out, listLine{addr: a, line: line})
	}
	if len(bad) > 0 {
		return nil, bad
	}
	return out, nil
}

// decodeText strips a UTF-8 byte order mark or decodes UTF-16 with a byte
// order mark.
func decodeText(b []byte) (string, error) {
	switch {
	case bytes.HasPrefix(b, []byte{0xEF, 0xBB, 0xBF}):
		return string(b[3:]), nil
	case bytes.HasPrefix(b, []byte{0xFF, 0xFE}), bytes.HasPrefix(b, []byte{0xFE, 0xFF}):
		le := b[0] == 0xFF
		b = b[2:]
		if len(b)%2 != 0 {
			return "", &ValidationError{Reason: "UTF-16 address list has an odd number of bytes"}
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			if le {
				u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
			} else {
				u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
			}
		}
		return string(utf16.Decode(u)), nil
	}
	return string(b), nil
}

// ImportAddressList parses a TXT address list like ParseAddressList and
// also checks that every NetBIOS and DNS name resolves to at least one
// device already in inv (the product documentation: a list of names "can only contain
// devices for which information has already been entered into the
// Administration Server database"). Unknown names are reported with their
// line, together with any malformed lines, all at once; on any error no
// address is returned. Errors from inv are returned as they are (wrapped).
func ImportAddressList(ctx context.Context, r io.Reader, inv Inventory) ([]Address, error) {
	lines, err := parseList(r)
	if err != nil {
		return nil, err
	}
	addrs := make([]Address, len(lines))
	for i, l := range lines {
		addrs[i] = l.addr
	}
	missing, err := unresolvedNames(ctx, inv, addrs)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		bad := make(ValidationErrors, 0, min(len(missing), MaxAddressListErrors))
		for _, i := range missing {
			if len(bad) == MaxAddressListErrors {
				return nil, &AddressListLimitError{Limit: "MaxAddressListErrors", Line: lines[i].line, Errors: bad}
			}
			bad = append(bad, &ValidationError{Value: addrs[i].Name, Reason: "no device with this name is in the inventory", Line: lines[i].line})
		}
		return nil, bad
	}
	return addrs, nil
}
