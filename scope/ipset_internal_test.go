package scope

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestIPSetOracle checks the merged interval index against a linear scan
// of Address.Contains, with IPv4 and IPv6, adjacent and overlapping
// intervals and the ends of both address spaces.
func TestIPSetOracle(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 11))
	edge4 := []netip.Addr{netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("255.255.255.255")}
	edge6 := []netip.Addr{netip.MustParseAddr("::"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}
	randIP := func() netip.Addr {
		switch r.IntN(10) {
		case 0:
			return edge4[r.IntN(2)]
		case 1:
			return edge6[r.IntN(2)]
		case 2, 3, 4:
			var b [16]byte
			b[0], b[1] = 0x20, 0x01
			b[7] = byte(r.IntN(3)) // crosses the hi/lo 64-bit halves
			b[8] = byte(r.IntN(3))
			b[15] = byte(r.IntN(16))
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(2)), byte(r.IntN(40))})
	}
	for round := range 300 {
		var addrs []Address
		for range 1 + r.IntN(12) {
			x, y := randIP(), randIP()
			if x.Is4() != y.Is4() {
				y = x
			}
			if x.Compare(y) > 0 {
				x, y = y, x
			}
			var a Address
			var err error
			switch r.IntN(3) {
			case 0:
				a, err = ParseAddress(x.String())
			case 1:
				a, err = ParseAddress(x.String() + "-" + y.String())
			case 2:
				bits := x.BitLen() - r.IntN(6)
				p, _ := x.Prefix(bits)
				a, err = ParseAddress(p.String())
			}
			if err != nil {
				t.Fatal(err)
			}
			addrs = append(addrs, a)
		}
		set := newIPSet(addrs)
		for range 200 {
			ip := randIP()
			want := false
			for _, a := range addrs {
				want = want || a.Contains(ip)
			}
			if got := set.contains(ip); got != want {
				t.Fatalf("round %d: contains(%v) = %v, want %v; rules %v", round, ip, got, want, addrs)
			}
			mapped := netip.AddrFrom16(ip.As16())
			if ip.Is4() && set.contains(mapped) != want {
				t.Fatalf("round %d: IPv4-mapped %v disagrees with %v", round, mapped, ip)
			}
		}
	}
}
