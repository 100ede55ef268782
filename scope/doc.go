// Package scope states which devices a task runs on, and resolves and
// explains that set against the host's device inventory.
//
// # Concepts
//
// A Scope has a Kind (the product documentation's "About task scope"):
//
//   - Local: one device (a local task).
//   - Server: the Administration Server itself.
//   - Group: an administration group; by default with all its subgroups
//     ("Distribute to subgroups", on by default: GroupOnly turns it off),
//     optionally with the devices of secondary and virtual Administration
//     Servers (DistributeToServers, off by default, only when distributing
//     to subgroups), minus ExcludedGroups, which must be strict subgroups
//     of the group.
//   - Devices: device ids picked from the devices the server discovered,
//     including unassigned ones.
//   - Addresses: IPv4/IPv6 addresses, ranges "a-b", CIDR subnets, NetBIOS
//     names and DNS names (ParseAddress), typed in or imported from a TXT
//     file (ParseAddressList, ImportAddressList).
//   - Selection: a device selection, a CEL predicate over device facts.
//
// Scope is plain data with a stable JSON encoding (see Scope), so it can
// be stored in a database or a KLT file. Validate checks it without an
// inventory; ValidateWith also checks it against one (groups, excluded
// subgroups, device ids and names exist).
//
//	s := scope.Scope{Kind: scope.Group, Group: "g-berlin", ExcludedGroups: []scope.GroupID{"g-berlin-lab"}}
//	res, err := scope.Resolve(ctx, s, inv)     // res.Devices, res.Unknown, res.Missing
//	why, err := scope.Explain(ctx, s, inv, "d-17") // why.Membership, why.Rule, why.Reason
//
// # Time semantics
//
// Scope.RunsOnServer is true for Selection and Server scopes: the
// Administration Server runs such tasks on its own schedule, in the
// server's time zone, and only on devices connected to it (a Resolution
// lists matching devices that are offline separately, in Offline). Every
// other scope is delivered to the devices, which run the task on their
// local time (Device.TimeZone) and also while disconnected. The engine
// reads this property; this package never reads the clock.
//
// # Backends
//
// The host implements Inventory (four methods, context first, ErrNotFound
// for a missing device or group). An implementation can add fast paths by
// implementing the optional interfaces GroupMemberLister, NameResolver and
// DeviceChecker, detected with a type assertion, in the style of
// database/sql/driver; an inventory that stores saved selections
// implements SelectionLookup (and SelectionStore for writing).
// Package scope/inmem is a concurrent-safe, indexed in-memory inventory,
// and package scope/inventorytest is the conformance suite every
// implementation (a host's inventory, a SQL backend) runs with
// inventorytest.Run: it checks ErrNotFound, ascending order, that unknown
// (nil) facts stay distinct from empty ones, the optional interfaces, and
// that Resolve and Explain agree with the in-memory reference.
//
// # Unknown facts
//
// A device fact the server has not collected is left at its zero value
// (see Device). A scope never silently includes or excludes a device
// because a fact is unknown: Resolve lists such a device in
// Resolution.Unknown with the missing fact ("unknown fact device.os"), and
// Explain answers Unknown. Examples: an address scope with IP rules and a
// device whose IP addresses are not known; a group scope not distributed
// to secondary servers and a device whose managing server's role is not
// known; a selection reading device.os.name of a device without OS facts.
//
// # Device selections
//
// A selection is a CEL expression (cel.dev/cel-go; not Turing-complete)
// of type bool over one variable, device:
//
//	device.id            string
//	device.netbios_name  string
//	device.dns_name      string
//	device.ips           list(string)       canonical text, "10.0.0.7", "2001:db8::7"
//	device.group         string             "" for an unassigned device
//	device.tags          list(string)
//	device.software      list(Software)     s.name, s.version, s.vendor (strings)
//	device.os            OS                 .name, .version, .build, .platform ("windows", "linux", "macos")
//	device.time_zone     string             IANA name
//	device.applications  map(string, Application)  by application name; .installed, .running (bool)
//	device.last_seen     timestamp
//	device.connected     bool
//	device.server        Server             .id, .role ("primary", "secondary", "virtual")
//
// The standard CEL macros (exists, all, exists_one, map, filter, has) and
// the cel-go strings extension (split, lowerAscii, ...) are available.
// Reading a fact the device does not have is an evaluation error that
// CEL's && and || absorb like an unknown (`false && device.os.name == "x"`
// is false), so a selection is Unknown for a device only when the answer
// really depends on the missing fact. Use has(device.os) to test for a
// fact. A missing key in device.applications is also an error: write
// `"X" in device.applications` before reading device.applications["X"].
//
// CompileSelection compiles once (errors carry the 1-based column); a
// Program is safe for concurrent use. Limits: MaxSelectionLength bytes,
// MaxSelectionNesting levels, and a static worst-case cost of at most
// MaxSelectionCost per device, estimated with every device list at
// MaxFactListLength entries and every string fact at MaxFactLength bytes.
// ExampleSelections lists ready-made selections, such as
// "Windows 11 devices without application X":
//
//	device.os.name.startsWith("Windows 11") && !("X" in device.applications)
//
// # Saved selections
//
// The product documentation lets a task's scope be "one of the existing
// device selections". A SavedSelection is such a selection, stored beside
// the inventory by an implementation of SelectionStore (scope/inmem,
// storage/sqlstore). A scope refers to it by id:
//
//	Scope{Kind: Selection, SelectionID: "sel-accounting"}
//
// instead of carrying an inline expression (Scope.Selection, which keeps
// working; exactly one of the two is set). The task stores only the id:
// Resolve, Explain and ValidateWith read the selection's current
// expression from the inventory (SelectionLookup) every time, so an edit
// of the selection applies to every task that refers to it, without
// editing the tasks. Resolution and Explanation name the selection and the
// revision they used; Explain's Reason names it for the administrator
// (`the device matches the selection "Accounting" (sel-accounting,
// revision 3)`). A scope naming a selection that does not exist fails
// with a *SelectionNotFoundError (ErrNotFound and ErrInvalid); an
// inventory without saved selections refuses such a scope (ErrInvalid).
//
// PutSelection validates before it stores: id, name and actor within
// their limits, valid UTF-8 without NUL, and an expression that
// CompileSelection accepts (type bool, MaxSelectionCost). Edits are
// optimistic: ExpectRevision 0 creates, otherwise it must be the stored
// revision (ErrConflict). Every create, edit and deletion appends a
// SelectionRevision (who, when, the name and expression after the change,
// and which of them changed); the history outlives a deletion.
//
// Deletion of a selection in use is refused with a *SelectionInUseError
// (ErrConflict). "In use" is asked of the task store through
// SelectionUsers (task.Manager implements it) rather than kept as a
// reference count beside the selection: a count drifts whenever a task is
// edited, deleted, rolled back or imported by a path that forgets to count
// and would need the inventory and the task store in one transaction; the
// task store's own answer cannot drift. The one gap, a task saved in the
// instant between the check and the deletion, fails safe: that task's
// scope resolves to a *SelectionNotFoundError, never to an empty or stale
// device list.
//
// # Fact limits
//
// The estimate holds because no device has larger facts: every string
// fact (id, group, names, time zone, server id and role, OS fields, tags,
// software name, version and vendor, application names) is at most
// MaxFactLength (256) bytes, and IPs, Tags, Software and Applications hold
// at most MaxFactListLength (10,000) entries. The inventories of this
// module refuse a device beyond these limits (CheckDeviceFacts): PutDevices
// stores the other devices of the call and returns an
// *OversizeDevicesError naming the refused ones, so one device reporting
// a 16 KiB OS name cannot make a selection cost what the compiler did
// not allow for, nor block the inventory sync of its neighbours. A host's
// own Inventory should do the same (DropOversizeDevices); whatever the
// inventory, Evaluate never reads a fact beyond the limits: a selection
// that reads one is Unknown for that device, with a reason naming the
// limit.
//
// # Address lists
//
// ParseAddressList reads one address per line; blank lines and '#'
// comments are skipped, CRLF and a byte order mark (UTF-8, or UTF-16 as
// Windows Notepad writes it) are accepted. All malformed lines are
// reported at once with their line numbers, and nothing is returned on
// error. ImportAddressList also requires every name to belong to a device
// already in the inventory, as the product documentation requires, and
// reports unknown names with their line.
//
// Limits, checked while reading: at most MaxAddressListSize (16 MiB)
// bytes, MaxAddressLineLength bytes per line, as many addresses as a
// scope may hold (MaxListLength, 100,000), and MaxAddressListErrors (100)
// malformed lines or unknown names. Past a limit reading stops with an
// *AddressListLimitError saying which limit and at which line, with the
// errors found before it, so neither the memory used nor the error
// message grows with the input beyond the limits.
//
// # Errors
//
// Bad input is reported as *ValidationError or ValidationErrors (both
// match ErrInvalid), with Field the JSON path inside the scope
// ("excluded_groups[2]", "addresses[7]", "selection"), Value the offending
// text, Reason what is allowed, and Line/Column for TXT lists and CEL
// expressions. An excluded group that is not a strict subgroup of the
// scope's group is such an error, naming the group. A missing device or
// group from the inventory matches ErrNotFound. Scope entries that name no
// device any more do not fail a resolution: they are listed in
// Resolution.Missing.
//
// # Performance
//
// With scope/inmem, resolving over 1,000,000 devices in a 10,000-group
// tree: a group scope with subgroups and 100 excluded subgroups, an
// address scope of 1,000 subnets and ranges, and a CEL selection are each
// a single pass over the devices (selections are evaluated on all cores);
// see the package benchmarks.
package scope
