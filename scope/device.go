package scope

import (
	"context"
	"iter"
	"net/netip"
	"time"

	"github.com/taskfleet/taskfleet/internal/ident"
)

// DeviceID identifies a device in the inventory. It is opaque to this
// package; resolution orders devices by comparing IDs as byte strings. It
// is the same type as transport.DeviceID (both are aliases of one type),
// so a device id passes between the inventory and the device channel
// without conversion.
type DeviceID = ident.DeviceID

// GroupID identifies an administration group.
type GroupID string

// Device is what the inventory knows about one managed (or discovered but
// unassigned) device.
//
// # Unknown facts
//
// A fact the Administration Server has not collected yet is left at its
// zero value, and the zero value means "unknown", never "none":
//
//   - NetBIOSName, DNSName, TimeZone: "" is unknown.
//   - IPs, Tags, Software: nil is unknown; a non-nil empty slice means "none".
//   - Applications: nil is unknown; a non-nil map lists every application
//     the device reported, and an application missing from it is not
//     installed.
//   - OS: nil is unknown; inside it, "" fields are unknown.
//   - LastSeen: the zero time means the device was never seen.
//   - Server.Role: "" means the device is managed by this (the primary)
//     Administration Server: the zero ServerRef is what a host without a
//     server hierarchy leaves. Devices of secondary and virtual servers
//     must say so. A role other than the three documented ones is unknown.
//
// GroupID "" is not unknown: it is a discovered device that is not assigned
// to any administration group. Connected is always known (the server knows
// whether a device holds a connection).
//
// Scopes never silently include or exclude a device because one of its facts
// is unknown: resolution reports such a device as Unknown, with the fact
// that was missing.
//
// An inventory hands out *Device values that the caller must not modify;
// an implementation replaces a device rather than mutating one it has
// handed out.
type Device struct {
	// ID identifies the device; it is what tasks, results and the agent
	// (agent.Config.Device) use.
	ID DeviceID
	// NetBIOSName is the Windows computer name, matched by NetBIOS name
	// addresses (case-insensitive).
	NetBIOSName string
	// DNSName is the fully qualified name, matched by DNS name addresses
	// (case-insensitive, without the trailing dot).
	DNSName string
	// IPs are the device's addresses, matched by IP, range and subnet
	// addresses.
	IPs []netip.Addr
	// GroupID is the administration group the device belongs to, or "" for
	// an unassigned device.
	GroupID GroupID
	// Tags are the administrator's labels, visible to device selections
	// (device.tags).
	Tags []string
	// Software is the installed software, visible to device selections.
	Software []Software
	// OS is the operating system; nil means unknown (a selection that
	// reads it leaves the device's membership unknown).
	OS *OS
	// TimeZone is the device's IANA time zone name, for example
	// "Europe/Berlin".
	TimeZone string
	// Applications maps an application name (the application a task type
	// belongs to, for example "Kaspersky Endpoint Security for Windows") to
	// its state on the device.
	Applications map[string]AppState
	// LastSeen is the last time the device contacted the Administration
	// Server (UTC).
	LastSeen time.Time
	// Connected says whether the device is connected now; tasks the
	// server runs (device selections) start only on connected devices.
	Connected bool
	// Server is the Administration Server that manages the device.
	Server ServerRef
}

// Software is one installed program.
type Software struct {
	// Name is the product name.
	Name string
	// Version is the installed version ("" when unknown).
	Version string
	// Vendor is the publisher ("" when unknown).
	Vendor string
}

// OS describes the operating system of a device. Empty fields are unknown.
type OS struct {
	// Name is the product name, for example "Windows 11 Pro" or "Ubuntu".
	Name string
	// Version, for example "23H2" or "24.04".
	Version string
	// Build, for example "22631.3880".
	Build string
	// Platform is the family: "windows", "linux" or "macos".
	Platform string
}

// AppState is the state of one application on a device. A task is started
// on a device only if the application it belongs to is running.
type AppState struct {
	// Installed says the application is installed.
	Installed bool
	// Running says it runs now; otherwise the task's result is
	// application_not_running.
	Running bool
}

// ServerRole says whether the Administration Server that manages a device is
// the primary server, a secondary server, or a virtual server.
type ServerRole string

// Server roles. The empty role is unknown.
const (
	Primary   ServerRole = "primary"
	Secondary ServerRole = "secondary"
	Virtual   ServerRole = "virtual"
)

// effective returns the role a device's server has for scope decisions:
// the zero role is the primary (this) server.
func (r ServerRole) effective() ServerRole {
	if r == "" {
		return Primary
	}
	return r
}

// ServerRef names the Administration Server that manages a device.
type ServerRef struct {
	// ID identifies the Administration Server.
	ID string
	// Role is its role (primary, secondary, virtual; "" unknown).
	Role ServerRole
}

// AdminGroup is one administration group. Groups form a tree: Parent is ""
// for a root group. (The name Group is taken by the scope Kind.)
type AdminGroup struct {
	// ID identifies the group.
	ID GroupID
	// Parent is the parent group's ID ("" for a root group).
	Parent GroupID
	// Name is shown to administrators.
	Name string
}

// Inventory is the host's device inventory, read by Resolve, Explain,
// ValidateWith and ImportAddressList.
//
// Implementations must be safe for concurrent use. Every method takes the
// caller's context and should return its error when it is done. Errors other
// than the documented ones are returned to the caller wrapped.
//
// The interface is deliberately small. An implementation can offer faster
// paths by also implementing the optional interfaces GroupMemberLister,
// NameResolver and DeviceChecker; this package detects them with a type assertion, so new
// capabilities are added as new optional interfaces, never as new methods
// here.
type Inventory interface {
	// Device returns the device with the given id. It must return an error
	// matching ErrNotFound (errors.Is) if there is none.
	Device(ctx context.Context, id DeviceID) (*Device, error)

	// Group returns the administration group with the given id. It must
	// return an error matching ErrNotFound if there is none.
	Group(ctx context.Context, id GroupID) (*AdminGroup, error)

	// Groups returns every administration group, in any order. The
	// inventory guarantees that every device's GroupID is "" or the id of
	// one of these groups, and that parents exist.
	Groups(ctx context.Context) ([]AdminGroup, error)

	// Devices yields every device, including unassigned ones, in ascending
	// ID order (byte-wise string comparison), each exactly once. After
	// yielding a non-nil error it must stop. The consumer may stop early.
	Devices(ctx context.Context) iter.Seq2[*Device, error]
}

// InventoryProvider is implemented by a store that also keeps the device
// inventory (devices and administration groups): storage/memstore and
// storage/sqlstore do. A host passes Inventory() to task.Config and
// engine.Config. It lives here, not in package storage, so that the
// storage contract does not depend on this package (and on CEL).
type InventoryProvider interface {
	// Inventory returns the store's inventory. It is the same value on
	// every call and safe for concurrent use.
	Inventory() Inventory
}

// Member is what a group scope needs to know about one device in a group:
// its id and the role of the Administration Server that manages it
// (Device.Server.Role).
type Member struct {
	// ID is the device.
	ID DeviceID
	// Role is the role of the server that manages it.
	Role ServerRole
}

// GroupMemberLister is an optional interface for an Inventory that can list
// the members of a set of groups faster than a scan of every device: an
// index on the group column, reading only the id and server-role columns
// instead of whole devices.
type GroupMemberLister interface {
	// GroupMembers yields the devices whose GroupID is in groups, in
	// ascending ID order, each exactly once. groups holds no duplicates and
	// may be long (thousands of ids). Same error contract as
	// Inventory.Devices.
	GroupMembers(ctx context.Context, groups []GroupID) iter.Seq2[Member, error]
}

// NameResolver is an optional interface for an Inventory that can find
// devices by name without a scan of every device.
type NameResolver interface {
	// DevicesByName returns the ids of the devices whose NetBIOS name (for
	// an Address of kind NetBIOSName) or DNS name (kind DNSName) equals
	// name.Name, compared case-insensitively, in ascending order. It
	// returns an empty slice and no error when no device has the name.
	DevicesByName(ctx context.Context, name Address) ([]DeviceID, error)
}

// DeviceChecker is an optional interface for an Inventory that can check
// many device ids at once (one query instead of one per id), used for
// Devices scopes of up to MaxListLength ids.
type DeviceChecker interface {
	// ExistingDevices returns the ids from ids that name a device in the
	// inventory, in ascending order, without duplicates. ids may hold
	// duplicates and ids of missing devices; neither is an error.
	ExistingDevices(ctx context.Context, ids []DeviceID) ([]DeviceID, error)
}

// ConnectionChecker is an optional interface for an Inventory that can
// tell which of many devices are connected at once (one query instead of
// a Device call per id): the engine plans a run on every device of a
// task's scope with it, 100,000 devices in one call.
type ConnectionChecker interface {
	// ConnectedDevices returns the ids from ids that name a device in the
	// inventory whose Connected is true, in ascending order, without
	// duplicates. ids may hold duplicates and ids of missing devices;
	// neither is an error.
	ConnectedDevices(ctx context.Context, ids []DeviceID) ([]DeviceID, error)
}
