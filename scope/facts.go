package scope

import (
	"fmt"
	"strconv"
	"strings"
)

// Limits on the facts of one device. The inventories of this module
// (scope/inmem, storage/sqlstore, storage/memstore) refuse to store a
// device beyond them (CheckDeviceFacts), and the static cost estimate of
// device selections assumes them (see MaxSelectionCost), so the cost limit
// holds for every device they hold. Program.Evaluate also refuses to read
// a fact beyond them, from any Inventory: the selection is Unknown for
// that device.
const (
	// MaxFactLength is the longest string fact, in bytes: the id, group
	// id, names, time zone, server id and role, every OS field, every tag,
	// every software name, version and vendor, every application name.
	MaxFactLength = 256
	// MaxFactListLength is the most entries of a device's IPs, Tags,
	// Software and Applications.
	MaxFactListLength = 10_000
)

// maxReportedFacts bounds the errors CheckDeviceFacts and
// DropOversizeDevices report, so an error message stays short whatever
// the input.
const maxReportedFacts = 20

// factsWithinLimits is the allocation-free fast path of CheckDeviceFacts.
func factsWithinLimits(d *Device) bool {
	if len(d.ID) > MaxFactLength || len(d.GroupID) > MaxFactLength || len(d.NetBIOSName) > MaxFactLength ||
		len(d.DNSName) > MaxFactLength || len(d.TimeZone) > MaxFactLength || len(d.Server.ID) > MaxFactLength ||
		len(d.Server.Role) > MaxFactLength {
		return false
	}
	if len(d.IPs) > MaxFactListLength || len(d.Tags) > MaxFactListLength || len(d.Software) > MaxFactListLength ||
		len(d.Applications) > MaxFactListLength {
		return false
	}
	if o := d.OS; o != nil && (len(o.Name) > MaxFactLength || len(o.Version) > MaxFactLength ||
		len(o.Build) > MaxFactLength || len(o.Platform) > MaxFactLength) {
		return false
	}
	for _, t := range d.Tags {
		if len(t) > MaxFactLength {
			return false
		}
	}
	for i := range d.Software {
		if s := &d.Software[i]; len(s.Name) > MaxFactLength || len(s.Version) > MaxFactLength || len(s.Vendor) > MaxFactLength {
			return false
		}
	}
	for k := range d.Applications {
		if len(k) > MaxFactLength {
			return false
		}
	}
	return true
}

// CheckDeviceFacts reports the facts of d beyond MaxFactLength and
// MaxFactListLength: nil, or a *ValidationError or ValidationErrors
// (matching ErrInvalid) whose Field is the fact's path in the device
// ("os.name", "tags[3]", "software[2].vendor", "applications", "tags"
// for a list with too many entries), with the offending value clipped.
// At most 20 facts are reported. An Inventory implementation calls it
// before storing a device.
func CheckDeviceFacts(d *Device) error {
	if factsWithinLimits(d) {
		return nil
	}
	var bad ValidationErrors
	str := func(field, v string) {
		if len(v) > MaxFactLength && len(bad) < maxReportedFacts {
			bad = append(bad, &ValidationError{Field: field, Value: clip(v),
				Reason: fmt.Sprintf("is %d bytes, more than %d (MaxFactLength)", len(v), MaxFactLength)})
		}
	}
	list := func(field string, n int) {
		if n > MaxFactListLength && len(bad) < maxReportedFacts {
			bad = append(bad, &ValidationError{Field: field, Value: strconv.Itoa(n) + " entries",
				Reason: fmt.Sprintf("must have at most %d entries (MaxFactListLength)", MaxFactListLength)})
		}
	}
	str("id", string(d.ID))
	str("group_id", string(d.GroupID))
	str("netbios_name", d.NetBIOSName)
	str("dns_name", d.DNSName)
	str("time_zone", d.TimeZone)
	str("server.id", d.Server.ID)
	str("server.role", string(d.Server.Role))
	if o := d.OS; o != nil {
		str("os.name", o.Name)
		str("os.version", o.Version)
		str("os.build", o.Build)
		str("os.platform", o.Platform)
	}
	list("ips", len(d.IPs))
	list("tags", len(d.Tags))
	list("software", len(d.Software))
	list("applications", len(d.Applications))
	for i, t := range d.Tags {
		if len(bad) >= maxReportedFacts {
			break
		}
		str("tags["+strconv.Itoa(i)+"]", t)
	}
	for i := range d.Software {
		if len(bad) >= maxReportedFacts {
			break
		}
		s := &d.Software[i]
		p := "software[" + strconv.Itoa(i) + "]"
		str(p+".name", s.Name)
		str(p+".version", s.Version)
		str(p+".vendor", s.Vendor)
	}
	for k := range d.Applications {
		if len(k) > MaxFactLength {
			str("applications", k) // one report: map order is random
			break
		}
	}
	return bad.Err()
}

// OversizeDevicesError is what an inventory's PutDevices returns when the
// facts of some devices exceed MaxFactLength or MaxFactListLength
// (CheckDeviceFacts): those devices were not stored, and every other
// device of the call was. It matches ErrInvalid.
type OversizeDevicesError struct {
	// Devices are the positions in the call of the devices not stored,
	// ascending.
	Devices []int
	// Errors name the oversize facts ("devices[3].os.name"), at most 20.
	Errors ValidationErrors
}

func (e *OversizeDevicesError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d devices not stored: facts over the inventory limits: ", len(e.Devices))
	b.WriteString(e.Errors.Error())
	return b.String()
}

// Is makes the error match ErrInvalid.
func (e *OversizeDevicesError) Is(target error) bool { return target == ErrInvalid }

// Unwrap exposes Errors to errors.As.
func (e *OversizeDevicesError) Unwrap() error { return e.Errors }

// DropOversizeDevices returns devices without those whose facts exceed the
// limits, and an *OversizeDevicesError naming them (nil when there are
// none, and then devices itself is returned). Inventories call it in
// PutDevices after their own checks, then store what it returns.
func DropOversizeDevices(devices []Device) ([]Device, error) {
	first := -1
	for i := range devices {
		if !factsWithinLimits(&devices[i]) {
			first = i
			break
		}
	}
	if first < 0 {
		return devices, nil
	}
	kept := make([]Device, first, len(devices)-1)
	copy(kept, devices[:first])
	e := &OversizeDevicesError{}
	for i := first; i < len(devices); i++ {
		d := &devices[i]
		if factsWithinLimits(d) {
			kept = append(kept, *d)
			continue
		}
		e.Devices = append(e.Devices, i)
		if len(e.Errors) >= maxReportedFacts {
			continue
		}
		p := "devices[" + strconv.Itoa(i) + "]."
		switch err := CheckDeviceFacts(d).(type) {
		case *ValidationError:
			c := *err
			c.Field = p + c.Field
			e.Errors = append(e.Errors, &c)
		case ValidationErrors:
			for _, v := range err {
				if len(e.Errors) >= maxReportedFacts {
					break
				}
				c := *v
				c.Field = p + c.Field
				e.Errors = append(e.Errors, &c)
			}
		}
	}
	return kept, e
}
