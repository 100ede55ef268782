package klt_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/klt"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

func parseFile(t testing.TB, reg *task.Registry, path string) (*klt.Import, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	imp, err := klt.Parse(bytes.NewReader(b), reg, klt.ParseOptions{})
	must(t, err)
	return imp, b
}

func codes(ws []klt.Warning) []string {
	var out []string
	for _, w := range ws {
		out = append(out, string(w.Code)+"@"+w.Path)
	}
	sort.Strings(out)
	return out
}

// Fields this version does not know are kept verbatim and written back:
// export -> import -> export is identical after normalisation.
func TestUnknownFieldsArePreserved(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	imp, in := parseFile(t, reg, "testdata/v1.7_newer_minor.klt")
	want := []string{
		"newer_minor_version@format_version",
		"notifications_kept_verbatim@task.TASK_INFO_PARAMS.KLPRSS_EVPNotifications",
		"unknown_field@signature",
		"unknown_field@task.TASK_ADDITIONAL_PARAMS.legacy_mirror",
		"unknown_field@task.TASK_DEL_AFTER_RUN_FLAG",
		"unknown_field@task.TF_PRIORITY",
	}
	if d := cmp.Diff(want, codes(imp.Warnings)); d != "" {
		t.Fatalf("warnings (-want +got):\n%s", d)
	}
	var paths []string
	for _, f := range imp.Extra {
		paths = append(paths, f.PathString())
	}
	sort.Strings(paths)
	if d := cmp.Diff([]string{"signature", "task.TASK_ADDITIONAL_PARAMS.legacy_mirror", "task.TASK_DEL_AFTER_RUN_FLAG",
		"task.TASK_INFO_PARAMS.KLPRSS_EVPNotifications", "task.TF_PRIORITY"}, paths); d != "" {
		t.Fatalf("extra paths (-want +got):\n%s", d)
	}
	out := reexport(t, reg, imp, credentials.Account{})
	// The re-export is written by this version; apart from that it is the
	// same document.
	in = bytes.Replace(in, []byte(`"format_version": "1.7"`), []byte(`"format_version": "1.2"`), 1)
	a, err := klt.Normalize(in)
	must(t, err)
	b, err := klt.Normalize(out)
	must(t, err)
	if d := cmp.Diff(string(a), string(b)); d != "" {
		t.Fatalf("unknown fields were not written back verbatim (-in +out):\n%s", d)
	}
	if !bytes.Contains(out, []byte("9007199254740993")) {
		t.Fatal("a long beyond float64 precision lost digits")
	}
}

func TestOlderFormatIsUpgraded(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	imp, _ := parseFile(t, reg, "testdata/v0.9.klt")
	if imp.Task.Description != "Scans the office.\nTwice a week." {
		t.Fatalf("description %q was not upgraded from TF_COMMENT", imp.Task.Description)
	}
	if d := cmp.Diff([]string{"upgraded@format_version"}, codes(imp.Warnings)); d != "" {
		t.Fatalf("warnings (-want +got):\n%s", d)
	}
	golden, err := os.ReadFile("testdata/golden/scope_group.klt")
	must(t, err)
	if out := reexport(t, reg, imp, credentials.Account{}); !bytes.Equal(out, golden) {
		t.Fatalf("the upgraded task does not export as the current format:\n%s", cmp.Diff(string(golden), string(out)))
	}
}

// A task read from a running server through the Open API is imported
// with what the public names say; the rest is kept verbatim.
func TestOpenAPIPxgRetVal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	imp, _ := parseFile(t, b.reg, "testdata/openapi_pxgretval.json")
	if !imp.FromOpenAPI || imp.Header.Format != "" {
		t.Fatalf("FromOpenAPI %v, header %+v", imp.FromOpenAPI, imp.Header)
	}
	// TASKSCH_TYPE 6 with TASKSCH_WD_DAYS 64 (bit 6: Friday) at 18:00:00.
	wantSched := schedule.Default(schedule.Weekly, time.Time{}, nil)
	wantSched.Weekdays = schedule.NewWeekdays(time.Friday)
	wantSched.Time = schedule.Clock(18, 0, 0)
	wantSched.RunMissed = true
	wantSched.RandomDelay.Mode = schedule.DelayAutomatic
	want := task.Task{Name: "Update databases", Application: appES, ApplicationVersion: "12.1", Type: "update",
		Schedule: wantSched, Restart: restartDefault(), Settings: UpdateSettings{Source: "administration-server"},
		Opaque: klt.EncodeOpaque(imp.Extra)}
	if d := cmp.Diff(want, imp.Task, cmpOpts...); d != "" {
		t.Fatalf("task (-want +got):\n%s", d)
	}
	if d := cmp.Diff(&scope.Scope{Kind: scope.Group, Group: "42", ExcludedGroups: []scope.GroupID{"43"}}, imp.SourceScope, cmpOpts...); d != "" {
		t.Fatalf("source scope (-want +got):\n%s", d)
	}
	ws := codes(imp.Warnings)
	if slices.Contains(ws, "schedule_not_converted@PxgRetVal.TASKSCH_TYPE") || !slices.Contains(ws, "unknown_field@PxgRetVal.TASK_UNIQUE_ID") ||
		!slices.Contains(ws, "unknown_field@PxgRetVal.TASK_ADDITIONAL_PARAMS.nSource") {
		t.Fatalf("warnings %q", ws)
	}
	var extra []string
	for _, f := range imp.Extra {
		extra = append(extra, f.PathString()+"="+string(f.Value))
	}
	for _, w := range []string{"task.TASK_UNIQUE_ID=\"_LOCAL_6e5b3c\"", "task.TASKID_COMPONENT_NAME=\"Connector\"",
		`task.TASKSCH_FIRST_EXECUTION_TIME={"type":"datetime","value":"2026-11-20T18:00:00Z"}`, "task.TASK_ADDITIONAL_PARAMS.nSource=1"} {
		if !slices.Contains(extra, w) {
			t.Fatalf("extra %q lacks %q", extra, w)
		}
	}
	// It commits into the group the administrator picks, and exports with
	// the server's fields kept.
	got, err := imp.Commit(b.ctx, b.m, b.admin, scope.Scope{Kind: scope.Group, Group: "42"})
	must(t, err)
	out, _, err := klt.Export(got, lookup(t, b.reg, got), klt.ExportOptions{Time: exportTime, Extra: imp.Extra})
	must(t, err)
	again, err := klt.Parse(bytes.NewReader(out), b.reg, klt.ParseOptions{})
	must(t, err)
	if d := cmp.Diff(imp.Extra, again.Extra); d != "" {
		t.Fatalf("server fields were not kept (-first +again):\n%s", d)
	}
}

func TestCredentialsAndPrivateDataAreReported(t *testing.T) {
	t.Parallel()
	b := setup(t)
	x := fullTask(t, b.seal)
	x.Settings.(*ScanSettings).ProxyURL = "http://proxy:Pr0xyPa55@proxy.example.com:3128"
	out, rep, err := klt.Export(x, lookup(t, b.reg, x), klt.ExportOptions{Time: exportTime})
	must(t, err)
	if rep.AccountName != `CORP\svc-scan` || !rep.PasswordDropped {
		t.Fatalf("report %+v", rep)
	}
	if d := cmp.Diff([]credentials.Finding{{Path: "task.TASK_ADDITIONAL_PARAMS.proxy_url", Reason: credentials.ReasonURLCredentials}}, rep.PrivateData); d != "" {
		t.Fatalf("private data findings (-want +got):\n%s", d)
	}
	sealed, _ := x.Account.Password.MarshalText()
	for _, leak := range []string{"hunter2", string(sealed), "tfsealed", "password"} {
		if bytes.Contains(out, []byte(leak)) {
			t.Fatalf("the export contains %q:\n%s", leak, out)
		}
	}
	imp, err := klt.Parse(bytes.NewReader(out), b.reg, klt.ParseOptions{})
	must(t, err)
	if !imp.Task.Account.IsDefault() || imp.AccountName != `CORP\svc-scan` {
		t.Fatalf("account %v, name %q", imp.Task.Account, imp.AccountName)
	}
	ws := codes(imp.Warnings)
	if d := cmp.Diff([]string{"credentials_required@task.TASK_ADDITIONAL_PARAMS.klprts-TaskAccountUser", "private_data@task.TASK_ADDITIONAL_PARAMS.proxy_url"}, ws); d != "" {
		t.Fatalf("warnings (-want +got):\n%s", d)
	}
	// The administrator re-enters the password before committing.
	imp.Task.Account, err = credentials.Specify(imp.AccountName, credentials.NewSecret("new-password"), b.seal)
	must(t, err)
	got, err := imp.Commit(b.ctx, b.m, b.admin, scope.Scope{Kind: scope.Group, Group: "office"})
	must(t, err)
	if !got.Account.SameName(`corp\SVC-scan`) || got.Account.Password.IsZero() {
		t.Fatalf("committed account %v", got.Account)
	}
}

func TestCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	x := fullTask(t, nil)
	out, _, err := klt.Export(x, lookup(t, b.reg, x), klt.ExportOptions{Time: exportTime})
	must(t, err)
	imp, err := klt.Parse(bytes.NewReader(out), b.reg, klt.ParseOptions{})
	must(t, err)
	addr, err := scope.ParseAddress("10.0.0.0/24")
	must(t, err)
	scopes := []scope.Scope{
		{Kind: scope.Group, Group: "accounting"},
		{Kind: scope.Addresses, Addresses: []scope.Address{addr}},
		{Kind: scope.Selection, Selection: `device.connected`},
		{Kind: scope.Devices, Devices: []scope.DeviceID{"dev-02"}},
	}
	for i, sc := range scopes {
		got, err := imp.Commit(b.ctx, b.m, b.admin, sc)
		must(t, err)
		wantName := x.Name
		if i > 0 {
			wantName = fmt.Sprintf("%s (%d)", x.Name, i)
		}
		if got.Name != wantName {
			t.Fatalf("commit %d: name %q, want %q", i, got.Name, wantName)
		}
		if d := cmp.Diff(sc, got.Scope, cmpOpts...); d != "" {
			t.Fatalf("scope (-want +got):\n%s", d)
		}
		// The stored task is the imported one in the chosen scope, so it
		// starts by the imported schedule.
		want := imp.Task
		want.Name, want.Scope = wantName, sc
		want.ID, want.Revision, want.SettingsRevision = got.ID, 1, 1
		want.CreatedAt, want.UpdatedAt, want.CreatedBy, want.UpdatedBy = start, start, "admin", "admin"
		stored, err := b.m.Get(b.ctx, b.admin, got.ID)
		must(t, err)
		if d := cmp.Diff(&want, stored, cmpOpts...); d != "" {
			t.Fatalf("stored task (-want +got):\n%s", d)
		}
	}
	for _, sc := range []scope.Scope{{Kind: scope.Local, Device: "dev-01"}, {Kind: scope.Server}, {}} {
		if _, err := imp.Commit(b.ctx, b.m, b.admin, sc); !slices.Contains(fieldsOf(err), "scope.kind") {
			t.Fatalf("scope %q: %v", sc.Kind, err)
		}
	}
	if _, err := imp.Commit(b.ctx, b.m, b.admin, scope.Scope{Kind: scope.Group, Group: "nope"}); !errors.Is(err, klt.ErrInvalid) {
		t.Fatalf("unknown group: %v", err)
	}
	if _, err := imp.Commit(b.ctx, nil, b.admin, scopes[0]); !errors.Is(err, klt.ErrInvalid) {
		t.Fatalf("nil manager: %v", err)
	}
	var nilImp *klt.Import
	if _, err := nilImp.Commit(b.ctx, b.m, b.admin, scopes[0]); !errors.Is(err, klt.ErrInvalid) {
		t.Fatalf("nil import: %v", err)
	}
}

// The product documentation: a name that exists gets the next free " (n)", also when the
// same file is imported concurrently.
func TestConcurrentImportsGetDistinctNames(t *testing.T) {
	t.Parallel()
	b := setup(t)
	x := fullTask(t, nil)
	out, _, err := klt.Export(x, lookup(t, b.reg, x), klt.ExportOptions{Time: exportTime})
	must(t, err)
	const n = 8
	names := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			imp, err := klt.Parse(bytes.NewReader(out), b.reg, klt.ParseOptions{})
			if err != nil {
				errs[i] = err
				return
			}
			got, err := imp.Commit(b.ctx, b.m, b.admin, scope.Scope{Kind: scope.Group, Group: "office"})
			if err != nil {
				errs[i] = err
				return
			}
			names[i] = got.Name
		}()
	}
	wg.Wait()
	for _, err := range errs {
		must(t, err)
	}
	want := []string{x.Name}
	for i := 1; i < n; i++ {
		want = append(want, fmt.Sprintf("%s (%d)", x.Name, i))
	}
	sort.Strings(want)
	sort.Strings(names)
	if d := cmp.Diff(want, names); d != "" {
		t.Fatalf("names (-want +got):\n%s", d)
	}
}

func TestNormalizeIgnoresExportTimeAndLayout(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	x := fullTask(t, nil)
	a, _, err := klt.Export(x, lookup(t, reg, x), klt.ExportOptions{Time: exportTime})
	must(t, err)
	b, _, err := klt.Export(x, lookup(t, reg, x), klt.ExportOptions{Time: exportTime.Add(48 * time.Hour)})
	must(t, err)
	if bytes.Equal(a, b) {
		t.Fatal("the export time is not in the document")
	}
	compact := mutate(t, b, func(_, _, _, _ map[string]any) {})
	na, err := klt.Normalize(a)
	must(t, err)
	nb, err := klt.Normalize(compact)
	must(t, err)
	if !bytes.Equal(na, nb) {
		t.Fatalf("normalised documents differ:\n%s", cmp.Diff(string(na), string(nb)))
	}
	if strings.Contains(string(na), "exported_at") {
		t.Fatal("Normalize kept exported_at")
	}
	if _, err := klt.Normalize([]byte(`{"a":1,"a":2}`)); !errors.Is(err, klt.ErrInvalid) {
		t.Fatalf("duplicate keys: %v", err)
	}
}

func TestExportTimeFromClock(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.clk.Set(time.Date(2027, 1, 2, 3, 4, 5, 600, time.FixedZone("X", 3600)))
	x := fullTask(t, nil)
	out, _, err := klt.Export(x, lookup(t, b.reg, x), klt.ExportOptions{Clock: b.clk})
	must(t, err)
	imp, err := klt.Parse(bytes.NewReader(out), b.reg, klt.ParseOptions{})
	must(t, err)
	want := klt.Header{Format: klt.Format, FormatVersion: klt.FormatVersion, LibraryVersion: klt.LibraryVersion,
		ExportedAt: time.Date(2027, 1, 2, 2, 4, 5, 0, time.UTC)}
	if d := cmp.Diff(want, imp.Header); d != "" {
		t.Fatalf("header (-want +got):\n%s", d)
	}
}

// The decoder reads strings and numbers as encoding/json does.
func TestDecoderMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{
		`{"a":"\ud83d\ude00 \ud800 x \udc00\ud800 \u00e9 \/ \b\f\n\r\t \"\\"}`,
		`{"n":[0,-0,1.5e-3,-12E+2,123456789012345678901234567890,1e300]}`,
		" \t\r\n{ \"a\" : [ true , false , null , { } , [ ] ] } \n",
		`{"ünï":"日本語🙂","k":"\u2028\u2029<>&"}`,
	} {
		n, err := klt.Normalize([]byte(doc))
		must(t, err)
		var want, got any
		must(t, json.Unmarshal([]byte(doc), &want))
		must(t, json.Unmarshal(n, &got))
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("%s: (-encoding/json +klt):\n%s", doc, d)
		}
	}
}
