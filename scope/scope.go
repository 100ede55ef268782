package scope

import (
	"fmt"
	"strconv"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// Kind is how a scope names its devices.
type Kind string

// Scope kinds (the product documentation's "About task scope").
const (
	// Local: one device (a local task).
	Local Kind = "local"
	// Server: the Administration Server itself (an Administration Server
	// task).
	Server Kind = "server"
	// Group: the devices of an administration group, by default with its
	// subgroups, minus excluded subgroups (a group task).
	Group Kind = "group"
	// Devices: explicit device ids chosen from the devices the
	// Administration Server has discovered, including unassigned ones.
	Devices Kind = "devices"
	// Addresses: IP addresses, IP ranges, CIDR subnets, NetBIOS names and
	// DNS names, typed in or imported from a TXT file.
	Addresses Kind = "addresses"
	// Selection: a device selection, a CEL predicate over device facts.
	Selection Kind = "selection"
)

// Limits on the size of a scope.
const (
	// MaxListLength is the most entries of Scope.Devices or
	// Scope.Addresses.
	MaxListLength = 100_000
	// MaxExcludedGroups is the most entries of Scope.ExcludedGroups.
	MaxExcludedGroups = 10_000
	// MaxIDLength is the longest device or group id, in bytes.
	MaxIDLength = 256
)

// Scope is the set of devices a task runs on. Kind decides which other
// fields are used; a field that does not belong to the kind must be left at
// its zero value (Validate rejects it, so nothing is silently ignored).
//
// # JSON encoding
//
// Scope is stored in databases and KLT files as JSON; the encoding is part
// of the API and stable:
//
//	{"kind":"group","group":"g-42","excluded_groups":["g-43"]}
//	{"kind":"group","group":"g-42","group_only":true}
//	{"kind":"group","group":"g-42","distribute_to_servers":true}
//	{"kind":"local","device":"d-1"}
//	{"kind":"server"}
//	{"kind":"devices","devices":["d-1","d-2"]}
//	{"kind":"addresses","addresses":["10.0.0.0/24","10.1.0.1-10.1.0.9","PC01","pc02.example.com"]}
//	{"kind":"selection","selection":"\"accounting\" in device.tags","selection_name":"Accounting"}
//	{"kind":"selection","selection_id":"sel-accounting"}
//
// Every field except kind is omitted when zero, so a missing group_only
// means "distribute to subgroups" (the product documentation's default) and a missing
// distribute_to_servers means off (the product documentation's default). Addresses use the
// canonical text of Address.String.
type Scope struct {
	// Kind decides which of the fields below apply.
	Kind Kind `json:"kind"`

	// Device is the device of a Local scope.
	Device DeviceID `json:"device,omitempty"`

	// Group is the administration group of a Group scope.
	Group GroupID `json:"group,omitempty"`
	// GroupOnly turns off "Distribute to subgroups": only the devices
	// directly in Group. The zero value (false) distributes to subgroups,
	// the product documentation's default.
	GroupOnly bool `json:"group_only,omitempty"`
	// DistributeToServers is "Distribute to secondary and virtual
	// Administration Servers": devices managed by secondary and virtual
	// servers in the group's tree are included. Default off; only allowed
	// when distributing to subgroups (GroupOnly false).
	DistributeToServers bool `json:"distribute_to_servers,omitempty"`
	// ExcludedGroups are subgroups whose devices (with their own
	// subgroups) are removed ("Exclusions from scope"). Each must be a
	// strict subgroup of Group, checked against the inventory by
	// ValidateWith and Resolve. Only allowed when distributing to
	// subgroups.
	ExcludedGroups []GroupID `json:"excluded_groups,omitempty"`

	// Devices lists the devices of a Devices scope.
	Devices []DeviceID `json:"devices,omitempty"`

	// Addresses lists the addresses of an Addresses scope.
	Addresses []Address `json:"addresses,omitempty"`

	// Selection is the CEL expression of a Selection scope (see
	// CompileSelection for the device schema).
	Selection string `json:"selection,omitempty"`
	// SelectionName is the display name of the selection (optional; only
	// with an inline Selection).
	SelectionName string `json:"selection_name,omitempty"`
	// SelectionID refers to a saved selection ("one of the existing
	// device selections", see SavedSelection) instead of an inline
	// Selection: exactly one of the two is set. Resolve and Explain read
	// the selection's current expression from the inventory (which must
	// implement SelectionLookup) every time, so an edit of the selection
	// applies to every task that refers to it.
	SelectionID SelectionID `json:"selection_id,omitempty"`
}

// RunsOnServer reports whether tasks with this scope are run by the
// Administration Server on the server's time, and only on devices connected
// to it (Selection and Server scopes). Every other scope is delivered to the
// devices, which run it on device-local time, also while offline.
func (s Scope) RunsOnServer() bool { return s.Kind == Selection || s.Kind == Server }

// Validate checks the scope without an inventory: the kind is known, the
// fields of the kind are set and well-formed, fields of other kinds are
// empty, lists hold no duplicates and stay within the documented limits,
// and a selection compiles. It returns nil, a *ValidationError or
// ValidationErrors, with Field the JSON path ("excluded_groups[2]").
//
// Checks that need the inventory (the group exists, excluded groups are
// subgroups, devices and names exist) are done by ValidateWith.
func (s Scope) Validate() error {
	var bad ValidationErrors
	add := func(field, value, reason string) {
		bad = append(bad, errs.Invalid(field, value, reason))
	}
	only := func(field string, set bool, kinds string) {
		if set {
			add(field, "", "only allowed for kind "+kinds)
		}
	}
	switch s.Kind {
	case Local, Server, Group, Devices, Addresses, Selection:
	case "":
		add("kind", "", "is required: one of local, server, group, devices, addresses, selection")
	default:
		add("kind", string(s.Kind), "must be one of local, server, group, devices, addresses, selection")
	}
	only("device", s.Device != "" && s.Kind != Local, "local")
	only("group", s.Group != "" && s.Kind != Group, "group")
	only("group_only", s.GroupOnly && s.Kind != Group, "group")
	only("distribute_to_servers", s.DistributeToServers && s.Kind != Group, "group")
	only("excluded_groups", s.ExcludedGroups != nil && s.Kind != Group, "group")
	only("devices", s.Devices != nil && s.Kind != Devices, "devices")
	only("addresses", s.Addresses != nil && s.Kind != Addresses, "addresses")
	only("selection", s.Selection != "" && s.Kind != Selection, "selection")
	only("selection_name", s.SelectionName != "" && s.Kind != Selection, "selection")
	only("selection_id", s.SelectionID != "" && s.Kind != Selection, "selection")

	switch s.Kind {
	case Local:
		if e := checkID("device", string(s.Device)); e != nil {
			bad = append(bad, e)
		}
	case Group:
		if e := checkID("group", string(s.Group)); e != nil {
			bad = append(bad, e)
		}
		if s.GroupOnly && s.DistributeToServers {
			add("distribute_to_servers", "true", "only allowed when distributing to subgroups (group_only must be false)")
		}
		if s.GroupOnly && len(s.ExcludedGroups) > 0 {
			add("excluded_groups", "", "only allowed when distributing to subgroups (group_only must be false)")
		}
		if len(s.ExcludedGroups) > MaxExcludedGroups {
			add("excluded_groups", strconv.Itoa(len(s.ExcludedGroups))+" entries", fmt.Sprintf("must have at most %d entries", MaxExcludedGroups))
			break
		}
		seen := make(map[GroupID]int, len(s.ExcludedGroups))
		for i, g := range s.ExcludedGroups {
			f := fmt.Sprintf("excluded_groups[%d]", i)
			if e := checkID(f, string(g)); e != nil {
				bad = append(bad, e)
				continue
			}
			if g == s.Group {
				add(f, string(g), "must be a strict subgroup of group "+strconv.Quote(string(s.Group))+", not the group itself")
			}
			if j, dup := seen[g]; dup {
				add(f, string(g), fmt.Sprintf("duplicate of excluded_groups[%d]", j))
			}
			seen[g] = i
		}
	case Devices:
		switch {
		case len(s.Devices) == 0:
			add("devices", "", "must list at least one device")
		case len(s.Devices) > MaxListLength:
			add("devices", strconv.Itoa(len(s.Devices))+" entries", fmt.Sprintf("must have at most %d entries", MaxListLength))
		default:
			seen := make(map[DeviceID]int, len(s.Devices))
			for i, d := range s.Devices {
				f := fmt.Sprintf("devices[%d]", i)
				if e := checkID(f, string(d)); e != nil {
					bad = append(bad, e)
					continue
				}
				if j, dup := seen[d]; dup {
					add(f, string(d), fmt.Sprintf("duplicate of devices[%d]", j))
				}
				seen[d] = i
			}
		}
	case Addresses:
		switch {
		case len(s.Addresses) == 0:
			add("addresses", "", "must list at least one address")
		case len(s.Addresses) > MaxListLength:
			add("addresses", strconv.Itoa(len(s.Addresses))+" entries", fmt.Sprintf("must have at most %d entries", MaxListLength))
		default:
			for i, a := range s.Addresses {
				f := fmt.Sprintf("addresses[%d]", i)
				// An Address built by hand (not by ParseAddress) is
				// re-checked through its text form.
				if p, err := ParseAddress(a.String()); err != nil || !sameAddress(p, a) {
					add(f, clip(a.String()), "not a valid address: build it with ParseAddress")
				}
			}
		}
	case Selection:
		if s.SelectionID != "" {
			if s.Selection != "" {
				add("selection", "", "only one of selection (an inline expression) and selection_id (a saved selection) may be set")
			}
			if s.SelectionName != "" {
				add("selection_name", "", "only allowed with an inline selection: a saved selection has its own name")
			}
			bad = append(bad, prefixed("selection_id", checkSelectionID(s.SelectionID))...)
			break
		}
		if _, err := compileCached(s.Selection); err != nil {
			bad = append(bad, flatten(err)...)
		}
		if len(s.SelectionName) > MaxSelectionLength {
			add("selection_name", "", fmt.Sprintf("must be at most %d bytes", MaxSelectionLength))
		}
	}
	return bad.Err()
}

func sameAddress(a, b Address) bool {
	return a.Kind == b.Kind && a.From == b.From && a.To == b.To && a.Prefix == b.Prefix && a.Name == b.Name
}

func checkID(field, id string) *ValidationError {
	switch {
	case id == "":
		return errs.Invalid(field, "", "is required")
	case len(id) > MaxIDLength:
		return errs.Invalid(field, clip(id), fmt.Sprintf("must be at most %d bytes", MaxIDLength))
	}
	return nil
}

// flatten returns the ValidationErrors in err as a list.
func flatten(err error) ValidationErrors {
	switch e := err.(type) {
	case *ValidationError:
		return ValidationErrors{e}
	case ValidationErrors:
		return e
	default:
		return ValidationErrors{errs.Invalid("selection", "", err.Error())}
	}
}

// prefixed renames the field of each error to field.
func prefixed(field string, bad ValidationErrors) ValidationErrors {
	for _, e := range bad {
		e.Field = field
	}
	return bad
}
