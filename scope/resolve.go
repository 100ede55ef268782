package scope

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// Membership is the answer for one device: in the scope, out of it, or
// unknown because a fact that decides it is missing.
type Membership string

// Memberships.
const (
	In      Membership = "in"
	Out     Membership = "out"
	Unknown Membership = "unknown"
)

// Resolution is a scope resolved against an inventory at one moment.
type Resolution struct {
	// Kind is the scope's kind.
	Kind Kind `json:"kind"`
	// OnServer is true for a Server scope: the task runs on the
	// Administration Server itself, and Devices is empty.
	OnServer bool `json:"on_server,omitempty"`
	// Devices are the devices in the scope, in ascending ID order.
	Devices []DeviceID `json:"devices"`
	// Unknown are the devices whose membership depends on a fact the
	// inventory does not have, in ascending ID order. They are neither
	// included nor excluded: the host decides (retry later, show the
	// administrator).
	Unknown []UnknownDevice `json:"unknown,omitempty"`
	// Offline are the devices a Selection scope matches that are not
	// connected to the Administration Server, in ascending ID order. Tasks
	// for selections run only on connected devices, so they are not in
	// Devices.
	Offline []DeviceID `json:"offline,omitempty"`
	// Missing are the entries of the scope that name no device in the
	// inventory (a deleted device id, a name no device has any more).
	Missing []MissingRef `json:"missing,omitempty"`
	// SelectionID and SelectionRevision name the saved selection (and the
	// revision of it) a scope with a SelectionID was resolved with.
	SelectionID       SelectionID `json:"selection_id,omitempty"`
	SelectionRevision int64       `json:"selection_revision,omitempty"`
}

// UnknownDevice is a device whose membership could not be decided.
type UnknownDevice struct {
	// ID is the device.
	ID DeviceID `json:"id"`
	// Reason names the missing fact ("unknown fact device.os") or the
	// evaluation failure.
	Reason string `json:"reason"`
}

// MissingRef is a scope entry that names no device in the inventory.
type MissingRef struct {
	// Field is the JSON path of the entry: "device", "devices[3]",
	// "addresses[7]".
	Field string `json:"field"`
	// Value is the entry as written (a device id, an address).
	Value string `json:"value"`
}

// Explanation says why one device is in or out of a scope.
type Explanation struct {
	// Device is the device explained.
	Device DeviceID `json:"device"`
	// Membership is whether it is in, out, or unknown.
	Membership Membership `json:"membership"`
	// Rule is a stable code for what decided: "local", "server",
	// "device_list", "group", "subgroup", "group_only", "excluded_group",
	// "other_group", "unassigned", "server_role", "address", "no_address",
	// "selection", "offline", "unknown_fact".
	Rule string `json:"rule"`
	// Field is the JSON path of the scope entry that decided, when one did:
	// "devices[3]", "excluded_groups[0]", "addresses[5]".
	Field string `json:"field,omitempty"`
	// Reason is a sentence for an administrator. For a saved selection
	// it names the selection, its id and revision.
	Reason string `json:"reason"`
	// SelectionID and SelectionRevision name the saved selection that
	// decided, for a scope with a SelectionID.
	SelectionID       SelectionID `json:"selection_id,omitempty"`
	SelectionRevision int64       `json:"selection_revision,omitempty"`
}

// String formats the explanation as "device: membership (rule): reason".
func (e Explanation) String() string {

	return fmt.Sprintf("%s: %s (%s): %s", e.Device, e.Membership, e.Rule, e.Reason)
}

// ValidateWith checks the scope like Validate and then against inv: the
// device of a Local scope exists; the group of a Group scope exists and
// every excluded group is a strict subgroup of it; every device of a
// Devices scope exists; every name of an Addresses scope resolves to a
// device; the saved selection of a SelectionID exists (a
// *SelectionNotFoundError otherwise). It returns ValidationErrors naming
// each offending entry ("excluded_groups[1]"), or an error from inv
// (wrapped).
func (s Scope) ValidateWith(ctx context.Context, inv Inventory) error {
	if err := s.Validate(); err != nil {
		return err
	}
	var bad ValidationErrors
	switch s.Kind {
	case Local:
		missing, err := missingIDs(ctx, inv, []DeviceID{s.Device})
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			bad = append(bad, errs.Invalid("device", string(s.Device), "no such device in the inventory"))
		}
	case Group:
		_, err := groupTree(ctx, s, inv)
		if err != nil {
			return err
		}
	case Devices:
		missing, err := missingIDs(ctx, inv, s.Devices)
		if err != nil {
			return err
		}
		for _, i := range missing {
			bad = append(bad, errs.Invalid(fmt.Sprintf("devices[%d]", i), string(s.Devices[i]), "no such device in the inventory"))
		}
	case Selection:
		if s.SelectionID != "" {
			if _, err := savedSelection(ctx, s, inv); err != nil {
				return err
			}
		}
	case Addresses:
		missing, err := unresolvedNames(ctx, inv, s.Addresses)
		if err != nil {
			return err
		}
		for _, i := range missing {
			bad = append(bad, errs.Invalid(fmt.Sprintf("addresses[%d]", i), s.Addresses[i].Name, "no device with this name is in the inventory"))
		}
	}
	return bad.Err()
}

// tree is the administration group tree of an inventory, with the group
// scope's included groups.
type tree struct {
	groups   map[GroupID]*AdminGroup
	children map[GroupID][]GroupID
	// included are the groups whose devices the scope covers (the group,
	// its subgroups unless GroupOnly, minus excluded subtrees), sorted.
	included []GroupID
	// excluded maps an excluded group to its index in ExcludedGroups.
	excluded map[GroupID]int
}

// groupTree loads the group tree and checks the group scope against it.
func groupTree(ctx context.Context, s Scope, inv Inventory) (*tree, error) {
	list, err := inv.Groups(ctx)
	if err != nil {
		return nil, fmt.Errorf("scope: list groups: %w", err)
	}
	t := &tree{groups: make(map[GroupID]*AdminGroup, len(list)), children: make(map[GroupID][]GroupID, len(list)), excluded: map[GroupID]int{}}
	for i := range list {
		g := &list[i]
		t.groups[g.ID] = g
		if g.Parent != "" {
			t.children[g.Parent] = append(t.children[g.Parent], g.ID)
		}
	}
	var bad ValidationErrors
	if _, ok := t.groups[s.Group]; !ok {
		return nil, errs.Invalid("group", string(s.Group), "no such group in the inventory")
	}
	for i, x := range s.ExcludedGroups {
		f := fmt.Sprintf("excluded_groups[%d]", i)
		if _, ok := t.groups[x]; !ok {
			bad = append(bad, errs.Invalid(f, string(x), "no such group in the inventory"))
			continue
		}
		if x == s.Group || !t.isAncestor(s.Group, x) {
			bad = append(bad, errs.Invalid(f, string(x), "must be a strict subgroup of group "+strconv.Quote(string(s.Group))))
			continue
		}
		t.excluded[x] = i
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	if s.GroupOnly {
		t.included = []GroupID{s.Group}
		return t, nil
	}
	seen := map[GroupID]bool{s.Group: true}
	stack := []GroupID{s.Group}
	for len(stack) > 0 {
		g := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		t.included = append(t.included, g)
		for _, c := range t.children[g] {
			if _, ex := t.excluded[c]; ex || seen[c] {
				continue
			}
			seen[c] = true
			stack = append(stack, c)
		}
	}
	slices.Sort(t.included)
	return t, nil
}

// isAncestor reports whether anc is g or one of its ancestors (guarding
// against cycles in a broken tree).
func (t *tree) isAncestor(anc, g GroupID) bool {
	for range len(t.groups) + 1 {
		if g == anc {
			return true
		}
		p, ok := t.groups[g]
		if !ok || p.Parent == "" {
			return false
		}
		g = p.Parent
	}
	return false
}

// path returns the groups from g up to the root (g first).
func (t *tree) path(g GroupID) []GroupID {
	var out []GroupID
	for range len(t.groups) + 1 {
		out = append(out, g)
		p, ok := t.groups[g]
		if !ok || p.Parent == "" {
			break
		}
		g = p.Parent
	}
	return out
}

func (t *tree) label(g GroupID) string {
	if x, ok := t.groups[g]; ok && x.Name != "" {
		return fmt.Sprintf("%q (%s)", x.Name, g)
	}
	return strconv.Quote(string(g))
}

// Resolve resolves s against inv: which devices are in the scope now. The
// result is deterministic: every list is in ascending ID order. Devices
// whose membership depends on a missing fact are listed in Unknown, never
// silently included or excluded; scope entries that name no device are
// listed in Missing.
//
// Errors: a *ValidationError or ValidationErrors (matching ErrInvalid) when
// s is invalid (Validate), when the group of a Group scope is not in the
// inventory, or when an excluded group is not a strict subgroup of it
// (Field "excluded_groups[i]", Value the group id); ctx's error when it is
// done; errors from inv, wrapped.
func Resolve(ctx context.Context, s Scope, inv Inventory) (Resolution, error) {
	if err := s.Validate(); err != nil {
		return Resolution{}, err
	}
	r := Resolution{Kind: s.Kind, Devices: []DeviceID{}}
	var err error
	switch s.Kind {
	case Server:
		r.OnServer = true
	case Local:
		err = resolveIDs(ctx, inv, []DeviceID{s.Device}, func(int) string { return "device" }, &r)
	case Devices:
		err = resolveIDs(ctx, inv, s.Devices, func(i int) string { return fmt.Sprintf("devices[%d]", i) }, &r)
	case Group:
		err = resolveGroup(ctx, s, inv, &r)
	case Addresses:
		err = resolveAddresses(ctx, s, inv, &r)
	case Selection:
		if s.SelectionID != "" {
			sel, serr := savedSelection(ctx, s, inv)
			if serr != nil {
				return Resolution{}, serr
			}
			s.Selection = sel.Expr
			r.SelectionID, r.SelectionRevision = sel.ID, sel.Revision
		}
		err = resolveSelection(ctx, s, inv, &r)
	}
	if err != nil {
		return Resolution{}, err
	}
	return r, nil
}

// missingIDs returns the indexes of the ids that name no device in inv.
func missingIDs(ctx context.Context, inv Inventory, ids []DeviceID) ([]int, error) {
	var missing []int
	if dc, ok := inv.(DeviceChecker); ok {
		exist, err := dc.ExistingDevices(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("scope: check devices: %w", err)
		}
		for i, id := range ids {
			if _, found := slices.BinarySearch(exist, id); !found {
				missing = append(missing, i)
			}
		}
		return missing, nil
	}
	for i, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if _, err := inv.Device(ctx, id); err != nil {
			if !errors.Is(err, ErrNotFound) {
				return nil, fmt.Errorf("scope: device %q: %w", id, err)
			}
			missing = append(missing, i)
		}
	}
	return missing, nil
}

func resolveIDs(ctx context.Context, inv Inventory, ids []DeviceID, field func(int) string, r *Resolution) error {
	missing, err := missingIDs(ctx, inv, ids)
	if err != nil {
		return err
	}
	for _, i := range missing {
		r.Missing = append(r.Missing, MissingRef{Field: field(i), Value: string(ids[i])})
	}
	for i, id := range ids {
		if len(missing) > 0 && missing[0] == i {
			missing = missing[1:]
			continue
		}
		r.Devices = append(r.Devices, id)
	}
	slices.Sort(r.Devices)
	return ctx.Err()
}

const roleUnknown = unknownPrefix + "device.server.role"

// roleReason is the Unknown reason for a device whose server role is not
// one of the documented roles ("" is the primary server).
func roleReason(r ServerRole) string {
	return fmt.Sprintf("%s: unrecognized role %q", roleUnknown, r)
}

func resolveGroup(ctx context.Context, s Scope, inv Inventory, r *Resolution) error {
	t, err := groupTree(ctx, s, inv)
	if err != nil {
		return err
	}
	var c collector
	add := func(m Member) {
		switch role := m.Role.effective(); {
		case s.DistributeToServers || role == Primary:
			c.in(m.ID)
		case role == Secondary || role == Virtual:
			// out: not distributed to secondary and virtual servers
		default:
			c.unknown(m.ID, roleReason(m.Role))
		}
	}
	n := 0
	if gl, ok := inv.(GroupMemberLister); ok {
		for m, err := range gl.GroupMembers(ctx, t.included) {
			if err != nil {
				return fmt.Errorf("scope: list group members: %w", err)
			}
			if n++; n&4095 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			add(m)
		}
	} else {
		member := make(map[GroupID]struct{}, len(t.included))
		for _, g := range t.included {
			member[g] = struct{}{}
		}
		for d, err := range inv.Devices(ctx) {
			if err != nil {
				return fmt.Errorf("scope: list devices: %w", err)
			}
			if n++; n&4095 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if _, ok := member[d.GroupID]; !ok {
				if _, known := t.groups[d.GroupID]; !known && d.GroupID != "" {
					c.unknown(d.ID, unknownGroupReason(d.GroupID))
				}
				continue
			}
			add(Member{ID: d.ID, Role: d.Server.Role})
		}
	}
	c.finish(r)
	return ctx.Err()
}

func unknownGroupReason(g GroupID) string {
	return fmt.Sprintf("%sdevice.group: group %q is not in the inventory's group tree", unknownPrefix, g)
}

// collector gathers results and sorts them only if the inventory did not
// yield devices in ascending order.
type collector struct {
	devices  chunked[DeviceID]
	offline  []DeviceID
	unknowns []UnknownDevice
	last     DeviceID
	unsorted bool
	any      bool
}

func (c *collector) saw(id DeviceID) {
	if c.any && id <= c.last {
		c.unsorted = true
	}
	c.any, c.last = true, id
}

func (c *collector) in(id DeviceID) { c.saw(id); c.devices.add(id) }
func (c *collector) off(id DeviceID) {
	c.saw(id)
	c.offline = append(c.offline, id)
}
func (c *collector) unknown(id DeviceID, reason string) {
	c.saw(id)
	c.unknowns = append(c.unknowns, UnknownDevice{ID: id, Reason: reason})
}

func (c *collector) finish(r *Resolution) {
	devices := c.devices.flat()
	if c.unsorted {
		slices.Sort(devices)
		devices = slices.Compact(devices)
		slices.Sort(c.offline)
		c.offline = slices.Compact(c.offline)
		slices.SortFunc(c.unknowns, func(a, b UnknownDevice) int { return cmp.Compare(a.ID, b.ID) })
		c.unknowns = slices.CompactFunc(c.unknowns, func(a, b UnknownDevice) bool { return a.ID == b.ID })
	}
	if devices != nil {
		r.Devices = devices
	}
	r.Offline = c.offline
	r.Unknown = c.unknowns
}

// chunked is an append-only list that grows in fixed chunks, so collecting
// a million ids allocates them about twice instead of the ~5 times of
// slice doubling (which also makes the garbage collector rescan a large
// inventory heap more often).
type chunked[T any] struct {
	full [][]T
	cur  []T
	n    int
}

const chunkLen = 1 << 15

// firstChunk is the first chunk's length; chunks double up to chunkLen,
// so a small result does not hold a whole chunk.
const firstChunk = 64

func (c *chunked[T]) add(v T) {
	if len(c.cur) == cap(c.cur) {
		next := firstChunk
		if c.cur != nil {
			c.full = append(c.full, c.cur)
			next = min(2*cap(c.cur), chunkLen)
		}
		c.cur = make([]T, 0, next)
	}
	c.cur = append(c.cur, v)
	c.n++
}

// flat returns the elements in one slice (nil when empty) whose spare
// capacity is at most an eighth of its length: callers keep resolved
// device lists for long.
func (c *chunked[T]) flat() []T {
	if c.n == 0 {
		return nil
	}
	if len(c.full) == 0 {
		if cap(c.cur)-len(c.cur) > len(c.cur)/8 {
			return slices.Clone(c.cur)
		}
		return c.cur
	}
	out := make([]T, 0, c.n)
	for _, f := range c.full {
		out = append(out, f...)
	}
	return append(out, c.cur...)
}

// ipSet is a sorted set of disjoint, merged address intervals per family,
// for matching many ranges against many devices in O(log n) each.
type ipSet struct {
	v4 []span4
	v6 []span6
}

type span4 struct{ lo, hi uint32 }
type span6 struct{ lo, hi u128 }
type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func to4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func to6(a netip.Addr) u128 {
	b := a.As16()
	var x u128
	for i := 0; i < 8; i++ {
		x.hi = x.hi<<8 | uint64(b[i])
		x.lo = x.lo<<8 | uint64(b[8+i])
	}
	return x
}

func newIPSet(addrs []Address) *ipSet {
	s := &ipSet{}
	for _, a := range addrs {
		switch a.Kind {
		case IP, Range, Subnet:
			if a.From.Is4() {
				s.v4 = append(s.v4, span4{to4(a.From), to4(a.To)})
			} else {
				s.v6 = append(s.v6, span6{to6(a.From), to6(a.To)})
			}
		}
	}
	slices.SortFunc(s.v4, func(a, b span4) int { return cmp.Compare(a.lo, b.lo) })
	m4 := s.v4[:0]
	for _, x := range s.v4 {
		if n := len(m4); n > 0 && (x.lo <= m4[n-1].hi || m4[n-1].hi != ^uint32(0) && x.lo == m4[n-1].hi+1) {
			m4[n-1].hi = max(m4[n-1].hi, x.hi)
			continue
		}
		m4 = append(m4, x)
	}
	s.v4 = m4
	slices.SortFunc(s.v6, func(a, b span6) int { return a.lo.cmp(b.lo) })
	m6 := s.v6[:0]
	for _, x := range s.v6 {
		if n := len(m6); n > 0 && x.lo.cmp(m6[n-1].hi) <= 0 {
			if x.hi.cmp(m6[n-1].hi) > 0 {
				m6[n-1].hi = x.hi
			}
			continue
		}
		m6 = append(m6, x)
	}
	s.v6 = m6
	return s
}

func (s *ipSet) empty() bool { return len(s.v4) == 0 && len(s.v6) == 0 }

func (s *ipSet) contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.Is4() {
		x := to4(ip)
		// First interval whose end is >= x (intervals are disjoint and
		// sorted, so their ends are sorted too).
		lo, hi := 0, len(s.v4)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if s.v4[m].hi < x {
				lo = m + 1
			} else {
				hi = m
			}
		}
		return lo < len(s.v4) && s.v4[lo].lo <= x
	}
	if !ip.Is6() {
		return false
	}
	x := to6(ip)
	lo, hi := 0, len(s.v6)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.v6[m].hi.cmp(x) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(s.v6) && s.v6[lo].lo.cmp(x) <= 0
}

// canonicalDNS and canonicalNetBIOS put a device's names into the form
// ParseAddress gives names, for comparison.
func canonicalDNS(s string) string     { return strings.ToLower(strings.TrimSuffix(s, ".")) }
func canonicalNetBIOS(s string) string { return strings.ToUpper(s) }

const ipsUnknown = unknownPrefix + "device.ips"

func resolveAddresses(ctx context.Context, s Scope, inv Inventory, r *Resolution) error {
	set := newIPSet(s.Addresses)
	netbios, dns := map[string][]int{}, map[string][]int{}
	for i, a := range s.Addresses {
		switch a.Kind {
		case NetBIOSName:
			netbios[a.Name] = append(netbios[a.Name], i)
		case DNSName:
			dns[a.Name] = append(dns[a.Name], i)
		}
	}
	matched := map[string]bool{}
	var c collector
	if nr, ok := inv.(NameResolver); ok && set.empty() {
		for _, a := range s.Addresses {
			ids, err := nr.DevicesByName(ctx, a)
			if err != nil {
				return fmt.Errorf("scope: resolve name %q: %w", a.Name, err)
			}
			if len(ids) > 0 {
				matched[a.Kind.String()+a.Name] = true
			}
			for _, id := range ids {
				c.in(id)
			}
		}
		c.unsorted = true // several lookups: sort and de-duplicate
	} else {
		n := 0
		for d, err := range inv.Devices(ctx) {
			if err != nil {
				return fmt.Errorf("scope: list devices: %w", err)
			}
			if n++; n&4095 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			in := false
			if len(netbios) > 0 && d.NetBIOSName != "" {
				if n := canonicalNetBIOS(d.NetBIOSName); netbios[n] != nil {
					in, matched[NetBIOSName.String()+n] = true, true
				}
			}
			if len(dns) > 0 && d.DNSName != "" {
				if n := canonicalDNS(d.DNSName); dns[n] != nil {
					in, matched[DNSName.String()+n] = true, true
				}
			}
			if !in && !set.empty() {
				for _, ip := range d.IPs {
					if set.contains(ip) {
						in = true
						break
					}
				}
			}
			switch {
			case in:
				c.in(d.ID)
			case d.IPs == nil && !set.empty():
				c.unknown(d.ID, ipsUnknown)
			}
		}
	}
	c.finish(r)
	for i, a := range s.Addresses {
		if a.IsName() && !matched[a.Kind.String()+a.Name] {
			r.Missing = append(r.Missing, MissingRef{Field: fmt.Sprintf("addresses[%d]", i), Value: a.Name})
		}
	}
	return ctx.Err()
}

// unresolvedNames returns the indexes of the names in addrs that no device
// in inv has.
func unresolvedNames(ctx context.Context, inv Inventory, addrs []Address) ([]int, error) {
	var names []int
	for i, a := range addrs {
		if a.IsName() {
			names = append(names, i)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	var missing []int
	if nr, ok := inv.(NameResolver); ok {
		for _, i := range names {
			ids, err := nr.DevicesByName(ctx, addrs[i])
			if err != nil {
				return nil, fmt.Errorf("scope: resolve name %q: %w", addrs[i].Name, err)
			}
			if len(ids) == 0 {
				missing = append(missing, i)
			}
		}
		return missing, nil
	}
	want := map[string]bool{}
	for _, i := range names {
		want[addrs[i].Kind.String()+addrs[i].Name] = false
	}
	for d, err := range inv.Devices(ctx) {
		if err != nil {
			return nil, fmt.Errorf("scope: list devices: %w", err)
		}
		if k := NetBIOSName.String() + canonicalNetBIOS(d.NetBIOSName); d.NetBIOSName != "" {
			if _, ok := want[k]; ok {
				want[k] = true
			}
		}
		if k := DNSName.String() + canonicalDNS(d.DNSName); d.DNSName != "" {
			if _, ok := want[k]; ok {
				want[k] = true
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, i := range names {
		if !want[addrs[i].Kind.String()+addrs[i].Name] {
			missing = append(missing, i)
		}
	}
	return missing, nil
}

// selectionChunk is how many devices a worker evaluates between checks of
// the context.
const selectionChunk = 1024

func resolveSelection(ctx context.Context, s Scope, inv Inventory, r *Resolution) error {
	prg, err := compileCached(s.Selection)
	if err != nil {
		return err
	}
	var all chunked[*Device]
	for d, err := range inv.Devices(ctx) {
		if err != nil {
			return fmt.Errorf("scope: list devices: %w", err)
		}
		all.add(d)
	}
	devs := all.flat()
	if err := ctx.Err(); err != nil {
		return err
	}
	res := make([]Membership, len(devs))
	reasons := make([]string, len(devs))
	workers := min(runtime.GOMAXPROCS(0), (len(devs)+selectionChunk-1)/selectionChunk)
	var (
		wg   sync.WaitGroup
		next int
		mu   sync.Mutex
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				mu.Lock()
				lo := next
				next += selectionChunk
				mu.Unlock()
				if lo >= len(devs) {
					return
				}
				for i := lo; i < min(lo+selectionChunk, len(devs)); i++ {
					res[i], reasons[i] = prg.Evaluate(devs[i])
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	var c collector
	for i, d := range devs {
		switch res[i] {
		case In:
			if d.Connected {
				c.in(d.ID)
			} else {
				c.off(d.ID)
			}
		case Unknown:
			c.unknown(d.ID, reasons[i])
		}
	}
	c.finish(r)
	return nil
}

// Explain says whether device id is in s, resolved against inv, and why:
// which rule matched, which exclusion removed it, or which fact is missing.
// Its Membership always agrees with Resolve (In: listed in Devices;
// Unknown: listed in Unknown; Out: neither, including Offline devices of a
// selection, whose Rule is "offline").
//
// Errors: as Resolve, and an error matching ErrNotFound when inv has no
// device id.
func Explain(ctx context.Context, s Scope, inv Inventory, id DeviceID) (Explanation, error) {
	if err := s.Validate(); err != nil {
		return Explanation{}, err
	}
	d, err := inv.Device(ctx, id)
	if err != nil {
		return Explanation{}, fmt.Errorf("scope: device %q: %w", id, err)
	}
	e := Explanation{Device: id}
	set := func(m Membership, rule, field, format string, args ...any) {
		e.Membership, e.Rule, e.Field, e.Reason = m, rule, field, fmt.Sprintf(format, args...)
	}
	switch s.Kind {
	case Server:
		set(Out, "server", "", "the scope is the Administration Server itself; the task runs on the server, not on devices")
	case Local:
		if id == s.Device {
			set(In, "local", "device", "the scope is this device (local task)")
		} else {
			set(Out, "local", "device", "the scope is the single device %q", s.Device)
		}
	case Devices:
		set(Out, "device_list", "", "the device is not in the device list")
		if i := slices.Index(s.Devices, id); i >= 0 {
			set(In, "device_list", fmt.Sprintf("devices[%d]", i), "the device is listed as devices[%d]", i)
		}
	case Group:
		t, err := groupTree(ctx, s, inv)
		if err != nil {
			return Explanation{}, err
		}
		explainGroup(s, t, d, set)
	case Addresses:
		explainAddresses(s, d, set)
	case Selection:
		name, field := "the selection", "selection"
		if s.SelectionID != "" {
			sel, err := savedSelection(ctx, s, inv)
			if err != nil {
				return Explanation{}, err
			}
			s.Selection, name, field = sel.Expr, sel.label(), "selection_id"
			e.SelectionID, e.SelectionRevision = sel.ID, sel.Revision
		} else if s.SelectionName != "" {
			name = fmt.Sprintf("the selection %q", s.SelectionName)
		}
		prg, err := compileCached(s.Selection)
		if err != nil {
			return Explanation{}, err
		}
		switch m, reason := prg.Evaluate(d); {
		case m == Unknown:
			set(Unknown, "unknown_fact", field, "%s cannot be decided for this device: %s", name, reason)
		case m == Out:
			set(Out, "selection", field, "the device does not match %s", name)
		case !d.Connected:
			set(Out, "offline", field, "the device matches %s but is not connected to the Administration Server; tasks for selections run only on connected devices", name)
		default:
			set(In, "selection", field, "the device matches %s", name)
		}
	}
	return e, nil
}

func explainGroup(s Scope, t *tree, d *Device, set func(Membership, string, string, string, ...any)) {
	g := d.GroupID
	if g == "" {
		set(Out, "unassigned", "group", "the device is unassigned (in no administration group)")
		return
	}
	if _, ok := t.groups[g]; !ok {
		set(Unknown, "unknown_fact", "group", "%s", unknownGroupReason(g))
		return
	}
	path := t.path(g)
	at := slices.Index(path, s.Group)
	if at < 0 {
		set(Out, "other_group", "group", "the device's group %s is not group %s or one of its subgroups", t.label(g), t.label(s.Group))
		return
	}
	if at > 0 && s.GroupOnly {
		set(Out, "group_only", "group_only", "the device's group %s is a subgroup of %s, and the task is not distributed to subgroups", t.label(g), t.label(s.Group))
		return
	}
	// The exclusion closest to the selected group wins: it removes the
	// whole subtree.
	for j := at - 1; j >= 0; j-- {
		if i, ok := t.excluded[path[j]]; ok {
			if j == 0 {
				set(Out, "excluded_group", fmt.Sprintf("excluded_groups[%d]", i), "the device's group %s is excluded (excluded_groups[%d])", t.label(g), i)
			} else {
				set(Out, "excluded_group", fmt.Sprintf("excluded_groups[%d]", i), "the device's group %s is inside excluded group %s (excluded_groups[%d])", t.label(g), t.label(path[j]), i)
			}
			return
		}
	}
	if role := d.Server.Role.effective(); !s.DistributeToServers && role != Primary {
		if role == Secondary || role == Virtual {
			set(Out, "server_role", "distribute_to_servers", "the device is managed by a %s Administration Server (%s), and the task is not distributed to secondary and virtual servers", d.Server.Role, d.Server.ID)
		} else {
			set(Unknown, "unknown_fact", "distribute_to_servers", "%s: the device's group is in scope, but whether a secondary or virtual Administration Server manages it is not known, and the task is not distributed to those servers", roleReason(d.Server.Role))
		}
		return
	}
	if at == 0 {
		set(In, "group", "group", "the device is directly in group %s", t.label(s.Group))
		return
	}
	names := make([]string, 0, at+1)
	for j := at; j >= 0; j-- {
		names = append(names, t.label(path[j]))
	}
	set(In, "subgroup", "group", "the device's group %s is a subgroup of %s (path %s)", t.label(g), t.label(s.Group), strings.Join(names, " / "))
}

func explainAddresses(s Scope, d *Device, set func(Membership, string, string, string, ...any)) {
	hasIPRules := false
	for i, a := range s.Addresses {
		f := fmt.Sprintf("addresses[%d]", i)
		switch a.Kind {
		case NetBIOSName:
			if d.NetBIOSName != "" && canonicalNetBIOS(d.NetBIOSName) == a.Name {
				set(In, "address", f, "%s %s matches the device's NetBIOS name", f, a)
				return
			}
		case DNSName:
			if d.DNSName != "" && canonicalDNS(d.DNSName) == a.Name {
				set(In, "address", f, "%s %s matches the device's DNS name", f, a)
				return
			}
		default:
			hasIPRules = true
			for _, ip := range d.IPs {
				if a.Contains(ip) {
					verb := "contains"
					if a.Kind == IP {
						verb = "is"
					}
					set(In, "address", f, "%s %s %s the device's IP address %s", f, a, verb, ip.Unmap())
					return
				}
			}
		}
	}
	if hasIPRules && d.IPs == nil {
		set(Unknown, "unknown_fact", "addresses", "%s: no name rule matches the device, and its IP addresses are not known", ipsUnknown)
		return
	}
	set(Out, "no_address", "addresses", "no address of the scope matches the device (names %q, %q; IP addresses %v)", d.NetBIOSName, d.DNSName, d.IPs)
}
