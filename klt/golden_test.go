package klt_test

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/klt"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// cmpOpts compares tasks: nil and empty lists are the same setting, and
// sealed passwords compare by their methods.
var cmpOpts = []cmp.Option{cmpopts.EquateEmpty(), cmpopts.IgnoreUnexported(credentials.Sealed{}), cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})}

// roundTripDiff compares an import with the exported task, except what an
// import does not carry: the id, the scope (chosen on Commit), timestamps,
// revisions and the password (AccountName carries the account's name).
func roundTripDiff(orig *task.Task, imp *klt.Import) string {
	want := *orig
	want.ID, want.Revision, want.SettingsRevision = "", 0, 0
	want.CreatedAt, want.UpdatedAt, want.CreatedBy, want.UpdatedBy = time.Time{}, time.Time{}, "", ""
	want.Scope = scope.Scope{}
	want.Account = credentials.Account{}
	// KLPRSS_EVPNotifications writes the effective history level and
	// retention: an explicit default comes back as the zero value.
	if want.Notifications.History == task.DefaultHistory {
		want.Notifications.History = ""
	}
	if want.Notifications.RetentionDays == task.DefaultRetentionDays {
		want.Notifications.RetentionDays = 0
	}
	d := cmp.Diff(&want, &imp.Task, cmpOpts...)
	if imp.AccountName != orig.Account.Name {
		d += "\naccount name: " + imp.AccountName + " != " + orig.Account.Name
	}
	if imp.SourceScope == nil {
		d += "\nno source scope"
	} else if sd := cmp.Diff(orig.Scope, *imp.SourceScope, cmpOpts...); sd != "" {
		d += "\nsource scope (-want +got):\n" + sd
	}
	return d
}

// reexport exports an imported task again, as a console would after the
// administrator re-entered the credentials and kept the file's scope.
func reexport(t testing.TB, reg *task.Registry, imp *klt.Import, acct credentials.Account) []byte {
	t.Helper()
	x := imp.Task
	if imp.SourceScope != nil {
		x.Scope = *imp.SourceScope
	}
	x.Account = acct
	out, _, err := klt.Export(&x, lookup(t, reg, &x), klt.ExportOptions{Time: exportTime, Extra: imp.Extra})
	must(t, err)
	return out
}

func scheduleOf(kind schedule.Kind) schedule.Schedule {
	s := schedule.Default(kind, start, time.UTC)
	switch kind {
	case schedule.Immediately:
		s.SavedAt = start
	case schedule.NthWeekday:
		s.Weeks = schedule.FirstWeek | schedule.LastWeek
		s.Weekdays = schedule.NewWeekdays(time.Tuesday)
	case schedule.OnTaskCompletion:
		s.TaskID = "task-00007"
		s.Status = schedule.Failed
	case schedule.OnVirusOutbreak:
		s.AppTypes = schedule.MailSystems | schedule.PerimeterDefense
	}
	return s
}

type goldenCase struct {
	name string
	task *task.Task
}

func goldenCases(t testing.TB) []goldenCase {
	var cases []goldenCase
	for _, k := range schedule.Kinds {
		x := fullTask(t, nil)
		x.Name = "Scan " + string(k)
		x.Schedule = scheduleOf(k)
		x.Settings = &ScanSettings{MaxFileSizeMB: 100, Action: "disinfect"}
		cases = append(cases, goldenCase{"schedule_" + string(k), x})
	}
	addr := func(s string) scope.Address {
		a, err := scope.ParseAddress(s)
		must(t, err)
		return a
	}
	scopes := []struct {
		name string
		sc   scope.Scope
	}{
		{"local", scope.Scope{Kind: scope.Local, Device: "dev-01"}},
		{"group", scope.Scope{Kind: scope.Group, Group: "42", ExcludedGroups: []scope.GroupID{"43", "lab-07"}, DistributeToServers: true}},
		{"group_only", scope.Scope{Kind: scope.Group, Group: "office", GroupOnly: true}},
		{"devices", scope.Scope{Kind: scope.Devices, Devices: []scope.DeviceID{"dev-01", "dev-03"}}},
		{"addresses", scope.Scope{Kind: scope.Addresses, Addresses: []scope.Address{addr("10.0.0.0/24"), addr("10.1.0.1-10.1.0.9"), addr("PC01"), addr("pc02.example.com"), addr("2001:db8::7")}}},
		{"selection", scope.Scope{Kind: scope.Selection, Selection: `"accounting" in device.tags && device.os.name.startsWith("Windows 11")`, SelectionName: "Accounting on Windows 11"}},
	}
	for _, s := range scopes {
		x := fullTask(t, nil)
		x.Name = "Update " + s.name
		x.Type = "update"
		x.Settings = UpdateSettings{Source: "https://updates.example.com/kes"}
		x.Scope = s.sc
		if s.sc.Kind != scope.Group {
			x.Security = task.Security{ACL: []task.AccessEntry{{Principal: "helpdesk", Allow: []task.Permission{task.PermRead, task.PermExecute}, Deny: []task.Permission{task.PermDelete}}}}
		}
		cases = append(cases, goldenCase{"scope_" + s.name, x})
	}
	x := fullTask(t, nil)
	x.Application, x.ApplicationVersion, x.Type, x.Settings = appAgent, "", "inventory", nil
	x.Suspended = true
	x.Description = ""
	cases = append(cases, goldenCase{"no_settings_suspended", x})
	return cases
}

// TestGolden pins the encoding of one task of every schedule kind and
// every scope kind (run with -update to rewrite), and checks that each
// file imports to the same task and exports to the same bytes again.
func TestGolden(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	for _, c := range goldenCases(t) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out, _, err := klt.Export(c.task, lookup(t, reg, c.task), klt.ExportOptions{Time: exportTime})
			must(t, err)
			path := filepath.Join("testdata", "golden", c.name+".klt")
			if *update {
				must(t, os.MkdirAll(filepath.Dir(path), 0o755))
				must(t, os.WriteFile(path, out, 0o644))
			}
			want, err := os.ReadFile(path)
			must(t, err)
			if d := cmp.Diff(string(want), string(out)); d != "" {
				t.Fatalf("export differs from %s (-golden +got):\n%s", path, d)
			}
			imp, err := klt.Parse(bytes.NewReader(want), reg, klt.ParseOptions{})
			must(t, err)
			if d := roundTripDiff(c.task, imp); d != "" {
				t.Fatalf("import differs from the exported task (-want +got):\n%s", d)
			}
			if len(imp.Extra) != 0 {
				t.Fatalf("a file of this version has unknown fields: %v", imp.Extra)
			}
			if again := reexport(t, reg, imp, c.task.Account); !bytes.Equal(again, want) {
				t.Fatalf("export -> import -> export is not byte-identical:\n%s", cmp.Diff(string(want), string(again)))
			}
		})
	}
}
