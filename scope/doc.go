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
// database/sql/driver.
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
// MaxSelectionListFacts entries and every string at MaxSelectionFactLength
// bytes. ExampleSelections lists ready-made selections, such as
// "Windows 11 devices without application X":
//
//	device.os.name.startsWith("Windows 11") && !("X" in device.applications)
//
// # Address lists
//
// ParseAddressList reads one address per line; blank lines and '#'
// comments are skipped, CRLF and a byte order mark (UTF-8, or UTF-16 as
// Windows Notepad writes it) are accepted. All malformed lines are
// reported at once with their line numbers, and nothing is returned on
// error. ImportAddressList also requires every name to belong to a device
// already in the inventory, as the product documentation requires, and reports unknown
// names with their line.
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
