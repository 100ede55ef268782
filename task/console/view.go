package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

// Redacted is what the console shows instead of a secret value.
const Redacted = "[redacted]"

// sealedPrefix starts the text form of a sealed credential.
const sealedPrefix = "tfsealed:"

// field is one row of a settings table.
type field struct {
	Name   string
	Value  string
	Secret bool
}

func (c *Console) funcs() template.FuncMap {
	return template.FuncMap{
		"path": func(parts ...string) string {
			var b strings.Builder
			b.WriteString(c.cfg.Prefix)
			for _, p := range parts {
				b.WriteByte('/')
				b.WriteString(url.PathEscape(p))
			}
			return b.String()
		},
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.In(c.loc).Format("2006-01-02 15:04:05 MST")
		},
		"pct":   func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
		"width": func(f float64) template.CSS { return template.CSS(fmt.Sprintf("width:%.2f%%", min(max(f, 0), 100))) },
		"num":   func(n int) string { return groupDigits(int64(n)) },
		"class": stateClass,
		"count": func(st task.Statistics, s string) string { return groupDigits(int64(st.ByState[task.State(s)])) },
		"errors": func(st task.Statistics) string {
			n := 0
			for s, v := range st.ByState {
				if s.IsError() {
					n += v
				}
			}
			return groupDigits(int64(n))
		},
		"slice2": func(a, b revisionRow) []revisionRow { return []revisionRow{a, b} },
		"list":   func(s ...string) []string { return s },
	}
}

// groupDigits writes n with thousands separators.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// generalFields are the task's general settings, without secrets: the
// run-as account shows its name and whether a password is set, never the
// password or its sealed form.
func generalFields(t *task.Task) []field {
	acct := "Default account"
	if t.Account.Name != "" {
		acct = t.Account.Name
		if !t.Account.Password.IsZero() {
			acct += " (password set, not shown)"
		}
	}
	out := []field{
		{Name: "Name", Value: t.Name},
		{Name: "Description", Value: t.Description},
		{Name: "Application", Value: strings.TrimSpace(t.Application + " " + t.ApplicationVersion)},
		{Name: "Task type", Value: t.Type},
		{Name: "Kind", Value: string(t.Kind())},
		{Name: "Run as", Value: acct},
		{Name: "Suspended", Value: strconv.FormatBool(t.Suspended)},
		{Name: "Revision", Value: strconv.FormatInt(t.Revision, 10)},
		{Name: "Created", Value: t.CreatedAt.UTC().Format(time.RFC3339) + " by " + t.CreatedBy},
		{Name: "Updated", Value: t.UpdatedAt.UTC().Format(time.RFC3339) + " by " + t.UpdatedBy},
	}
	out = append(out, jsonFields("restart", t.Restart, nil)...)
	out = append(out, jsonFields("notifications", t.Notifications, nil)...)
	for i, e := range t.Security.ACL {
		out = append(out, field{Name: fmt.Sprintf("security.acl[%d]", i), Value: fmt.Sprintf("%s: allow %v, deny %v", e.Principal, e.Allow, e.Deny)})
	}
	return out
}

// settingsFields flattens the type-specific settings into rows; values
// credentials.ScanSettings flags, Secret values and sealed blobs are shown
// as Redacted.
func settingsFields(settings any) []field {
	secret := map[string]bool{}
	for _, f := range credentials.ScanSettings(settings) {
		secret[f.Path] = true
	}
	// Scanning the decoded JSON as well catches secret-looking names in
	// settings kept as raw JSON.
	if b, err := json.Marshal(settings); err == nil {
		var generic any
		if json.Unmarshal(b, &generic) == nil {
			for _, f := range credentials.ScanSettings(generic) {
				secret[f.Path] = true
			}
		}
	}
	return jsonFields("", settings, secret)
}

// maxFields bounds the rows of one settings table.
const maxFields = 2000

func jsonFields(root string, v any, secret map[string]bool) []field {
	b, err := json.Marshal(v)
	if err != nil {
		return []field{{Name: root, Value: "(cannot be shown)"}}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return []field{{Name: root, Value: "(cannot be shown)"}}
	}
	var out []field
	var walk func(path string, x any, hidden bool)
	walk = func(path string, x any, hidden bool) {
		if len(out) >= maxFields {
			return
		}
		hidden = hidden || secret[path]
		switch y := x.(type) {
		case map[string]any:
			keys := make([]string, 0, len(y))
			for k := range y {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			if len(keys) == 0 {
				out = append(out, field{Name: path, Value: "{}"})
			}
			for _, k := range keys {
				walk(joinKey(path, k), y[k], hidden)
			}
		case []any:
			if len(y) == 0 {
				out = append(out, field{Name: path, Value: "[]"})
			}
			for i, e := range y {
				walk(path+"["+strconv.Itoa(i)+"]", e, hidden)
			}
		default:
			val := ""
			switch z := y.(type) {
			case nil:
				val = "null"
			case string:
				val = z
				if strings.HasPrefix(z, sealedPrefix) {
					hidden = true
				}
			default:
				val = fmt.Sprint(z)
			}
			if hidden {
				val = Redacted
			}
			out = append(out, field{Name: path, Value: val, Secret: hidden})
		}
	}
	walk(root, x, false)
	return out
}

var identKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// joinKey builds the dotted path credentials.ScanSettings reports.
func joinKey(path, key string) string {
	if !identKey.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// scopeView summarises a scope; long lists show their first entries.
type scopeView struct {
	Kind          scope.Kind
	Rows          []field
	List          []string
	More          int
	ListName      string
	SelectionName string
}

// maxScopeRows is how many entries of a device or address list the task
// page shows.
const maxScopeRows = 20

func scopeOf(s scope.Scope) scopeView {
	v := scopeView{Kind: s.Kind}
	switch s.Kind {
	case scope.Local:
		v.Rows = append(v.Rows, field{Name: "Device", Value: string(s.Device)})
	case scope.Group:
		v.Rows = append(v.Rows, field{Name: "Administration group", Value: string(s.Group)},
			field{Name: "Distribute to subgroups", Value: strconv.FormatBool(!s.GroupOnly)},
			field{Name: "Distribute to secondary and virtual Administration Servers", Value: strconv.FormatBool(s.DistributeToServers)})
		v.ListName = "Exclusions from scope"
		for i, g := range s.ExcludedGroups {
			if i == maxScopeRows {
				break
			}
			v.List = append(v.List, string(g))
		}
		v.More = max(len(s.ExcludedGroups)-maxScopeRows, 0)
	case scope.Devices:
		v.ListName = fmt.Sprintf("Devices (%s)", groupDigits(int64(len(s.Devices))))
		for i, d := range s.Devices {
			if i == maxScopeRows {
				break
			}
			v.List = append(v.List, string(d))
		}
		v.More = max(len(s.Devices)-maxScopeRows, 0)
	case scope.Addresses:
		v.ListName = fmt.Sprintf("Addresses (%s)", groupDigits(int64(len(s.Addresses))))
		for i, a := range s.Addresses {
			if i == maxScopeRows {
				break
			}
			v.List = append(v.List, a.String())
		}
		v.More = max(len(s.Addresses)-maxScopeRows, 0)
	case scope.Selection:
		if s.SelectionID != "" {
			// A saved selection: its name and expression live in the
			// inventory and may change; show the reference.
			v.Rows = append(v.Rows, field{Name: "Saved device selection", Value: string(s.SelectionID)})
			break
		}
		v.Rows = append(v.Rows, field{Name: "Device selection", Value: s.SelectionName}, field{Name: "Expression", Value: s.Selection})
	case scope.Server:
		v.Rows = append(v.Rows, field{Name: "Runs on", Value: "the Administration Server"})
	}
	return v
}

// scheduleView is the schedule section: its settings and the next
// activations in the server's zone and in a chosen device's zone.
type scheduleView struct {
	Kind    schedule.Kind
	Fields  []field
	Event   bool
	Zones   []zoneView
	Device  string
	Error   string
	Applies string
}

// zoneView lists the next activations in one zone.
type zoneView struct {
	Title   string
	Zone    string
	Applies bool
	Times   []activation
}

// activation is one next start; DST is set when the zone's UTC offset
// differs from the previous row's (or from now's, for the first row).
type activation struct {
	Local string
	UTC   string
	DST   string
}

func (c *Console) scheduleOf(q *req, t *task.Task, dev scope.DeviceID) scheduleView {
	s := t.Schedule
	v := scheduleView{Kind: s.Kind, Fields: jsonFields("schedule", s, nil), Event: s.Event(), Device: string(dev)}
	now := c.clk.Now()
	runsOnServer := t.RunsOnServer()
	if runsOnServer {
		v.Applies = "This task runs on the Administration Server, by the server's local time."
	} else if s.UsesLocalTime() {
		v.Applies = "This task runs on each device by the device's local time."
	}
	v.Zones = append(v.Zones, c.zone("Administration Server", s, now, c.loc, runsOnServer || !s.UsesLocalTime()))
	if dev == "" {
		return v
	}
	if c.cfg.Inventory == nil {
		v.Error = "The console has no device inventory, so it cannot show a device's zone."
		return v
	}
	d, err := c.cfg.Inventory.Device(q.ctx(), dev)
	if err != nil {
		v.Error = "There is no device with this id."
		return v
	}
	loc := time.UTC
	if d.TimeZone != "" {
		if l, err := time.LoadLocation(d.TimeZone); err == nil {
			loc = l
		} else {
			v.Error = fmt.Sprintf("The device's time zone %q is unknown here; UTC is shown.", d.TimeZone)
		}
	}
	v.Zones = append(v.Zones, c.zone("Device "+string(dev), s, now, loc, !runsOnServer && s.UsesLocalTime()))
	return v
}

func (c *Console) zone(title string, s schedule.Schedule, now time.Time, loc *time.Location, applies bool) zoneView {
	z := zoneView{Title: title, Zone: loc.String(), Applies: applies}
	_, prev := now.In(loc).Zone()
	for _, at := range s.Upcoming(now, loc, c.cfg.Upcoming) {
		l := at.In(loc)
		name, off := l.Zone()
		a := activation{Local: l.Format("Mon 2006-01-02 15:04 ") + name, UTC: at.UTC().Format("2006-01-02 15:04Z")}
		if off != prev {
			a.DST = fmt.Sprintf("clock change: UTC%s → UTC%s", offset(prev), offset(off))
		}
		prev = off
		z.Times = append(z.Times, a)
	}
	return z
}

func offset(sec int) string {
	sign := "+"
	if sec < 0 {
		sign, sec = "-", -sec
	}
	return fmt.Sprintf("%s%02d:%02d", sign, sec/3600, sec%3600/60)
}

// stateClass is the CSS class of a result state.
func stateClass(s task.State) string {
	switch {
	case s.IsError():
		return "bad"
	case s == task.Completed:
		return "good"
	case s == task.CompletedWithWarnings || s == task.RestartRequired:
		return "warn"
	case slices.Contains([]task.State{task.Running, task.Pending, task.Paused}, s):
		return "busy"
	}
	return "idle"
}
