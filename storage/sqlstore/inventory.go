package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jmoiron/sqlx"
	"modernc.org/sqlite"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/scope"
)

var (
	_ scope.InventoryProvider = (*Store)(nil)
	_ scope.Inventory         = (*Inventory)(nil)
	_ scope.GroupMemberLister = (*Inventory)(nil)
	_ scope.NameResolver      = (*Inventory)(nil)
	_ scope.DeviceChecker     = (*Inventory)(nil)
)

// Inventory is the store's device inventory: administration groups and
// devices in the tables admin_groups and devices, read through
// scope.Inventory and its optional fast paths (scope.GroupMemberLister,
// scope.NameResolver, scope.DeviceChecker), each an indexed query, and
// written by the host with PutGroups, PutDevices, DeleteGroup and
// DeleteDevice. It also stores saved device selections and their history
// (scope.SelectionStore: PutSelection, DeleteSelection, Selection,
// Selections, SelectionHistory; see selections.go).
//
// It is the Store itself seen through its inventory methods, so
// Store.Inventory and Store.Devices return the same value on every call,
// it needs no closing of its own, and it is safe for concurrent use by
// many goroutines and processes sharing the database. After Store.Close
// every method returns an error matching ErrClosed.
//
// # Validation
//
// The writes enforce the rules of the reference in-memory inventory
// (scope/inmem): ids are non-empty, a device names no group or an existing
// one, a group's parent exists (or comes in the same call) and the tree
// stays acyclic. In addition every string must be valid UTF-8 without NUL
// characters and LastSeen must lie in the years 1 to 9999, so both
// engines store exactly what was given. A rejected call stores nothing
// and returns ValidationErrors (matching ErrInvalid) naming each offending
// entry ("devices[3].group_id").
//
// # Stored facts
//
// Facts round-trip exactly, keeping "unknown" (nil) apart from "none"
// (empty), except that LastSeen keeps microsecond precision and comes
// back in UTC, like every time the store keeps.
//
// # Consistency of reads
//
// Devices reads pages of devices in id order; GroupMembers, DevicesByName
// and ExistingDevices read their whole (compact) answer in one query.
// None of them keeps a connection while the caller consumes the result,
// so a caller may query the store from inside the loop. A write committed
// while Devices is between pages is seen by the later pages only; every
// device is still yielded at most once and in ascending order.
type Inventory Store

// Inventory implements scope.InventoryProvider: the store's inventory,
// the same value on every call (a *Inventory; see Devices).
func (s *Store) Inventory() scope.Inventory { return (*Inventory)(s) }

// Devices returns the store's inventory for writing (PutGroups,
// PutDevices, DeleteGroup, DeleteDevice): the same value Inventory
// returns, with its concrete type.
func (s *Store) Devices() *Inventory { return (*Inventory)(s) }

func (inv *Inventory) store() *Store { return (*Store)(inv) }

// inventoryLockKey is the first key of the PostgreSQL advisory lock that
// serializes changes to the group tree ("ti"); the second is a hash of
// the schema, like the migration lock's.
const inventoryLockKey = 0x7469

// devicesPage is the number of devices Devices reads per query.
const devicesPage = 1000

// deviceCols are the columns scanDevice reads, in order.
const deviceCols = `id, group_id, netbios_name, dns_name, server_id, server_role, connected, last_seen, time_zone, facts`

// deviceWriteCols are the columns PutDevices writes, in order.
const deviceWriteCols = `id, group_id, netbios_name, netbios_key, dns_name, dns_key, server_id, server_role, connected, last_seen, time_zone, facts`

const deviceUpsertSet = ` ON CONFLICT (id) DO UPDATE SET
 group_id = excluded.group_id, netbios_name = excluded.netbios_name, netbios_key = excluded.netbios_key,
 dns_name = excluded.dns_name, dns_key = excluded.dns_key, server_id = excluded.server_id,
 server_role = excluded.server_role, connected = excluded.connected, last_seen = excluded.last_seen,
 time_zone = excluded.time_zone, facts = excluded.facts`

// pgDeviceUpsert writes a chunk of devices in one statement: one array
// parameter per column, expanded by unnest (times as int64 microseconds,
// facts as JSON text).
var pgDeviceUpsert = `INSERT INTO devices (` + deviceWriteCols + `)
 SELECT u.id, NULLIF(u.group_id, ''), u.netbios_name, u.netbios_key, u.dns_name, u.dns_key, u.server_id,
  u.server_role, u.connected, ` + pgMicros("u.last_seen") + `, u.time_zone, u.facts::jsonb
 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
  $8::text[], $9::bool[], $10::bigint[], $11::text[], $12::text[])
  AS u (id, group_id, netbios_name, netbios_key, dns_name, dns_key, server_id, server_role, connected, last_seen, time_zone, facts)` +
	deviceUpsertSet

// pgDeviceChunk is the number of devices per PostgreSQL upsert statement.
const pgDeviceChunk = 5000

// sqliteDeviceChunk is the number of devices per SQLite multi-row upsert
// (12 parameters each).
const sqliteDeviceChunk = 256

func sqliteDeviceUpsert(rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO devices (" + deviceWriteCols + ") VALUES ")
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?)")
	}
	b.WriteString(deviceUpsertSet)
	return b.String()
}

// facts is the JSON form of the facts kept in devices.facts. A nil slice,
// map or pointer is encoded as null (unknown), an empty one as [] or {}
// (none); the field names are the stored format and never change.
type facts struct {
	IPs          []netip.Addr       `json:"ips"`
	Tags         []string           `json:"tags"`
	Software     []softwareFact     `json:"software"`
	OS           *osFact            `json:"os"`
	Applications map[string]appFact `json:"applications"`
}

type softwareFact struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Vendor  string `json:"vendor"`
}

type osFact struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Build    string `json:"build"`
	Platform string `json:"platform"`
}

type appFact struct {
	Installed bool `json:"installed"`
	Running   bool `json:"running"`
}

func factsOf(d *scope.Device) facts {
	f := facts{IPs: d.IPs, Tags: d.Tags}
	if d.Software != nil {
		f.Software = make([]softwareFact, len(d.Software))
		for i, sw := range d.Software {
			f.Software[i] = softwareFact(sw)
		}
	}
	if d.OS != nil {
		o := osFact(*d.OS)
		f.OS = &o
	}
	if d.Applications != nil {
		f.Applications = make(map[string]appFact, len(d.Applications))
		for k, v := range d.Applications {
			f.Applications[k] = appFact(v)
		}
	}
	return f
}

func (f *facts) apply(d *scope.Device) {
	d.IPs, d.Tags = f.IPs, f.Tags
	if f.Software != nil {
		d.Software = make([]scope.Software, len(f.Software))
		for i, sw := range f.Software {
			d.Software[i] = scope.Software(sw)
		}
	}
	if f.OS != nil {
		o := scope.OS(*f.OS)
		d.OS = &o
	}
	if f.Applications != nil {
		d.Applications = make(map[string]scope.AppState, len(f.Applications))
		for k, v := range f.Applications {
			d.Applications[k] = scope.AppState(v)
		}
	}
}

// netbiosKey and dnsKey fold names the way scope.ParseAddress folds an
// address, so DevicesByName is an equality on an indexed column.
func netbiosKey(name string) string { return strings.ToUpper(name) }

func dnsKey(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// checkText reports a string the databases cannot store unchanged:
// invalid UTF-8 (JSON would replace it, PostgreSQL refuse it) or NUL
// (PostgreSQL text and jsonb refuse it).
func checkText(bad *errs.ValidationErrors, field, v string) {
	if !utf8.ValidString(v) {
		*bad = append(*bad, errs.Invalid(field, "", "must be valid UTF-8"))
	} else if strings.IndexByte(v, 0) >= 0 {
		*bad = append(*bad, errs.Invalid(field, "", "must not contain NUL characters"))
	}
}

// Bounds of Device.LastSeen: the zero time (never seen) and the years 1 to
// 9999, which both engines store exactly.
var (
	minLastSeen = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxLastSeen = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// textOK reports whether v is stored unchanged (see checkText).
func textOK(v string) bool { return utf8.ValidString(v) && strings.IndexByte(v, 0) < 0 }

// deviceOK is the fast path of validateDevice: true when every string of
// d is storable and LastSeen in range, without building field names.
func deviceOK(d *scope.Device) bool {
	if !textOK(string(d.ID)) || !textOK(string(d.GroupID)) || !textOK(d.NetBIOSName) || !textOK(d.DNSName) ||
		!textOK(d.TimeZone) || !textOK(d.Server.ID) || !textOK(string(d.Server.Role)) {
		return false
	}
	for _, t := range d.Tags {
		if !textOK(t) {
			return false
		}
	}
	for _, sw := range d.Software {
		if !textOK(sw.Name) || !textOK(sw.Version) || !textOK(sw.Vendor) {
			return false
		}
	}
	if o := d.OS; o != nil && (!textOK(o.Name) || !textOK(o.Version) || !textOK(o.Build) || !textOK(o.Platform)) {
		return false
	}
	for k := range d.Applications {
		if !textOK(k) {
			return false
		}
	}
	return d.LastSeen.IsZero() || !d.LastSeen.Before(minLastSeen) && !d.LastSeen.After(maxLastSeen)
}

// validateDevice reports every string of d the databases cannot store
// unchanged and a LastSeen out of range, naming fields under p.
func validateDevice(bad *errs.ValidationErrors, p string, d *scope.Device) {
	checkText(bad, p+".id", string(d.ID))
	checkText(bad, p+".group_id", string(d.GroupID))
	checkText(bad, p+".netbios_name", d.NetBIOSName)
	checkText(bad, p+".dns_name", d.DNSName)
	checkText(bad, p+".time_zone", d.TimeZone)
	checkText(bad, p+".server.id", d.Server.ID)
	checkText(bad, p+".server.role", string(d.Server.Role))
	for i, t := range d.Tags {
		checkText(bad, fmt.Sprintf("%s.tags[%d]", p, i), t)
	}
	for i, sw := range d.Software {
		q := fmt.Sprintf("%s.software[%d]", p, i)
		checkText(bad, q+".name", sw.Name)
		checkText(bad, q+".version", sw.Version)
		checkText(bad, q+".vendor", sw.Vendor)
	}
	if d.OS != nil {
		checkText(bad, p+".os.name", d.OS.Name)
		checkText(bad, p+".os.version", d.OS.Version)
		checkText(bad, p+".os.build", d.OS.Build)
		checkText(bad, p+".os.platform", d.OS.Platform)
	}
	for k := range d.Applications {
		if !utf8.ValidString(k) || strings.IndexByte(k, 0) >= 0 {
			*bad = append(*bad, errs.Invalid(p+".applications", "", "application names must be valid UTF-8 without NUL characters"))
			break
		}
	}
	if !d.LastSeen.IsZero() && (d.LastSeen.Before(minLastSeen) || d.LastSeen.After(maxLastSeen)) {
		*bad = append(*bad, errs.Invalid(p+".last_seen", d.LastSeen.UTC().Format(time.RFC3339), "must be the zero time or between 0001-01-01 and 9999-12-31 UTC"))
	}
}

// lockTree takes the advisory lock serializing group-tree changes on
// PostgreSQL (SQLite transactions already hold the only write lock).
func (inv *Inventory) lockTree(ctx context.Context, tx *sqlx.Tx) error {
	if inv.dialect != Postgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))`, inventoryLockKey)
	return err
}

// PutGroups adds or replaces groups (by ID), in one transaction. A group's
// parent must exist or be in the same call, ids must be non-empty, and the
// tree must stay acyclic (every entry is checked, also one a later entry
// with the same ID replaces; the last entry wins). Otherwise nothing is stored and ValidationErrors (ErrInvalid) name the
// offending entries ("groups[3].parent").
//
// Errors: ErrInvalid, ErrClosed, ErrRetryable (a busy database), context
// errors; others wrapped.
func (inv *Inventory) PutGroups(ctx context.Context, groups ...scope.AdminGroup) error {
	s := inv.store()
	if err := s.checkOpen(); err != nil {
		return err
	}
	var bad errs.ValidationErrors
	next := make(map[scope.GroupID]scope.AdminGroup, len(groups))
	for i, g := range groups {
		p := fmt.Sprintf("groups[%d]", i)
		if g.ID == "" {
			bad = append(bad, errs.Invalid(p+".id", "", "is required"))
			continue
		}
		checkText(&bad, p+".id", string(g.ID))
		checkText(&bad, p+".parent", string(g.Parent))
		checkText(&bad, p+".name", g.Name)
		next[g.ID] = g
	}
	if err := bad.Err(); err != nil {
		return err
	}
	if len(groups) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := inv.lockTree(ctx, tx); err != nil {
			return err
		}
		stored, err := inv.groupParents(ctx, tx)
		if err != nil {
			return err
		}
		if err := checkTree(groups, next, stored); err != nil {
			return err
		}
		all := make([]scope.AdminGroup, 0, len(next))
		for _, g := range next {
			all = append(all, g)
		}
		slices.SortFunc(all, func(a, b scope.AdminGroup) int { return cmp.Compare(a.ID, b.ID) })
		return inv.upsertGroups(ctx, tx, all)
	})
	if err != nil {
		if errors.Is(err, ErrInvalid) {
			return err // ValidationErrors, as they are
		}
		return fmt.Errorf("sqlstore: put groups: %w", err)
	}
	return nil
}

// checkTree applies inmem's rules: every parent exists (stored or in the
// call) and no group becomes its own ancestor.
func checkTree(groups []scope.AdminGroup, next map[scope.GroupID]scope.AdminGroup, stored map[scope.GroupID]scope.GroupID) error {
	parent := func(id scope.GroupID) (scope.GroupID, bool) {
		if g, ok := next[id]; ok {
			return g.Parent, true
		}
		p, ok := stored[id]
		return p, ok
	}
	var bad errs.ValidationErrors
	for i, g := range groups {
		if g.Parent == "" {
			continue
		}
		if _, ok := parent(g.Parent); !ok {
			bad = append(bad, errs.Invalid(fmt.Sprintf("groups[%d].parent", i), string(g.Parent), "no such group"))
			continue
		}
		p, steps := g.Parent, 0
		for p != "" && steps <= len(next)+len(stored) {
			if p == g.ID {
				bad = append(bad, errs.Invalid(fmt.Sprintf("groups[%d].parent", i), string(g.Parent), "makes the group tree cyclic"))
				break
			}
			p, _ = parent(p)
			steps++
		}
	}
	return bad.Err()
}

// groupParents reads every stored group's parent.
func (inv *Inventory) groupParents(ctx context.Context, tx *sqlx.Tx) (map[scope.GroupID]scope.GroupID, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, COALESCE(parent, '') FROM admin_groups`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[scope.GroupID]scope.GroupID{}
	for rows.Next() {
		var id, parent string
		if err := rows.Scan(&id, &parent); err != nil {
			return nil, err
		}
		out[scope.GroupID(id)] = scope.GroupID(parent)
	}
	return out, rows.Err()
}

func (inv *Inventory) upsertGroups(ctx context.Context, tx *sqlx.Tx, groups []scope.AdminGroup) error {
	const set = ` ON CONFLICT (id) DO UPDATE SET parent = excluded.parent, name = excluded.name`
	if inv.dialect == Postgres {
		ids, parents, names := make([]string, len(groups)), make([]string, len(groups)), make([]string, len(groups))
		for i, g := range groups {
			ids[i], parents[i], names[i] = string(g.ID), string(g.Parent), g.Name
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO admin_groups (id, parent, name)
 SELECT u.id, NULLIF(u.parent, ''), u.name FROM unnest($1::text[], $2::text[], $3::text[]) AS u (id, parent, name)`+set, ids, parents, names)
		return err
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO admin_groups (id, parent, name) VALUES (?, ?, ?)`+set)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, g := range groups {
		if _, err := st.ExecContext(ctx, string(g.ID), nullIfEmpty(string(g.Parent)), g.Name); err != nil {
			return err
		}
	}
	return nil
}

// DeleteGroup removes a group that has no devices and no subgroups. It
// returns an error matching ErrNotFound if there is no such group and one
// matching ErrConflict if the group is not empty (also when a concurrent
// PutDevices or PutGroups puts something into it first).
func (inv *Inventory) DeleteGroup(ctx context.Context, id scope.GroupID) error {
	s := inv.store()
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := inv.lockTree(ctx, tx); err != nil {
			return err
		}
		var n int
		if err := tx.GetContext(ctx, &n, tx.Rebind(`SELECT COUNT(*) FROM admin_groups WHERE id = ?`), string(id)); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("no such group: %w", ErrNotFound)
		}
		var sub []string
		if err := tx.SelectContext(ctx, &sub, tx.Rebind(`SELECT id FROM admin_groups WHERE parent = ? ORDER BY id LIMIT 1`), string(id)); err != nil {
			return err
		}
		if len(sub) > 0 {
			return fmt.Errorf("it has subgroup %q: %w", sub[0], ErrConflict)
		}
		var dev []string
		if err := tx.SelectContext(ctx, &dev, tx.Rebind(`SELECT id FROM devices WHERE group_id = ? LIMIT 1`), string(id)); err != nil {
			return err
		}
		if len(dev) > 0 {
			return fmt.Errorf("it has devices (%q and maybe more): %w", dev[0], ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM admin_groups WHERE id = ?`), string(id)); err != nil {
			if isFKViolation(err) {
				// A concurrent writer put a device into the group
				// after the checks above.
				return fmt.Errorf("it is not empty: %w: %w", ErrConflict, err)
			}
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlstore: delete group %q: %w", id, err)
	}
	return nil
}

// isFKViolation reports a foreign key violation of either engine.
func isFKViolation(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqliteConstraintFK
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503"
}

// PutDevices adds or replaces devices (by ID) in one transaction, written
// in chunks of multi-row upserts in ID order. Each device's GroupID must
// be "" (unassigned) or an existing group, and IDs must be non-empty and
// unique within the call (see Inventory for the other rules); otherwise
// nothing is stored and ValidationErrors (ErrInvalid) name the offending
// entries ("devices[3].group_id"). A device whose facts exceed
// scope.MaxFactLength or scope.MaxFactListLength is not stored while the
// other devices of the call are, and the call returns a
// *scope.OversizeDevicesError (ErrInvalid) naming it.
//
// Errors: ErrInvalid; ErrNotFound when a concurrent DeleteGroup removed a
// device's group after the check; ErrClosed, ErrRetryable, context
// errors; others wrapped.
func (inv *Inventory) PutDevices(ctx context.Context, devices ...scope.Device) error {
	s := inv.store()
	if err := s.checkOpen(); err != nil {
		return err
	}
	var bad errs.ValidationErrors
	seen := make(map[scope.DeviceID]int, len(devices))
	groupSet := map[scope.GroupID]bool{}
	for i := range devices {
		d := &devices[i]
		if d.ID == "" {
			bad = append(bad, errs.Invalid(fmt.Sprintf("devices[%d].id", i), "", "is required"))
		} else if j, dup := seen[d.ID]; dup {
			bad = append(bad, errs.Invalid(fmt.Sprintf("devices[%d].id", i), string(d.ID), fmt.Sprintf("duplicate of devices[%d]", j)))
		} else {
			seen[d.ID] = i
		}
		if !deviceOK(d) {
			validateDevice(&bad, fmt.Sprintf("devices[%d]", i), d)
		}
		if d.GroupID != "" {
			groupSet[d.GroupID] = true
		}
	}
	if err := bad.Err(); err != nil {
		return err
	}
	// A device over the fact limits is refused alone; the others are
	// stored (scope.DropOversizeDevices).
	_, oversize := scope.DropOversizeDevices(devices)
	skip := map[int]bool{}
	if o, ok := oversize.(*scope.OversizeDevicesError); ok {
		for _, i := range o.Devices {
			skip[i] = true
		}
	}
	if len(devices) == len(skip) {
		return oversize
	}
	// Encode before the transaction: the write lock is held only for
	// the database work.
	order := make([]int, 0, len(devices))
	for i := range devices {
		if !skip[i] {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(devices[a].ID, devices[b].ID) })
	enc := make([]string, len(devices))
	for _, i := range order {
		b, err := json.Marshal(factsOf(&devices[i]))
		if err != nil {
			return fmt.Errorf("sqlstore: put devices: devices[%d]: %w", i, err)
		}
		enc[i] = string(b)
	}
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		known, err := inv.existingGroups(ctx, tx, groupSet)
		if err != nil {
			return err
		}
		var bad errs.ValidationErrors
		for i := range devices {
			if g := devices[i].GroupID; g != "" && !known[g] {
				bad = append(bad, errs.Invalid(fmt.Sprintf("devices[%d].group_id", i), string(g), "no such group"))
			}
		}
		if err := bad.Err(); err != nil {
			return err
		}
		if inv.dialect == Postgres {
			return inv.pgUpsertDevices(ctx, tx, devices, order, enc)
		}
		return inv.sqliteUpsertDevices(ctx, tx, devices, order, enc)
	})
	if err != nil {
		if errors.Is(err, ErrInvalid) {
			return err // ValidationErrors, as they are
		}
		return fmt.Errorf("sqlstore: put devices: %w", err)
	}
	return oversize
}

// existingGroups returns which of the groups exist. On PostgreSQL it
// holds FOR KEY SHARE on them, so a concurrent DeleteGroup waits for the
// caller's transaction and then finds the group not empty.
func (inv *Inventory) existingGroups(ctx context.Context, tx *sqlx.Tx, groups map[scope.GroupID]bool) (map[scope.GroupID]bool, error) {
	out := make(map[scope.GroupID]bool, len(groups))
	if len(groups) == 0 {
		return out, nil
	}
	ids := make([]string, 0, len(groups))
	for g := range groups {
		ids = append(ids, string(g))
	}
	slices.Sort(ids)
	var rows *sql.Rows
	var err error
	if inv.dialect == Postgres {
		rows, err = tx.QueryContext(ctx, `SELECT id FROM admin_groups WHERE id = ANY($1::text[]) ORDER BY id FOR KEY SHARE`, ids)
	} else {
		var list []byte
		if list, err = json.Marshal(ids); err != nil {
			return nil, err
		}
		rows, err = tx.QueryContext(ctx, `SELECT id FROM admin_groups WHERE id IN (SELECT value FROM json_each(?))`, string(list))
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[scope.GroupID(id)] = true
	}
	return out, rows.Err()
}

func (inv *Inventory) sqliteUpsertDevices(ctx context.Context, tx *sqlx.Tx, devices []scope.Device, order []int, enc []string) error {
	size := min(sqliteDeviceChunk, len(order))
	full, err := tx.PrepareContext(ctx, sqliteDeviceUpsert(size))
	if err != nil {
		return err
	}
	defer full.Close()
	args := make([]any, 0, 12*sqliteDeviceChunk)
	for len(order) > 0 {
		part := order[:min(sqliteDeviceChunk, len(order))]
		order = order[len(part):]
		args = args[:0]
		for _, i := range part {
			d := &devices[i]
			args = append(args, string(d.ID), nullIfEmpty(string(d.GroupID)), d.NetBIOSName, netbiosKey(d.NetBIOSName),
				d.DNSName, dnsKey(d.DNSName), d.Server.ID, string(d.Server.Role), d.Connected, microsOf(d.LastSeen), d.TimeZone, enc[i])
		}
		if len(part) == size {
			if _, err := full.ExecContext(ctx, args...); err != nil {
				return err
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, sqliteDeviceUpsert(len(part)), args...); err != nil {
			return err
		}
	}
	return nil
}

func (inv *Inventory) pgUpsertDevices(ctx context.Context, tx *sqlx.Tx, devices []scope.Device, order []int, enc []string) error {
	for len(order) > 0 {
		part := order[:min(pgDeviceChunk, len(order))]
		order = order[len(part):]
		n := len(part)
		ids, groups, nb, nbKey, dns, dnsK, srv, role, tz, fx := make([]string, n), make([]string, n), make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		conn, seen := make([]bool, n), make([]int64, n)
		for k, i := range part {
			d := &devices[i]
			ids[k], groups[k], nb[k], nbKey[k] = string(d.ID), string(d.GroupID), d.NetBIOSName, netbiosKey(d.NetBIOSName)
			dns[k], dnsK[k], srv[k], role[k] = d.DNSName, dnsKey(d.DNSName), d.Server.ID, string(d.Server.Role)
			conn[k], seen[k], tz[k], fx[k] = d.Connected, microsOf(d.LastSeen), d.TimeZone, enc[i]
		}
		if _, err := tx.ExecContext(ctx, pgDeviceUpsert, ids, groups, nb, nbKey, dns, dnsK, srv, role, conn, seen, tz, fx); err != nil {
			return err
		}
	}
	return nil
}

// DeleteDevice removes a device. It returns an error matching ErrNotFound
// if there is none.
func (inv *Inventory) DeleteDevice(ctx context.Context, id scope.DeviceID) error {
	s := inv.store()
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM devices WHERE id = ?`), string(id))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlstore: delete device %q: %w", id, err)
	}
	return nil
}

func scanDevice(sc scanner) (*scope.Device, error) {
	var (
		d                                 scope.Device
		id, netbios, dns, srv, role, zone string
		group                             sql.NullString
		seen                              dbTime
		raw                               []byte
	)
	if err := sc.Scan(&id, &group, &netbios, &dns, &srv, &role, &d.Connected, &seen, &zone, &raw); err != nil {
		return nil, err
	}
	d.ID, d.GroupID, d.NetBIOSName, d.DNSName = scope.DeviceID(id), scope.GroupID(group.String), netbios, dns
	d.Server, d.LastSeen, d.TimeZone = scope.ServerRef{ID: srv, Role: scope.ServerRole(role)}, seen.T, zone
	var f facts
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("device %q: stored facts: %w", id, err)
	}
	f.apply(&d)
	return &d, nil
}

// Device implements scope.Inventory.
func (inv *Inventory) Device(ctx context.Context, id scope.DeviceID) (*scope.Device, error) {
	s := inv.store()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	d, err := scanDevice(s.r.QueryRowContext(ctx, s.r.Rebind(`SELECT `+deviceCols+` FROM devices WHERE id = ?`), string(id)))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: device %q: %w", id, mapErr(err))
	}
	return d, nil
}

// Group implements scope.Inventory.
func (inv *Inventory) Group(ctx context.Context, id scope.GroupID) (*scope.AdminGroup, error) {
	s := inv.store()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	var gid, parent, name string
	err := s.r.QueryRowContext(ctx, s.r.Rebind(`SELECT id, COALESCE(parent, ''), name FROM admin_groups WHERE id = ?`), string(id)).Scan(&gid, &parent, &name)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: group %q: %w", id, mapErr(err))
	}
	return &scope.AdminGroup{ID: scope.GroupID(gid), Parent: scope.GroupID(parent), Name: name}, nil
}

// Groups implements scope.Inventory; the groups are sorted by ID.
func (inv *Inventory) Groups(ctx context.Context) ([]scope.AdminGroup, error) {
	s := inv.store()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, COALESCE(parent, ''), name FROM admin_groups ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: groups: %w", mapErr(err))
	}
	defer rows.Close()
	out := []scope.AdminGroup{}
	for rows.Next() {
		var id, parent, name string
		if err := rows.Scan(&id, &parent, &name); err != nil {
			return nil, fmt.Errorf("sqlstore: groups: %w", mapErr(err))
		}
		out = append(out, scope.AdminGroup{ID: scope.GroupID(id), Parent: scope.GroupID(parent), Name: name})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: groups: %w", mapErr(err))
	}
	return out, nil
}

// Devices implements scope.Inventory: every device in ascending ID order,
// read in pages of devicesPage devices by key (see Inventory about
// consistency).
func (inv *Inventory) Devices(ctx context.Context) iter.Seq2[*scope.Device, error] {
	return func(yield func(*scope.Device, error) bool) {
		s := inv.store()
		q := s.r.Rebind(`SELECT ` + deviceCols + ` FROM devices WHERE id > ? ORDER BY id LIMIT ?`)
		after := "" // every id is non-empty: id > '' is every device
		for {
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			if err := s.checkOpen(); err != nil {
				yield(nil, err)
				return
			}
			page, err := inv.devicePage(ctx, q, after)
			if err != nil {
				yield(nil, fmt.Errorf("sqlstore: devices: %w", err))
				return
			}
			for _, d := range page {
				if !yield(d, nil) {
					return
				}
			}
			if len(page) < devicesPage {
				return
			}
			after = string(page[len(page)-1].ID)
		}
	}
}

func (inv *Inventory) devicePage(ctx context.Context, q, after string) ([]*scope.Device, error) {
	s := inv.store()
	rows, err := s.r.QueryContext(ctx, q, after, devicesPage)
	if err != nil {
		return nil, ctxOrMapped(ctx, err)
	}
	defer rows.Close()
	page := make([]*scope.Device, 0, devicesPage)
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, ctxOrMapped(ctx, err)
		}
		page = append(page, d)
	}
	if err := rows.Err(); err != nil {
		return nil, ctxOrMapped(ctx, err)
	}
	return page, nil
}

// ctxOrMapped returns the context's error when the context ended (the
// driver's own error for it varies), else the mapped error.
func ctxOrMapped(ctx context.Context, err error) error {
	if ce := ctx.Err(); ce != nil {
		return ce
	}
	return mapErr(err)
}

// idList passes a list of ids as one query parameter: a text[] on
// PostgreSQL (used with = ANY), a JSON array on SQLite (used with
// json_each), so the statement is the same whatever the list's length.
func (inv *Inventory) idList(ids []string) (any, error) {
	if inv.dialect == Postgres {
		return ids, nil
	}
	b, err := json.Marshal(ids)
	return string(b), err
}

// inList is the SQL condition "col is one of the ids in parameter 1".
func (inv *Inventory) inList(col string) string {
	if inv.dialect == Postgres {
		return col + ` = ANY($1::text[])`
	}
	return col + ` IN (SELECT value FROM json_each(?))`
}

// GroupMembers implements scope.GroupMemberLister: one query on the
// devices_group index reading ids and server roles only; the members are
// read before the first is yielded (about 50 bytes each) and sorted by ID.
func (inv *Inventory) GroupMembers(ctx context.Context, groups []scope.GroupID) iter.Seq2[scope.Member, error] {
	return func(yield func(scope.Member, error) bool) {
		members, err := inv.groupMembers(ctx, groups)
		if err != nil {
			yield(scope.Member{}, err)
			return
		}
		for i, m := range members {
			if i%4096 == 4095 && ctx.Err() != nil {
				yield(scope.Member{}, ctx.Err())
				return
			}
			if !yield(m, nil) {
				return
			}
		}
	}
}

func (inv *Inventory) groupMembers(ctx context.Context, groups []scope.GroupID) ([]scope.Member, error) {
	s := inv.store()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if len(groups) == 0 {
		return nil, nil
	}
	ids := make([]string, len(groups))
	for i, g := range groups {
		ids[i] = string(g)
	}
	list, err := inv.idList(ids)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, server_role FROM devices WHERE `+inv.inList("group_id"), list)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: group members: %w", ctxOrMapped(ctx, err))
	}
	defer rows.Close()
	var out []scope.Member
	var id, role sql.RawBytes // no copy of the known roles, one of the id
	for rows.Next() {
		if err := rows.Scan(&id, &role); err != nil {
			return nil, fmt.Errorf("sqlstore: group members: %w", ctxOrMapped(ctx, err))
		}
		out = append(out, scope.Member{ID: scope.DeviceID(id), Role: roleOf(role)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: group members: %w", ctxOrMapped(ctx, err))
	}
	slices.SortFunc(out, func(a, b scope.Member) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// roleOf returns the ServerRole spelled b, sharing the constants' storage
// for the known roles.
func roleOf(b []byte) scope.ServerRole {
	for _, r := range [...]scope.ServerRole{scope.Primary, scope.Secondary, scope.Virtual, ""} {
		if string(b) == string(r) {
			return r
		}
	}
	return scope.ServerRole(b)
}

// DevicesByName implements scope.NameResolver with the devices_netbios and
// devices_dns indexes on the folded names. name must be a NetBIOS or DNS
// name address (as scope.ParseAddress returns them, already folded);
// another kind is rejected with a *ValidationError.
func (inv *Inventory) DevicesByName(ctx context.Context, name scope.Address) ([]scope.DeviceID, error) {
	s := inv.store()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	var q, key string
	switch name.Kind {
	case scope.NetBIOSName:
		q, key = `SELECT id FROM devices WHERE netbios_key = ? ORDER BY id`, netbiosKey(name.Name)
	case scope.DNSName:
		q, key = `SELECT id FROM devices WHERE dns_key = ? ORDER BY id`, dnsKey(name.Name)
	default:
		return nil, errs.Invalid("name", name.String(), "must be a NetBIOS or DNS name")
	}
	out := []scope.DeviceID{}
	if key == "" {
		return out, nil // "" is an unknown name, never a match
	}
	if err := s.r.SelectContext(ctx, &out, s.r.Rebind(q), key); err != nil {
		return nil, fmt.Errorf("sqlstore: devices named %q: %w", name.Name, ctxOrMapped(ctx, err))
	}
	return out, nil
}

// ConnectedDevices implements scope.ConnectionChecker with one query on
// the primary key.
func (inv *Inventory) ConnectedDevices(ctx context.Context, ids []scope.DeviceID) ([]scope.DeviceID, error) {
	return inv.devicesAmong(ctx, ids, "connected AND ", "connected devices")
}

// ExistingDevices implements scope.DeviceChecker with one query on the
// primary key.
func (inv *Inventory) ExistingDevices(ctx context.Context, ids []scope.DeviceID) ([]scope.DeviceID, error) {
	return inv.devicesAmong(ctx, ids, "", "existing devices")
}

// devicesAmong returns, sorted, the devices of ids (deduplicated) that
// are in the inventory and meet cond (an SQL condition ending in "AND ",
// or empty), with one query on the primary key.
func (inv *Inventory) devicesAmong(ctx context.Context, ids []scope.DeviceID, cond, what string) ([]scope.DeviceID, error) {
	s := inv.store()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []scope.DeviceID{}
	if len(ids) == 0 {
		return out, nil
	}
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = string(id)
	}
	slices.Sort(strs)
	strs = slices.Compact(strs)
	list, err := inv.idList(strs)
	if err != nil {
		return nil, err
	}
	if err := s.r.SelectContext(ctx, &out, `SELECT id FROM devices WHERE `+cond+inv.inList("id"), list); err != nil {
		return nil, fmt.Errorf("sqlstore: %s: %w", what, ctxOrMapped(ctx, err))
	}
	slices.Sort(out)
	return out, nil
}
