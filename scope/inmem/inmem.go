// Package inmem is an in-memory scope.Inventory, for tests, examples,
// simulations and small hosts.
//
// It is safe for concurrent use and indexed for fleet-scale resolution:
// devices are kept sorted by id with a dense group index per device, so a
// group scope over a million devices is a scan of a bitset, and names are
// indexed for address scopes. It implements the optional
// scope.GroupMemberLister, scope.NameResolver and scope.DeviceChecker
// interfaces, and keeps saved selections (scope.SelectionStore) with their
// history.
//
// Writes are cheap (a map update); the sorted snapshot that reads use is
// rebuilt on the first read after a write, so load many devices with one
// PutDevices call (or several calls before the first read).
//
// Devices handed out by the inventory are shared, read-only values: the
// inventory stores its own copy of every Device struct you put (a shallow
// copy: do not modify the slices, maps and OS you passed in afterwards;
// put a new device instead), and the caller must not modify a device it
// reads.
package inmem

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/scope"
)

// Inventory is an in-memory scope.Inventory and scope.InventoryWriter
// (the write methods take a context only to share the SQL inventory's
// signatures; they never block). The zero value is not usable;
// call New.
type Inventory struct {
	mu      sync.Mutex
	devices map[scope.DeviceID]*scope.Device
	groups  map[scope.GroupID]*scope.AdminGroup
	// members counts the devices of each group, so a group in use cannot
	// be deleted.
	members map[scope.GroupID]int
	// gidx gives every group id a dense index; indexes are never reused.
	gidx map[scope.GroupID]int32
	snap *snapshot // nil after a write
	// saved holds the saved selections (selections.go).
	saved savedSelections
}

// snapshot is an immutable, sorted view used by readers without locks.
type snapshot struct {
	devices []*scope.Device
	// Compact columns for group scopes, so they read 36 bytes per device
	// instead of whole devices.
	group   []int32 // group index of devices[i]; -1 for unassigned
	ids     []scope.DeviceID
	roles   []scope.ServerRole
	ngroups int
	gidx    map[scope.GroupID]int32

	groups []scope.AdminGroup // sorted by ID

	namesOnce sync.Once
	netbios   map[string][]scope.DeviceID
	dns       map[string][]scope.DeviceID
}

var (
	_ scope.Inventory         = (*Inventory)(nil)
	_ scope.GroupMemberLister = (*Inventory)(nil)
	_ scope.NameResolver      = (*Inventory)(nil)
	_ scope.DeviceChecker     = (*Inventory)(nil)
)

// New returns an empty inventory.
func New() *Inventory {
	return &Inventory{
		devices: map[scope.DeviceID]*scope.Device{},
		groups:  map[scope.GroupID]*scope.AdminGroup{},
		members: map[scope.GroupID]int{},
		gidx:    map[scope.GroupID]int32{},
	}
}

// PutGroups adds or replaces groups. A group's parent must exist or be in
// the same call, ids must be non-empty, and the tree must stay acyclic;
// otherwise nothing is stored and ValidationErrors name the offending
// entries ("groups[3].parent").
func (inv *Inventory) PutGroups(_ context.Context, groups ...scope.AdminGroup) error {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	next := make(map[scope.GroupID]scope.AdminGroup, len(groups))
	var bad errs.ValidationErrors
	for i, g := range groups {
		if g.ID == "" {
			bad = append(bad, errs.Invalid(fmt.Sprintf("groups[%d].id", i), "", "is required"))
			continue
		}
		next[g.ID] = g
	}
	parent := func(id scope.GroupID) (scope.GroupID, bool) {
		if g, ok := next[id]; ok {
			return g.Parent, true
		}
		if g, ok := inv.groups[id]; ok {
			return g.Parent, true
		}
		return "", false
	}
	for i, g := range groups {
		if g.ID == "" || g.Parent == "" {
			continue
		}
		if _, ok := parent(g.Parent); !ok {
			bad = append(bad, errs.Invalid(fmt.Sprintf("groups[%d].parent", i), string(g.Parent), "no such group"))
			continue
		}
		// Walk up; a cycle comes back to g.
		p, steps := g.Parent, 0
		for p != "" && steps <= len(next)+len(inv.groups) {
			if p == g.ID {
				bad = append(bad, errs.Invalid(fmt.Sprintf("groups[%d].parent", i), string(g.Parent), "makes the group tree cyclic"))
				break
			}
			p, _ = parent(p)
			steps++
		}
	}
	if err := bad.Err(); err != nil {
		return err
	}
	for id, g := range next {
		g := g
		inv.groups[id] = &g
		if _, ok := inv.gidx[id]; !ok {
			inv.gidx[id] = int32(len(inv.gidx))
		}
	}
	inv.snap = nil
	return nil
}

// DeleteGroup removes a group with no devices and no subgroups. It returns
// an error matching scope.ErrNotFound if there is none, and one matching
// errs.ErrConflict if the group is not empty.
func (inv *Inventory) DeleteGroup(_ context.Context, id scope.GroupID) error {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if _, ok := inv.groups[id]; !ok {
		return fmt.Errorf("inmem: group %q: %w", id, scope.ErrNotFound)
	}
	if inv.members[id] > 0 {
		return fmt.Errorf("inmem: group %q has %d devices: %w", id, inv.members[id], errs.ErrConflict)
	}
	for _, g := range inv.groups {
		if g.Parent == id {
			return fmt.Errorf("inmem: group %q has subgroup %q: %w", id, g.ID, errs.ErrConflict)
		}
	}
	delete(inv.groups, id)
	inv.snap = nil
	return nil
}

// PutDevices adds or replaces devices (by ID). Each device's GroupID must
// be "" (unassigned) or an existing group, and IDs must be non-empty and
// unique within the call; otherwise nothing is stored and ValidationErrors
// name the offending entries ("devices[3].group_id"). A device whose facts
// exceed scope.MaxFactLength or scope.MaxFactListLength is not stored
// while the other devices of the call are, and the call returns a
// *scope.OversizeDevicesError naming it. The inventory keeps shallow
// copies (see the package documentation).
func (inv *Inventory) PutDevices(_ context.Context, devices ...scope.Device) error {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	var bad errs.ValidationErrors
	seen := make(map[scope.DeviceID]int, len(devices))
	for i, d := range devices {
		if d.ID == "" {
			bad = append(bad, errs.Invalid(fmt.Sprintf("devices[%d].id", i), "", "is required"))
		} else if j, dup := seen[d.ID]; dup {
			bad = append(bad, errs.Invalid(fmt.Sprintf("devices[%d].id", i), string(d.ID), fmt.Sprintf("duplicate of devices[%d]", j)))
		}
		seen[d.ID] = i
		if _, ok := inv.groups[d.GroupID]; d.GroupID != "" && !ok {
			bad = append(bad, errs.Invalid(fmt.Sprintf("devices[%d].group_id", i), string(d.GroupID), "no such group"))
		}
	}
	if err := bad.Err(); err != nil {
		return err
	}
	devices, oversize := scope.DropOversizeDevices(devices)
	all := make([]scope.Device, len(devices))
	copy(all, devices)
	for i := range all {
		d := &all[i]
		if old, ok := inv.devices[d.ID]; ok && old.GroupID != "" {
			inv.members[old.GroupID]--
		}
		if d.GroupID != "" {
			inv.members[d.GroupID]++
		}
		inv.devices[d.ID] = d
	}
	inv.snap = nil
	return oversize
}

// DeleteDevice removes a device. It returns an error matching
// scope.ErrNotFound if there is none.
func (inv *Inventory) DeleteDevice(_ context.Context, id scope.DeviceID) error {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	d, ok := inv.devices[id]
	if !ok {
		return fmt.Errorf("inmem: device %q: %w", id, scope.ErrNotFound)
	}
	if d.GroupID != "" {
		inv.members[d.GroupID]--
	}
	delete(inv.devices, id)
	inv.snap = nil
	return nil
}

// Len returns the number of devices.
func (inv *Inventory) Len() int {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return len(inv.devices)
}

// view returns the current snapshot, rebuilding it after writes.
func (inv *Inventory) view() *snapshot {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if inv.snap != nil {
		return inv.snap
	}
	s := &snapshot{devices: make([]*scope.Device, 0, len(inv.devices)), ngroups: len(inv.gidx), gidx: inv.gidx}
	for _, d := range inv.devices {
		s.devices = append(s.devices, d)
	}
	slices.SortFunc(s.devices, func(a, b *scope.Device) int { return cmp.Compare(a.ID, b.ID) })
	s.group = make([]int32, len(s.devices))
	s.ids = make([]scope.DeviceID, len(s.devices))
	s.roles = make([]scope.ServerRole, len(s.devices))
	for i, d := range s.devices {
		s.ids[i], s.roles[i] = d.ID, d.Server.Role
		s.group[i] = -1
		if d.GroupID != "" {
			s.group[i] = inv.gidx[d.GroupID]
		}
	}
	// gidx only grows; readers of an old snapshot keep a map that a
	// writer may extend, so give the snapshot its own copy.
	s.gidx = make(map[scope.GroupID]int32, len(inv.gidx))
	for k, v := range inv.gidx {
		s.gidx[k] = v
	}
	s.groups = make([]scope.AdminGroup, 0, len(inv.groups))
	for _, g := range inv.groups {
		s.groups = append(s.groups, *g)
	}
	slices.SortFunc(s.groups, func(a, b scope.AdminGroup) int { return cmp.Compare(a.ID, b.ID) })
	inv.snap = s
	return s
}

// Device implements scope.Inventory.
func (inv *Inventory) Device(ctx context.Context, id scope.DeviceID) (*scope.Device, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	inv.mu.Lock()
	d, ok := inv.devices[id]
	inv.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("inmem: device %q: %w", id, scope.ErrNotFound)
	}
	return d, nil
}

// Group implements scope.Inventory.
func (inv *Inventory) Group(ctx context.Context, id scope.GroupID) (*scope.AdminGroup, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	inv.mu.Lock()
	g, ok := inv.groups[id]
	inv.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("inmem: group %q: %w", id, scope.ErrNotFound)
	}
	c := *g
	return &c, nil
}

// Groups implements scope.Inventory; the groups are sorted by ID.
func (inv *Inventory) Groups(ctx context.Context) ([]scope.AdminGroup, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return slices.Clone(inv.view().groups), nil
}

// ctxCheckEvery is how many devices an iterator yields between checks of
// the context.
const ctxCheckEvery = 4096

// Devices implements scope.Inventory: every device in ascending ID order.
func (inv *Inventory) Devices(ctx context.Context) iter.Seq2[*scope.Device, error] {
	return func(yield func(*scope.Device, error) bool) {
		s := inv.view()
		for i, d := range s.devices {
			if i%ctxCheckEvery == 0 && ctx.Err() != nil {
				yield(nil, ctx.Err())
				return
			}
			if !yield(d, nil) {
				return
			}
		}
	}
}

// GroupMembers implements scope.GroupMemberLister with a bitset over the
// dense group index.
func (inv *Inventory) GroupMembers(ctx context.Context, groups []scope.GroupID) iter.Seq2[scope.Member, error] {
	return func(yield func(scope.Member, error) bool) {
		s := inv.view()
		bits := make([]uint64, (s.ngroups+63)/64)
		for _, g := range groups {
			if i, ok := s.gidx[g]; ok && int(i) < s.ngroups {
				bits[i/64] |= 1 << (i % 64)
			}
		}
		for i, gi := range s.group {
			if i%ctxCheckEvery == 0 && ctx.Err() != nil {
				yield(scope.Member{}, ctx.Err())
				return
			}
			if gi < 0 || bits[gi/64]&(1<<(gi%64)) == 0 {
				continue
			}
			if !yield(scope.Member{ID: s.ids[i], Role: s.roles[i]}, nil) {
				return
			}
		}
	}
}

// DevicesByName implements scope.NameResolver.
func (inv *Inventory) DevicesByName(ctx context.Context, name scope.Address) ([]scope.DeviceID, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := inv.view()
	s.namesOnce.Do(func() {
		s.netbios, s.dns = map[string][]scope.DeviceID{}, map[string][]scope.DeviceID{}
		for _, d := range s.devices {
			if d.NetBIOSName != "" {
				k := strings.ToUpper(d.NetBIOSName)
				s.netbios[k] = append(s.netbios[k], d.ID)
			}
			if d.DNSName != "" {
				k := strings.ToLower(strings.TrimSuffix(d.DNSName, "."))
				s.dns[k] = append(s.dns[k], d.ID)
			}
		}
	})
	var ids []scope.DeviceID
	switch name.Kind {
	case scope.NetBIOSName:
		ids = s.netbios[name.Name]
	case scope.DNSName:
		ids = s.dns[name.Name]
	default:
		return nil, errs.Invalid("name", name.String(), "must be a NetBIOS or DNS name")
	}
	return slices.Clone(ids), nil
}

// ExistingDevices implements scope.DeviceChecker.
func (inv *Inventory) ExistingDevices(ctx context.Context, ids []scope.DeviceID) ([]scope.DeviceID, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]scope.DeviceID, 0, len(ids))
	inv.mu.Lock()
	for _, id := range ids {
		if _, ok := inv.devices[id]; ok {
			out = append(out, id)
		}
	}
	inv.mu.Unlock()
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ConnectedDevices implements scope.ConnectionChecker.
func (inv *Inventory) ConnectedDevices(ctx context.Context, ids []scope.DeviceID) ([]scope.DeviceID, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]scope.DeviceID, 0, len(ids))
	inv.mu.Lock()
	for _, id := range ids {
		if d, ok := inv.devices[id]; ok && d.Connected {
			out = append(out, id)
		}
	}
	inv.mu.Unlock()
	slices.Sort(out)
	return slices.Compact(out), nil
}

var _ scope.InventoryWriter = (*Inventory)(nil)
