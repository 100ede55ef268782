package task_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

func TestCreateAppliesSeedDefaults(t *testing.T) {
	t.Parallel()
	b := setup(t)
	got, err := b.m.Create(b.ctx, b.admin, groupScan("Weekly scan"))
	must(t, err)
	if got.ID != "task-0001" || got.Revision != 1 || got.SettingsRevision != 1 {
		t.Fatalf("id/revision = %q/%d/%d", got.ID, got.Revision, got.SettingsRevision)
	}
	if got.Kind() != task.Group || got.Schedule.Kind != schedule.Manual {
		t.Fatalf("kind %s, schedule %s; want group, manual (the product documentation's default)", got.Kind(), got.Schedule.Kind)
	}
	if d := cmp.Diff(restart.Default(), got.Restart); d != "" {
		t.Fatalf("restart policy is not the default (-want +got):\n%s", d)
	}
	if !got.Account.IsDefault() {
		t.Fatal("account is not the default account")
	}
	if d := cmp.Diff(&ScanSettings{MaxFileSizeMB: 100, Action: "disinfect"}, got.Settings); d != "" {
		t.Fatalf("settings are not the type's defaults (-want +got):\n%s", d)
	}
	if got.ApplicationVersion != "12.1" || got.CreatedBy != "admin" || !got.CreatedAt.Equal(start) {
		t.Fatalf("metadata = %q %q %v", got.ApplicationVersion, got.CreatedBy, got.CreatedAt)
	}
	keep, stored := got.Notifications.Retention()
	if !stored || keep != 30*24*time.Hour || got.Notifications.Level() != task.HistoryProgress {
		t.Fatalf("notification defaults: stored=%v keep=%v level=%s", stored, keep, got.Notifications.Level())
	}
	again, err := b.m.Get(b.ctx, b.admin, got.ID)
	must(t, err)
	if d := cmp.Diff(got, again, cmpopts.IgnoreUnexported(credentials.Sealed{})); d != "" {
		t.Fatalf("Get differs from Create (-create +get):\n%s", d)
	}
}

func TestValidationNamesEveryField(t *testing.T) {
	t.Parallel()
	b := setup(t)
	long := strings.Repeat("x", task.MaxNameLength+1)
	cases := []struct {
		name   string
		mutate func(*task.Task)
		field  string
	}{
		{"empty name", func(x *task.Task) { x.Name = " " }, "name"},
		{"long name", func(x *task.Task) { x.Name = long }, "name"},
		{"control character", func(x *task.Task) { x.Name = "a\x07b" }, "name"},
		{"padded name", func(x *task.Task) { x.Name = " scan" }, "name"},
		{"unknown type", func(x *task.Task) { x.Type = "defrag" }, "type"},
		{"unknown application", func(x *task.Task) { x.Application = "Nope" }, "type"},
		{"schedule not allowed by type", func(x *task.Task) {
			x.Type, x.Settings = "update", nil
			x.Schedule = schedule.Default(schedule.Weekly, start, time.UTC)
		}, "schedule.kind"},
		{"bad schedule", func(x *task.Task) {
			x.Schedule = schedule.Default(schedule.EveryMinutes, start, time.UTC)
			x.Schedule.Every = 1441
		}, "schedule.every"},
		{"server scope for a device task", func(x *task.Task) { x.Scope = scope.Scope{Kind: scope.Server} }, "scope.kind"},
		{"server task on a group", func(x *task.Task) { x.Application, x.Type, x.Settings = appServer, "backup", nil }, "scope.kind"},
		{"excluded group outside the group", func(x *task.Task) { x.Scope.ExcludedGroups = []scope.GroupID{"lab"} }, "scope.excluded_groups[0]"},
		{"unknown group", func(x *task.Task) { x.Scope.Group = "nowhere" }, "scope.group"},
		{"servers without subgroups", func(x *task.Task) { x.Scope.GroupOnly, x.Scope.DistributeToServers = true, true }, "scope.distribute_to_servers"},
		{"restart minutes out of range", func(x *task.Task) {
			x.Restart = restart.Default()
			x.Restart.RepeatPrompt.Minutes = 0
		}, "restart.repeat_prompt.minutes"},
		{"retention out of range", func(x *task.Task) { x.Notifications.RetentionDays = 4000 }, "notifications.retention_days"},
		{"history level", func(x *task.Task) { x.Notifications.History = "some" }, "notifications.history"},
		{"email", func(x *task.Task) { x.Notifications.Email = []string{"not an address"} }, "notifications.email[0]"},
		{"acl on a group task", func(x *task.Task) {
			x.Security.ACL = []task.AccessEntry{{Principal: "ops", Allow: []task.Permission{task.PermRead}}}
		}, "security.acl"},
		{"settings range", func(x *task.Task) { x.Settings = &ScanSettings{MaxFileSizeMB: 0, Action: "report"} }, "settings.max_file_size_mb"},
		{"settings oneof", func(x *task.Task) { x.Settings = &ScanSettings{MaxFileSizeMB: 5, Action: "burn"} }, "settings.action"},
		{"settings dive", func(x *task.Task) {
			x.Settings = &ScanSettings{MaxFileSizeMB: 5, Action: "report", Paths: []string{"C:\\", ""}}
		}, "settings.paths[1]"},
		{"settings of another type", func(x *task.Task) { x.Settings = UpdateSettings{Source: "x"} }, "settings"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := groupScan("Scan " + tc.name)
			tc.mutate(&x)
			_, err := b.m.Create(b.ctx, b.admin, x)
			if !errors.Is(err, task.ErrInvalid) {
				t.Fatalf("Create = %v, want ErrInvalid", err)
			}
			var fields []string
			var ve *task.ValidationError
			var list task.ValidationErrors
			switch {
			case errors.As(err, &list):
				for _, e := range list {
					fields = append(fields, e.Field)
				}
			case errors.As(err, &ve):
				fields = []string{ve.Field}
			}
			found := false
			for _, f := range fields {
				if f == tc.field {
					found = true
				}
			}
			if !found {
				t.Fatalf("error %q names fields %v, want %q", err, fields, tc.field)
			}
		})
	}
	if page, _ := b.m.List(b.ctx, b.admin, task.ListParams{}); len(page.Applications) != 0 {
		t.Fatal("a rejected task was stored")
	}
}

func TestNamesAreUniquePerNamespace(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.m.Create(b.ctx, b.admin, groupScan("Scan"))
	must(t, err)
	_, err = b.m.Create(b.ctx, b.admin, groupScan("SCAN"))
	if !errors.Is(err, task.ErrConflict) {
		t.Fatalf("duplicate name (case-insensitive) = %v, want ErrConflict", err)
	}
	local := func(dev scope.DeviceID) task.Task {
		return task.Task{Name: "Scan", Application: appES, Type: "virus_scan", Scope: scope.Scope{Kind: scope.Local, Device: dev}}
	}
	_, err = b.m.Create(b.ctx, b.admin, local("dev-01"))
	must(t, err)
	_, err = b.m.Create(b.ctx, b.admin, local("dev-02"))
	must(t, err) // a local task's name is unique on its device only
	_, err = b.m.Create(b.ctx, b.admin, local("dev-01"))
	if !errors.Is(err, task.ErrConflict) {
		t.Fatalf("duplicate local name on one device = %v, want ErrConflict", err)
	}
}

func TestUpdateRevisionsAndConflicts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	orig, err := b.m.Create(b.ctx, b.admin, groupScan("Scan"))
	must(t, err)
	b.clk.Add(time.Hour)
	edit := *orig
	edit.Description = "nightly"
	edit.Schedule = schedule.Default(schedule.Weekly, b.clk.Now(), time.UTC)
	s := *orig.Settings.(*ScanSettings)
	s.ScanArchives = true
	edit.Settings = &s
	v2, err := b.m.Update(b.ctx, task.Actor{ID: "alice"}, edit)
	must(t, err)
	if v2.Revision != 2 || v2.SettingsRevision != 2 || v2.UpdatedBy != "alice" || !v2.UpdatedAt.Equal(start.Add(time.Hour)) {
		t.Fatalf("after update: %+v", v2)
	}
	// A second writer that read revision 1 loses, and nothing is lost.
	stale := *orig
	stale.Description = "stale"
	if _, err := b.m.Update(b.ctx, b.admin, stale); !errors.Is(err, task.ErrConflict) {
		t.Fatalf("stale update = %v, want ErrConflict", err)
	}
	revs, err := b.m.Revisions(b.ctx, b.admin, orig.ID, 0, 0)
	must(t, err)
	if len(revs) != 2 || revs[1].Author != "alice" || revs[1].Action != "update" {
		t.Fatalf("revisions = %+v", revs)
	}
	var paths []string
	for _, c := range revs[1].Changes {
		paths = append(paths, c.Path)
	}
	want := []string{"description", "schedule.kind", "schedule.time", "schedule.weekdays", "settings.scan_archives"}
	if d := cmp.Diff(want, paths); d != "" {
		t.Fatalf("revision 2 changed paths (-want +got):\n%s", d)
	}
	if got := revs[1].Changes[4].String(); got != "settings.scan_archives: false -> true" {
		t.Fatalf("change text = %q", got)
	}
	// Kind, type and application cannot change.
	bad := *v2
	bad.Scope = scope.Scope{Kind: scope.Devices, Devices: []scope.DeviceID{"dev-01"}}
	if _, err := b.m.Update(b.ctx, b.admin, bad); !errors.Is(err, task.ErrInvalid) {
		t.Fatalf("kind change = %v, want ErrInvalid", err)
	}
}

func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	orig, err := b.m.Create(b.ctx, b.admin, groupScan("Scan"))
	must(t, err)
	const writers, each = 6, 5
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < each; {
				cur, err := b.m.Get(b.ctx, b.admin, orig.ID)
				if err != nil {
					t.Error(err)
					return
				}
				cur.Description = fmt.Sprintf("%s|w%d.%d", cur.Description, w, n)
				if _, err := b.m.Update(b.ctx, b.admin, *cur); err == nil {
					n++
				} else if !errors.Is(err, task.ErrConflict) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	final, err := b.m.Get(b.ctx, b.admin, orig.ID)
	must(t, err)
	if final.Revision != 1+writers*each || strings.Count(final.Description, "|") != writers*each {
		t.Fatalf("revision %d, %d edits in description; want %d and %d", final.Revision, strings.Count(final.Description, "|"), 1+writers*each, writers*each)
	}
}

func TestImmediatelyFiresOnSettingsSaveOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	x := groupScan("Now")
	x.Schedule = schedule.Default(schedule.Immediately, start.Add(-48*time.Hour), time.UTC)
	created, err := b.m.Create(b.ctx, b.admin, x)
	must(t, err)
	if !created.Schedule.SavedAt.Equal(start) {
		t.Fatalf("SavedAt = %v, want the save time %v", created.Schedule.SavedAt, start)
	}
	b.clk.Add(time.Hour)
	susp, err := b.m.Suspend(b.ctx, b.admin, created.ID)
	must(t, err)
	if !susp.Suspended || !susp.Schedule.SavedAt.Equal(start) || susp.SettingsRevision != 1 || susp.Revision != 2 {
		t.Fatalf("suspend changed the settings: saved %v settings rev %d rev %d", susp.Schedule.SavedAt, susp.SettingsRevision, susp.Revision)
	}
	if _, err := b.m.Start(b.ctx, b.admin, created.ID); !errors.Is(err, task.ErrInvalid) {
		t.Fatalf("starting a suspended task = %v, want ErrInvalid", err)
	}
	res, err := b.m.Resume(b.ctx, b.admin, created.ID)
	must(t, err)
	b.clk.Add(time.Hour)
	res.Description = "edited"
	edited, err := b.m.Update(b.ctx, b.admin, *res)
	must(t, err)
	if !edited.Schedule.SavedAt.Equal(start.Add(2*time.Hour)) || edited.SettingsRevision != edited.Revision {
		t.Fatalf("an edit must re-stamp SavedAt and the settings revision: %v %d/%d", edited.Schedule.SavedAt, edited.SettingsRevision, edited.Revision)
	}
}

func TestCopyAndDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	orig, err := b.m.Create(b.ctx, b.admin, groupScan("Scan"))
	must(t, err)
	c1, err := b.m.Copy(b.ctx, b.admin, orig.ID, "")
	must(t, err)
	c2, err := b.m.Copy(b.ctx, b.admin, orig.ID, "")
	must(t, err)
	if c1.Name != "Scan (1)" || c2.Name != "Scan (2)" || c1.ID == orig.ID {
		t.Fatalf("copies named %q, %q", c1.Name, c2.Name)
	}
	if d := cmp.Diff(orig.Settings, c1.Settings); d != "" {
		t.Fatalf("copy settings differ:\n%s", d)
	}
	revs, _ := b.m.Revisions(b.ctx, b.admin, c1.ID, 0, 0)
	if len(revs) != 1 || revs[0].Action != "copy" {
		t.Fatalf("copy revisions = %+v", revs)
	}
	if err := b.m.Delete(b.ctx, b.admin, c1.ID, 5); !errors.Is(err, task.ErrConflict) {
		t.Fatalf("delete at a stale revision = %v", err)
	}
	must(t, b.m.Delete(b.ctx, b.admin, c1.ID, 1))
	if _, err := b.m.Get(b.ctx, b.admin, c1.ID); !errors.Is(err, task.ErrNotFound) {
		t.Fatalf("Get after delete = %v", err)
	}
	c3, err := b.m.Copy(b.ctx, b.admin, orig.ID, "")
	must(t, err)
	if c3.Name != "Scan (1)" {
		t.Fatalf("freed name not reused: %q", c3.Name)
	}
}

func TestConcurrentImportsGetDistinctNames(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var wg sync.WaitGroup
	names := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x, err := b.m.Runtime().CreateWithFreeName(b.ctx, b.admin, groupScan("Imported"), task.ActionImport)
			if err != nil {
				t.Error(err)
				return
			}
			names <- x.Name
		}()
	}
	wg.Wait()
	close(names)
	seen := map[string]bool{}
	for n := range names {
		if seen[n] {
			t.Fatalf("name %q given twice", n)
		}
		seen[n] = true
	}
	for _, n := range []string{"Imported", "Imported (1)", "Imported (7)"} {
		if !seen[n] {
			t.Fatalf("names %v lack %q", seen, n)
		}
	}
}

func TestListGroupsByApplication(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 5 {
		_, err := b.m.Create(b.ctx, b.admin, groupScan(fmt.Sprintf("Scan %d", i)))
		must(t, err)
	}
	_, err := b.m.Create(b.ctx, b.admin, task.Task{Name: "Backup", Application: appServer, Type: "backup", Scope: scope.Scope{Kind: scope.Server}})
	must(t, err)
	_, err = b.m.Create(b.ctx, b.admin, task.Task{Name: "Update", Application: appES, Type: "update", Scope: scope.Scope{Kind: scope.Devices, Devices: []scope.DeviceID{"dev-01"}}})
	must(t, err)
	var got []string
	p := task.ListParams{Limit: 3}
	for pages := 0; ; pages++ {
		page, err := b.m.List(b.ctx, b.admin, p)
		must(t, err)
		for _, a := range page.Applications {
			for _, x := range a.Tasks {
				got = append(got, a.Application+"/"+x.Name)
			}
		}
		if page.Next == "" {
			break
		}
		p.After = page.Next
	}
	want := []string{appServer + "/Backup", appES + "/Scan 0", appES + "/Scan 1", appES + "/Scan 2", appES + "/Scan 3", appES + "/Scan 4", appES + "/Update"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("list (-want +got):\n%s", d)
	}
	one, err := b.m.List(b.ctx, b.admin, task.ListParams{Kind: task.Global, NameContains: "UPD"})
	must(t, err)
	if len(one.Applications) != 1 || len(one.Applications[0].Tasks) != 1 || one.Applications[0].Tasks[0].Name != "Update" {
		t.Fatalf("filtered list = %+v", one)
	}
	if _, err := b.m.List(b.ctx, b.admin, task.ListParams{After: "garbage!"}); !errors.Is(err, task.ErrInvalid) {
		t.Fatalf("bad cursor = %v", err)
	}
}

func TestStartRecordsEveryDeviceInScope(t *testing.T) {
	t.Parallel()
	b := setup(t)
	x := groupScan("Scan")
	x.Scope.ExcludedGroups = []scope.GroupID{"sales"}
	created, err := b.m.Create(b.ctx, b.admin, x)
	must(t, err)
	run, err := b.m.Start(b.ctx, b.admin, created.ID)
	must(t, err)
	if run.ID != 1 || len(run.Devices) != 3 {
		t.Fatalf("run = %+v; want run 1 on the 3 accounting devices", run)
	}
	st, err := b.m.Statistics(b.ctx, b.admin, created.ID)
	must(t, err)
	if st.Total != 3 || st.ByState[task.Pending] != 3 || st.PercentComplete != 0 {
		t.Fatalf("statistics after start = %+v", st)
	}
	// Devices report: a retried delivery changes nothing, an older update
	// does not regress.
	upd := []task.Result{
		{TaskID: created.ID, DeviceID: "dev-01", RunID: 1, Seq: 1, State: task.Running, Progress: 10},
		{TaskID: created.ID, DeviceID: "dev-01", RunID: 1, Seq: 2, State: task.Completed, Progress: 100},
		{TaskID: created.ID, DeviceID: "dev-02", RunID: 1, Seq: 1, State: task.Failed, Message: "access denied"},
		{TaskID: created.ID, DeviceID: "dev-03", RunID: 1, Seq: 1, State: task.RestartRequired},
	}
	n, err := b.m.Runtime().RecordResults(b.ctx, upd)
	must(t, err)
	if n != 4 {
		t.Fatalf("applied %d, want 4", n)
	}
	n, err = b.m.Runtime().RecordResults(b.ctx, upd)
	must(t, err)
	if n != 0 {
		t.Fatalf("a redelivery applied %d, want 0", n)
	}
	st, _ = b.m.Statistics(b.ctx, b.admin, created.ID)
	want := task.Statistics{ByState: map[task.State]int{task.Completed: 1, task.Failed: 1, task.RestartRequired: 1}, Total: 3, Finished: 3, PercentComplete: 100, RestartRequired: 1}
	if d := cmp.Diff(want, st); d != "" {
		t.Fatalf("statistics (-want +got):\n%s", d)
	}
	// Notifications: one per final result, none for the redelivery.
	if got := len(b.notes.all()); got != 3 {
		t.Fatalf("%d notifications, want 3", got)
	}
	res, err := b.m.Results(b.ctx, b.admin, created.ID, task.ResultsParams{States: []task.State{task.Failed}})
	must(t, err)
	if len(res) != 1 || res[0].DeviceID != "dev-02" || res[0].Message != "access denied" {
		t.Fatalf("failed results = %+v", res)
	}
	hist, err := b.m.History(b.ctx, b.admin, created.ID, task.HistoryParams{})
	must(t, err)
	// start event + running + 3 results (progress level keeps both).
	if len(hist) != 5 {
		t.Fatalf("history has %d events, want 5: %+v", len(hist), hist)
	}
	if _, err := b.m.Runtime().RecordResults(b.ctx, []task.Result{{TaskID: created.ID, DeviceID: "dev-01", State: "exploded"}}); !errors.Is(err, task.ErrInvalid) {
		t.Fatalf("bad state = %v", err)
	}
}

func TestNotifyErrorsOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	x := groupScan("Scan")
	x.Notifications = task.Notifications{ErrorsOnly: true, History: task.HistoryResults}
	created, err := b.m.Create(b.ctx, b.admin, x)
	must(t, err)
	_, err = b.m.Runtime().RecordResults(b.ctx, []task.Result{
		{TaskID: created.ID, DeviceID: "dev-01", RunID: 1, Seq: 1, State: task.Running},
		{TaskID: created.ID, DeviceID: "dev-01", RunID: 1, Seq: 2, State: task.Completed},
		{TaskID: created.ID, DeviceID: "dev-02", RunID: 1, Seq: 1, State: task.FailedTimeout},
	})
	must(t, err)
	got := b.notes.all()
	if len(got) != 1 || got[0].State != task.FailedTimeout || got[0].DeviceID != "dev-02" {
		t.Fatalf("notifications = %+v", got)
	}
	hist, _ := b.m.History(b.ctx, b.admin, created.ID, task.HistoryParams{})
	if len(hist) != 2 {
		t.Fatalf("results-only history kept %d events, want 2", len(hist))
	}
}

func TestSelectionRunsOnlyOnConnectedDevices(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created, err := b.m.Create(b.ctx, b.admin, task.Task{Name: "Win", Application: appES, Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Selection, Selection: `device.os.name == "Windows"`}})
	must(t, err)
	run, err := b.m.Start(b.ctx, b.admin, created.ID)
	must(t, err)
	// 10 devices, odd ones connected.
	if len(run.Devices) != 5 || len(run.Skipped) != 5 {
		t.Fatalf("run: %d started, %d skipped; want 5 and 5", len(run.Devices), len(run.Skipped))
	}
	st, _ := b.m.Statistics(b.ctx, b.admin, created.ID)
	if st.ByState[task.Missed] != 5 || st.ByState[task.Pending] != 5 {
		t.Fatalf("statistics = %+v", st)
	}
}

func TestStartForSelectedDevices(t *testing.T) {
	t.Parallel()
	b := setup(t)
	x := task.Task{Name: "Install", Application: appES, Type: "virus_scan", Scope: scope.Scope{Kind: scope.Addresses, Addresses: []scope.Address{mustAddr(t, "10.0.0.0/24")}}}
	x.Schedule = schedule.Default(schedule.Weekly, start, time.UTC)
	created, err := b.m.Create(b.ctx, b.admin, x)
	must(t, err)
	run, err := b.m.StartFor(b.ctx, b.admin, created.ID, created.Revision, []scope.DeviceID{"dev-04", "dev-02"})
	must(t, err)
	if d := cmp.Diff([]scope.DeviceID{"dev-02", "dev-04"}, run.Devices); d != "" {
		t.Fatalf("run devices (-want +got):\n%s", d)
	}
	got, _ := b.m.Get(b.ctx, b.admin, created.ID)
	if got.Scope.Kind != scope.Devices || len(got.Scope.Devices) != 2 || got.Schedule.Kind != schedule.Weekly {
		t.Fatalf("after StartFor: scope %+v schedule %s (the schedule must not change)", got.Scope, got.Schedule.Kind)
	}
	if _, err := b.m.StartFor(b.ctx, b.admin, created.ID, got.Revision, nil); !errors.Is(err, task.ErrInvalid) {
		t.Fatalf("StartFor without devices = %v", err)
	}
	grp, _ := b.m.Create(b.ctx, b.admin, groupScan("G"))
	if _, err := b.m.StartFor(b.ctx, b.admin, grp.ID, grp.Revision, []scope.DeviceID{"dev-01"}); !errors.Is(err, task.ErrInvalid) {
		t.Fatalf("StartFor on a group task = %v", err)
	}
	// Stop without an engine: pending devices are stopped.
	must(t, b.m.Stop(b.ctx, b.admin, created.ID))
	st, _ := b.m.Statistics(b.ctx, b.admin, created.ID)
	if st.ByState[task.Stopped] != 2 {
		t.Fatalf("after Stop: %+v", st)
	}
}

func mustAddr(t testing.TB, s string) scope.Address {
	a, err := scope.ParseAddress(s)
	must(t, err)
	return a
}

func TestRollbackAndCompare(t *testing.T) {
	t.Parallel()
	b := setup(t)
	v1, err := b.m.Create(b.ctx, b.admin, groupScan("Scan"))
	must(t, err)
	v1.Description = "two"
	v2, err := b.m.Update(b.ctx, b.admin, *v1)
	must(t, err)
	v2.Description = "three"
	v2.Notifications.RetentionDays = 7
	v3, err := b.m.Update(b.ctx, b.admin, *v2)
	must(t, err)
	changes, err := b.m.Compare(b.ctx, b.admin, v3.ID, 1, 3)
	must(t, err)
	want := []task.Change{
		{Path: "description", New: json.RawMessage(`"three"`)},
		{Path: "notifications.retention_days", New: json.RawMessage(`7`)},
	}
	if d := cmp.Diff(want, changes); d != "" {
		t.Fatalf("Compare 1..3 (-want +got):\n%s", d)
	}
	v4, err := b.m.Rollback(b.ctx, b.admin, v3.ID, 1, v3.Revision)
	must(t, err)
	if v4.Revision != 4 || v4.Description != "" || v4.Notifications.RetentionDays != 0 {
		t.Fatalf("rollback = rev %d desc %q", v4.Revision, v4.Description)
	}
	r4, _ := b.m.Revision(b.ctx, b.admin, v3.ID, 4)
	if r4.Action != "rollback" || len(r4.Changes) != 2 {
		t.Fatalf("rollback revision = %+v", r4)
	}
	if _, err := b.m.Rollback(b.ctx, b.admin, v3.ID, 1, 3); !errors.Is(err, task.ErrConflict) {
		t.Fatalf("rollback from a stale revision = %v", err)
	}
	if _, err := b.m.Revision(b.ctx, b.admin, v3.ID, 9); !errors.Is(err, task.ErrNotFound) {
		t.Fatalf("missing revision = %v", err)
	}
}

func TestSecretsNeverInRevisionsOrLogs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const pw1, pw2 = "Tr0ub4dor&3-first", "correct-horse-second"
	acct, err := credentials.Specify(`CORP\svc-scan`, credentials.NewSecret(pw1), b.sealer)
	must(t, err)
	x := groupScan("Scan")
	x.Account = acct
	v1, err := b.m.Create(b.ctx, b.admin, x)
	must(t, err)
	acct2, err := credentials.Specify(`CORP\svc-scan`, credentials.NewSecret(pw2), b.sealer)
	must(t, err)
	v1.Account = acct2
	_, err = b.m.Update(b.ctx, b.admin, *v1)
	must(t, err)
	revs, err := b.m.Revisions(b.ctx, b.admin, v1.ID, 0, 0)
	must(t, err)
	out, _ := json.Marshal(revs)
	text := string(out) + fmt.Sprintf("%v %+v %#v", revs, revs, revs)
	for _, pw := range []string{pw1, pw2} {
		if strings.Contains(text, pw) {
			t.Fatalf("password %q appears in revisions", pw)
		}
	}
	found := false
	for _, c := range revs[1].Changes {
		if strings.HasPrefix(c.Path, "account.password") {
			found = true
			if string(c.New) != `"[redacted]"` || string(c.Old) != `"[redacted]"` {
				t.Fatalf("password change not redacted: %s", c)
			}
		}
	}
	if !found {
		t.Fatal("the password change is not recorded as a (redacted) change")
	}
	// The stored sealed password still opens to the new password.
	got, _ := b.m.Get(b.ctx, b.admin, v1.ID)
	plain, err := b.sealer.Open(got.Account.Password)
	must(t, err)
	if plain.Reveal() != pw2 {
		t.Fatal("stored password does not open to the new password")
	}
}

func TestMergeDeviceEditAdministratorWins(t *testing.T) {
	t.Parallel()
	b := setup(t)
	x := task.Task{Name: "Local scan", Application: appES, Type: "virus_scan", Scope: scope.Scope{Kind: scope.Local, Device: "dev-01"}}
	x.Schedule = schedule.Default(schedule.Weekly, start, time.UTC)
	base, err := b.m.Create(b.ctx, b.admin, x)
	must(t, err)
	// The administrator changes the action and the description.
	adm := *base
	adm.Description = "admin text"
	s := *base.Settings.(*ScanSettings)
	s.Action = "delete"
	adm.Settings = &s
	_, err = b.m.Update(b.ctx, b.admin, adm)
	must(t, err)
	// Meanwhile the user, from revision 1, changes the action and the
	// archive scanning.
	usr := *base
	us := *base.Settings.(*ScanSettings)
	us.Action = "report"
	us.ScanArchives = true
	usr.Settings = &us
	res, err := b.m.MergeDeviceEdit(b.ctx, task.Actor{ID: "device-user"}, base.ID, 1, usr)
	must(t, err)
	got := res.Task.Settings.(*ScanSettings)
	if got.Action != "delete" || !got.ScanArchives || res.Task.Description != "admin text" {
		t.Fatalf("merged settings = %+v, description %q; want the admin's action, the user's archives, the admin's description", got, res.Task.Description)
	}
	if len(res.Conflicts) != 1 || res.Conflicts[0].Path != "settings.action" || string(res.Conflicts[0].User) != `"report"` {
		t.Fatalf("conflicts = %+v", res.Conflicts)
	}
	rev, _ := b.m.Revision(b.ctx, b.admin, base.ID, 3)
	if rev.Action != "merge" || rev.MergedUser != "device-user" || len(rev.Conflicts) != 1 {
		t.Fatalf("merge revision = %+v", rev)
	}
	grp, _ := b.m.Create(b.ctx, b.admin, groupScan("G"))
	if _, err := b.m.MergeDeviceEdit(b.ctx, task.Actor{ID: "u"}, grp.ID, 1, *grp); !errors.Is(err, task.ErrInvalid) {
		t.Fatalf("merge on a group task = %v", err)
	}
}

func TestPurgeHistoryByTaskRetention(t *testing.T) {
	t.Parallel()
	b := setup(t)
	short := groupScan("Short")
	short.Notifications = task.Notifications{RetentionDays: 1, History: task.HistoryAll}
	a, err := b.m.Create(b.ctx, b.admin, short)
	must(t, err)
	long := groupScan("Long")
	long.Notifications = task.Notifications{History: task.HistoryAll}
	c, err := b.m.Create(b.ctx, b.admin, long)
	must(t, err)
	for day := range 5 {
		_, err := b.m.Runtime().RecordEvents(b.ctx, []task.EventInput{
			{TaskID: a.ID, Level: task.EventInfo, Severity: task.SeverityInfo, Message: fmt.Sprint("a", day), Key: fmt.Sprint("a", day)},
			{TaskID: c.ID, Level: task.EventInfo, Severity: task.SeverityInfo, Message: fmt.Sprint("c", day), Key: fmt.Sprint("c", day)},
		})
		must(t, err)
		b.clk.Add(24 * time.Hour)
	}
	rep, err := b.m.Runtime().PurgeHistory(b.ctx)
	must(t, err)
	// now = start+5d; Short keeps events newer than start+4d: only day 4.
	if rep.Events != 4 || rep.Tasks != 2 {
		t.Fatalf("purge report = %+v, want 4 events of 2 tasks", rep)
	}
	ha, _ := b.m.History(b.ctx, b.admin, a.ID, task.HistoryParams{})
	hc, _ := b.m.History(b.ctx, b.admin, c.ID, task.HistoryParams{})
	if len(ha) != 1 || ha[0].Message != "a4" || len(hc) != 5 {
		t.Fatalf("after purge: short %d events, long %d", len(ha), len(hc))
	}
}

func TestACLAuthorizer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m, err := task.New(task.Config{Store: b.store, Registry: registry(t), Clock: b.clk, Authorizer: task.ACLAuthorizer{}})
	must(t, err)
	x := task.Task{Name: "Restricted", Application: appES, Type: "virus_scan", Scope: scope.Scope{Kind: scope.Devices, Devices: []scope.DeviceID{"dev-01"}},
		Security: task.Security{ACL: []task.AccessEntry{
			{Principal: "ops", Allow: []task.Permission{task.PermRead, task.PermModify, task.PermExecute}},
			{Principal: "intern", Deny: []task.Permission{task.PermExecute}},
		}}}
	if _, err := m.Create(b.ctx, task.Actor{ID: "mallory"}, x); !errors.Is(err, task.ErrPermission) {
		t.Fatalf("create by an outsider = %v", err)
	}
	ops := task.Actor{ID: "olga", Groups: []string{"ops"}}
	created, err := m.Create(b.ctx, ops, x)
	must(t, err)
	if _, err := m.Get(b.ctx, task.Actor{ID: "mallory"}, created.ID); !errors.Is(err, task.ErrPermission) {
		t.Fatalf("read by an outsider = %v", err)
	}
	if _, err := m.Start(b.ctx, task.Actor{ID: "ian", Groups: []string{"ops", "intern"}}, created.ID); !errors.Is(err, task.ErrPermission) {
		t.Fatalf("deny must win over allow: %v", err)
	}
	if _, err := m.Start(b.ctx, ops, created.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(b.ctx, ops, created.ID, 0); !errors.Is(err, task.ErrPermission) {
		t.Fatalf("delete without the permission = %v", err)
	}
	list, _ := m.List(b.ctx, task.Actor{ID: "mallory"}, task.ListParams{})
	if len(list.Applications) != 0 {
		t.Fatal("List shows a task the actor may not read")
	}
}

func TestRegistryRejectsBadTypes(t *testing.T) {
	t.Parallel()
	r := task.NewRegistry()
	if err := r.Register(task.TaskType{Name: "x"}); !errors.Is(err, task.ErrInvalid) {
		t.Fatalf("missing application = %v", err)
	}
	if err := r.Register(task.TaskType{Application: "a", Name: "x", Settings: 5}); !errors.Is(err, task.ErrInvalid) {
		t.Fatalf("non-struct settings = %v", err)
	}
	if err := r.Register(task.TaskType{Application: "a", Name: "x", Settings: &ScanSettings{}}); !errors.Is(err, task.ErrInvalid) {
		t.Fatalf("invalid default settings = %v", err)
	}
	if err := r.Register(task.TaskType{Application: "a", Name: "x", Schedules: []schedule.Kind{"hourly"}}); !errors.Is(err, task.ErrInvalid) {
		t.Fatalf("unknown schedule kind = %v", err)
	}
	must(t, r.Register(task.TaskType{Application: "a", Name: "x"}))
	if err := r.Register(task.TaskType{Application: "a", Name: "x"}); !errors.Is(err, task.ErrConflict) {
		t.Fatalf("duplicate type = %v", err)
	}
}

// Result ingest reuses decoded tasks, but a settings change applies to the
// very next batch.
func TestResultIngestSeesSettingsChanges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created, err := b.m.Create(b.ctx, b.admin, groupScan("Scan"))
	must(t, err)
	_, err = b.m.Runtime().RecordResults(b.ctx, []task.Result{{TaskID: created.ID, DeviceID: "dev-01", RunID: 1, Seq: 1, State: task.Completed}})
	must(t, err)
	created.Notifications.ErrorsOnly = true
	_, err = b.m.Update(b.ctx, b.admin, *created)
	must(t, err)
	_, err = b.m.Runtime().RecordResults(b.ctx, []task.Result{
		{TaskID: created.ID, DeviceID: "dev-01", RunID: 2, Seq: 1, State: task.Completed},
		{TaskID: created.ID, DeviceID: "dev-02", RunID: 2, Seq: 1, State: task.Failed},
	})
	must(t, err)
	var states []task.State
	for _, n := range b.notes.all() {
		states = append(states, n.State)
	}
	if d := cmp.Diff([]task.State{task.Completed, task.Failed}, states); d != "" {
		t.Fatalf("notifications (-want +got):\n%s", d)
	}
}
