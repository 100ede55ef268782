// Command kltconvert exports a task to a KLT file and imports it back,
// printing what would be imported: the product documentation's "Exporting a task" and the
// two steps of "Importing a task" (a console first shows the file's task,
// then creates it in the scope the administrator picks).
//
//	go run ./examples/kltconvert [-out task.klt] [-group lab]
//	go run ./examples/kltconvert -in task.klt
//
// Without -in it builds a demo: a task type with settings is registered, a
// group virus-scan task with a weekly schedule, a run-as account whose
// password is sealed with an AES-GCM key, and e-mail notifications is
// created in a Manager backed by storage/memstore. The task is exported to
// a KLT file (default under os.TempDir()) and the export report printed:
// the password is never exported, and settings values that look like
// private data are named (never shown). The file is then parsed back
// (step 1: nothing is stored) and what would be imported is printed:
// name, application and type, schedule, settings, the scope the file came
// from and the warnings (credentials_required, unknown_field, ...). It is
// committed (step 2) into a second Manager, in the group given by -group;
// a second import of the same file shows the " (1)" suffix a taken name
// gets.
//
// With -in it only parses the file and prints what would be imported: a
// taskfleet KLT file or a task read from a server through the Open API
// ({"PxgRetVal": …}), of a registered type or not (klt.ParseOptions.AnyType:
// the settings of an unregistered type are shown generically, as kept
// fields). A "Fields" list then names every field of the task and what the
// import does with it: mapped to the task model, kept opaque (stored with
// the task and written back on export), or dropped (a password or secret,
// never imported or exported). A file the klt package refuses is reported
// as its typed error, naming the JSON path in the document, and the exit
// code is 2.
//
// The program's logic is in run, so a test drives it with arguments and
// buffers; main only wires it to the process.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/klt"
	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"

	_ "time/tzdata" // the demo's zone, whatever the machine has installed
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // an I/O or unexpected failure
	exitUsage = 2 // bad flags, or a file or scope the library refuses
)

// The demo's task type.
const (
	application = "Endpoint Security"
	typeName    = "virus_scan"
)

// ScanSettings are the type-specific settings of the demo's virus scan:
// a struct with json and validate tags, as a host registers them.
type ScanSettings struct {
	ScanArchives  bool     `json:"scan_archives"`
	MaxFileSizeMB int      `json:"max_file_size_mb" validate:"min=1,max=4096"`
	Paths         []string `json:"paths" validate:"max=10,dive,required"`
	Action        string   `json:"action" validate:"oneof=disinfect delete report"`
	// UpdateProxy is where the scanner fetches signatures. The demo puts
	// a user and password in it, which administrators should not do; the
	// export report and the import warnings point at it.
	UpdateProxy string `json:"update_proxy,omitempty"`
}

// The demo's run-as account. The password is a constant only because this
// is a demonstration; the test checks it never appears in the output.
const (
	demoAccount  = `CORP\svc-scan`
	demoPassword = "Winter-2026-scan!"
	// demoProxy embeds credentials on purpose (see ScanSettings).
	demoProxy         = "http://scanner:Pr0xy-Secret-42@proxy.corp.example:3128"
	demoProxyPassword = "Pr0xy-Secret-42"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the whole program. It returns the process exit code. stdin is
// unused: the files are named by flags.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	_ = stdin
	fs := flag.NewFlagSet("kltconvert", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and usage are printed below, help to stdout
	out := fs.String("out", filepath.Join(os.TempDir(), "taskfleet-kltconvert", "task.klt"), "KLT file the demo task is exported to")
	in := fs.String("in", "", "only parse this KLT file and print what would be imported")
	group := fs.String("group", "lab", "administration group the import is committed to: office, lab or servers")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout, fs)
			return exitOK
		}
		fmt.Fprintf(stderr, "kltconvert: %v (run with -help for usage)\n", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kltconvert: unexpected argument %q (run with -help for usage)\n", fs.Arg(0))
		return exitUsage
	}
	ctx := context.Background()
	if *in != "" {
		reg, err := registry()
		if err != nil {
			return fail(stderr, err)
		}
		if _, err := parseFile(stdout, *in, reg); err != nil {
			return fail(stderr, err)
		}
		return exitOK
	}
	if err := demo(ctx, stdout, *out, scope.GroupID(*group)); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage: go run ./examples/kltconvert [-out FILE] [-group GROUP]
       go run ./examples/kltconvert -in FILE

Without -in: creates a demo group task (weekly virus scan, run-as account
with a sealed password, notifications), exports it to a KLT file, prints the
export report, parses the file back and prints what would be imported, then
imports it twice into a second server's group GROUP ("Friday scan", then
"Friday scan (1)", because the name is taken).

With -in: parses FILE and prints what would be imported, storing nothing.
A file the klt package refuses is printed as its error, naming the JSON
path in the document (for example task.TF_SCHEDULE.time), with exit code 2.

The password of the run-as account is never exported and never printed:
whoever imports the file enters it again (Import.Task.Account).

Exit codes: 0 done (also for -help), 1 an I/O failure, 2 bad flags or a file
or scope the library refuses.

Flags:
`)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// fail prints err and returns its exit code: a validation error of the
// library (ErrInvalid) is one line per field with its path.
func fail(w io.Writer, err error) int {
	var list klt.ValidationErrors
	var one *klt.ValidationError
	switch {
	case errors.As(err, &list):
	case errors.As(err, &one):
		list = klt.ValidationErrors{one}
	case errors.Is(err, klt.ErrInvalid):
		fmt.Fprintf(w, "kltconvert: %v\n", err)
		return exitUsage
	default:
		fmt.Fprintf(w, "kltconvert: %v\n", err)
		return exitError
	}
	fmt.Fprintln(w, "kltconvert: refused:")
	for _, e := range list {
		field := e.Field
		if field == "" {
			field = "(the document)"
		}
		fmt.Fprintf(w, "  %s:", field)
		if e.Line > 0 {
			fmt.Fprintf(w, " line %d:", e.Line)
		}
		if e.Value != "" {
			fmt.Fprintf(w, " %q:", e.Value)
		}
		fmt.Fprintf(w, " %s\n", e.Reason)
	}
	return exitUsage
}

// registry registers the demo's task type, as a host does at start-up for
// every task type its management plug-ins provide. Parse needs it to check
// the settings of a file.
func registry() (*task.Registry, error) {
	reg := task.NewRegistry()
	err := reg.Register(task.TaskType{
		Application: application, ApplicationVersion: "12.1", Name: typeName, DisplayName: "Virus scan",
		Settings: ScanSettings{MaxFileSizeMB: 100, Paths: []string{"C:\\"}, Action: "disinfect"},
	})
	return reg, err
}

// server is one Administration Server of the demo: a Manager on its own
// memstore with an inventory of administration groups.
type server struct {
	m      *task.Manager
	sealer credentials.Sealer
}

func newServer(reg *task.Registry, clk clock.Clock) (*server, error) {
	inv := inmem.New()
	if err := inv.PutGroups(context.Background(),
		scope.AdminGroup{ID: "root", Name: "Managed devices"},
		scope.AdminGroup{ID: "office", Parent: "root", Name: "Office"},
		scope.AdminGroup{ID: "sales", Parent: "office", Name: "Sales"},
		scope.AdminGroup{ID: "lab", Parent: "root", Name: "Lab"},
		scope.AdminGroup{ID: "servers", Parent: "root", Name: "Servers"},
	); err != nil {
		return nil, err
	}
	m, err := task.New(task.Config{Store: memstore.New(), Registry: reg, Inventory: inv, Clock: clk})
	if err != nil {
		return nil, err
	}
	// Each server has its own key: a sealed password cannot travel
	// between them, which is one more reason a KLT file never holds one.
	key := make([]byte, credentials.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	sealer, err := credentials.NewAESGCM(credentials.AESGCMConfig{
		Keys: []credentials.Key{{ID: "demo-key-1", Material: key}}, ActiveKeyID: "demo-key-1"})
	if err != nil {
		return nil, err
	}
	return &server{m: m, sealer: sealer}, nil
}

// demo is the main path: create, export, parse, commit twice.
func demo(ctx context.Context, w io.Writer, out string, group scope.GroupID) error {
	reg, err := registry()
	if err != nil {
		return err
	}
	clk := clock.New()
	admin := task.Actor{ID: "admin"}

	// The source server and its task.
	src, err := newServer(reg, clk)
	if err != nil {
		return err
	}
	weekly := schedule.Default(schedule.Weekly, clk.Now(), time.UTC)
	weekly.Weekdays = schedule.NewWeekdays(time.Friday)
	weekly.Time = schedule.Clock(19, 0, 0)
	weekly.RunMissed = true
	weekly.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayInterval, IntervalMinutes: 15}
	weekly.StopAfter = schedule.Limit{Enabled: true, Minutes: 240}
	account, err := credentials.Specify(demoAccount, credentials.NewSecret(demoPassword), src.sealer)
	if err != nil {
		return err
	}
	created, err := src.m.Create(ctx, admin, task.Task{
		Name: "Friday scan", Description: "Full scan of the office every Friday evening.",
		Application: application, ApplicationVersion: "12.1", Type: typeName,
		Scope:    scope.Scope{Kind: scope.Group, Group: "office", ExcludedGroups: []scope.GroupID{"sales"}},
		Schedule: weekly,
		Account:  account,
		Restart:  restart.Default(),
		Notifications: task.Notifications{History: task.HistoryAll, RetentionDays: 90,
			ErrorsOnly: true, Email: []string{"soc@corp.example"}},
		Settings: ScanSettings{ScanArchives: true, MaxFileSizeMB: 250, Paths: []string{"C:\\", "D:\\Shares"},
			Action: "disinfect", UpdateProxy: demoProxy},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Source server: created %q (%s/%s) in group %q, account %s\n\n",
		created.Name, created.Application, created.Type, created.Scope.Group, created.Account.Name)

	// Export.
	tt, ok := reg.Lookup(created.Application, created.Type)
	if !ok {
		return fmt.Errorf("task type %s/%s is not registered", created.Application, created.Type)
	}
	file, report, err := klt.Export(created, tt, klt.ExportOptions{
		Clock: clk,
		// A field this version does not model, as a file written by a
		// newer console would carry: the import keeps it and warns.
		Extra: []klt.Field{{Path: []string{"task", "TASK_DEL_AFTER_RUN_FLAG"}, Value: json.RawMessage("false")}},
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, file, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(w, "Export: wrote %s (%d bytes, format %s %s)\n", out, len(file), klt.Format, klt.FormatVersion)
	if report.AccountName != "" {
		fmt.Fprintf(w, "  run-as account: %s (name exported)\n", report.AccountName)
	}
	if report.PasswordDropped {
		fmt.Fprintln(w, "  password: dropped, never exported; whoever imports the file must enter it again")
	}
	if len(report.PrivateData) == 0 {
		fmt.Fprintln(w, "  private data in settings: none found")
	}
	if len(report.GroupIDsOmitted) > 0 {
		fmt.Fprintf(w, "  group ids %q are not integers: PRTS_TASK_GROUPID/PRTS_EXCEPT_GROUPIDS left out (TF_SCOPE keeps them); map them with ExportOptions.GroupIDs for a server\n", report.GroupIDsOmitted)
	}
	for _, f := range report.PrivateData {
		fmt.Fprintf(w, "  private data in settings: %s (%s); exported as is, consider removing it\n", f.Path, f.Reason)
	}
	fmt.Fprintln(w)

	// Step 1: parse the file back; nothing is stored.
	imp, err := parseFile(w, out, reg)
	if err != nil {
		return err
	}

	// Step 2: commit into another server, in the group the administrator
	// picks. The password is entered again and sealed with this server's
	// key; without it the task would run under the default account.
	dst, err := newServer(reg, clk)
	if err != nil {
		return err
	}
	chosen := scope.Scope{Kind: scope.Group, Group: group}
	imp.Task.Account, err = credentials.Specify(imp.AccountName, credentials.NewSecret(demoPassword), dst.sealer)
	if err != nil {
		return err
	}
	first, err := imp.Commit(ctx, dst.m, admin, chosen)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nImport: created %q in group %q (%s), account %s (password re-entered)\n",
		first.Name, first.Scope.Group, nextStart(first, clk.Now()), first.Account.Name)

	// Importing the same file again: the name is taken, so the new task
	// gets the next free " (n)" index. This time the password is not
	// entered again, so the copy runs under the default account.
	imp.Task.Account = credentials.Default()
	second, err := imp.Commit(ctx, dst.m, admin, chosen)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Import again: the name is taken, created %q in group %q, default account (no password entered)\n",
		second.Name, second.Scope.Group)
	return nil
}

func nextStart(t *task.Task, now time.Time) string {
	next, ok := t.Schedule.Next(now, time.UTC)
	if !ok {
		return "no timed start"
	}
	return "next start " + next.Format("Mon 2006-01-02 15:04") + " on a device in UTC; each device follows its own zone"
}

// parseFile is step 1 of an import: read and validate the file, print what
// would be imported, store nothing.
func parseFile(w io.Writer, path string, reg *task.Registry) (*klt.Import, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, klt.DefaultMaxSize+1))
	if err != nil {
		return nil, err
	}
	// AnyType: a console shows any task, also of a type this host does
	// not register; such a task cannot be committed until it is.
	imp, err := klt.Parse(bytes.NewReader(data), reg, klt.ParseOptions{AnyType: true})
	if err != nil {
		return nil, err
	}
	printImport(w, path, imp)
	printFields(w, data, imp)
	return imp, nil
}

// printFields lists every field of the task in the document and what the
// import does with it: mapped (to the task model), kept opaque (stored
// with the task and written back on export), dropped (a password or
// secret, never imported or exported) or ignored (outside the task).
func printFields(w io.Writer, data []byte, imp *klt.Import) {
	var root map[string]json.RawMessage
	if json.Unmarshal(data, &root) != nil {
		return
	}
	base, body := "task", root["task"]
	if imp.FromOpenAPI {
		base, body = "PxgRetVal", root["PxgRetVal"]
	}
	members := func(raw json.RawMessage, typed bool) ([]string, map[string]json.RawMessage) {
		var m map[string]json.RawMessage
		if typed {
			var tv struct {
				Value map[string]json.RawMessage `json:"value"`
			}
			if json.Unmarshal(raw, &tv) != nil {
				return nil, nil
			}
			m = tv.Value
		} else if json.Unmarshal(raw, &m) != nil {
			return nil, nil
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return keys, m
	}
	opaque := map[string]bool{}
	for _, f := range imp.Extra {
		opaque[f.PathString()] = true
	}
	fmt.Fprintln(w, "Fields:")
	line := func(path []string) {
		export := "task." + strings.Join(path, ".")
		var what string
		switch {
		case klt.IsSecretField(path[len(path)-1]):
			what = "dropped: a password or secret, never imported or exported"
		case opaque[export]:
			what = "kept opaque: stored with the task, written back on export"
		default:
			what = "mapped"
		}
		fmt.Fprintf(w, "  %-60s %s\n", base+"."+strings.Join(path, "."), what)
	}
	keys, m := members(body, !imp.FromOpenAPI)
	for _, k := range keys {
		if k == "TASK_INFO_PARAMS" || k == "TASK_ADDITIONAL_PARAMS" {
			sub, _ := members(m[k], true)
			for _, sk := range sub {
				line([]string{k, sk})
			}
			continue
		}
		line([]string{k})
	}
	for k := range root {
		if k != "task" && k != "PxgRetVal" && !imp.FromOpenAPI {
			continue // header fields
		}
		if imp.FromOpenAPI && k != "PxgRetVal" {
			fmt.Fprintf(w, "  %-60s %s\n", k, "ignored: not part of the task")
		}
	}
}

func printImport(w io.Writer, path string, imp *klt.Import) {
	t := imp.Task
	fmt.Fprintf(w, "Would import from %s:\n", path)
	if imp.FromOpenAPI {
		fmt.Fprintln(w, "  source:        an Open API task read (PxgRetVal)")
	} else {
		fmt.Fprintf(w, "  source:        %s %s, written by taskfleet %s at %s\n", imp.Header.Format, imp.Header.FormatVersion,
			imp.Header.LibraryVersion, imp.Header.ExportedAt.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "  name:          %s\n", t.Name)
	if t.Description != "" {
		fmt.Fprintf(w, "  description:   %s\n", t.Description)
	}
	fmt.Fprintf(w, "  application:   %s %s\n", t.Application, t.ApplicationVersion)
	fmt.Fprintf(w, "  type:          %s\n", t.Type)
	fmt.Fprintf(w, "  schedule:      %s\n", describeSchedule(t.Schedule))
	if t.Settings == nil && len(imp.Extra) > 0 && slices.ContainsFunc(imp.Warnings, func(w klt.Warning) bool { return w.Code == klt.WarnUnregisteredType }) {
		fmt.Fprintln(w, "  settings:      the type is not registered here: shown as kept fields below")
	} else {
		fmt.Fprintf(w, "  settings:      %s\n", settingsText(t.Settings, imp.Warnings))
	}
	if imp.AccountName != "" {
		fmt.Fprintf(w, "  account:       %s (password not in the file)\n", imp.AccountName)
	} else {
		fmt.Fprintln(w, "  account:       the application's default account")
	}
	fmt.Fprintf(w, "  restart:       %s\n", t.Restart)
	fmt.Fprintf(w, "  notifications: %s\n", notificationsText(t.Notifications))
	if t.Suspended {
		fmt.Fprintln(w, "  suspended:     yes")
	}
	if imp.SourceScope != nil {
		sc, _ := json.Marshal(imp.SourceScope)
		fmt.Fprintf(w, "  exported from: scope %s (the importer picks the scope)\n", sc)
	}
	for _, f := range imp.Extra {
		fmt.Fprintf(w, "  kept field:    %s = %s\n", f.PathString(), f.Value)
	}
	if len(imp.Warnings) == 0 {
		fmt.Fprintln(w, "  warnings:      none")
	}
	for _, warn := range imp.Warnings {
		fmt.Fprintf(w, "  warning:       %s at %s: %s\n", warn.Code, warn.Path, warn.Message)
	}
}

func describeSchedule(s schedule.Schedule) string {
	var b strings.Builder
	switch s.Kind {
	case schedule.Weekly:
		var days []string
		for _, d := range s.Weekdays.Days() {
			days = append(days, d.String())
		}
		fmt.Fprintf(&b, "weekly, every %s at %s device-local time", strings.Join(days, ", "), s.Time)
	case schedule.EveryDays:
		fmt.Fprintf(&b, "every %d days at %s from %s, device-local time", s.Every, s.Time, s.StartDate)
	case schedule.Monthly:
		fmt.Fprintf(&b, "monthly on day %d at %s, device-local time", s.Day, s.Time)
	case schedule.EveryMinutes:
		fmt.Fprintf(&b, "every %d minutes from %s", s.Every, s.Start.UTC().Format(time.RFC3339))
	case schedule.EveryHours:
		fmt.Fprintf(&b, "every %d hours from %s", s.Every, s.Start.UTC().Format(time.RFC3339))
	case schedule.Once:
		fmt.Fprintf(&b, "once at %s", s.At.UTC().Format(time.RFC3339))
	default:
		// The other kinds: the JSON encoding says everything.
		fmt.Fprintf(&b, "%s", s.Kind)
	}
	if s.RunMissed {
		b.WriteString("; run missed starts")
	}
	switch s.RandomDelay.Mode {
	case schedule.DelayInterval:
		fmt.Fprintf(&b, "; randomized delay up to %d min", s.RandomDelay.IntervalMinutes)
	case schedule.DelayAutomatic:
		b.WriteString("; automatic randomized delay")
	}
	if d, ok := s.MaxRunDuration(); ok {
		fmt.Fprintf(&b, "; stop after %d min", int(d/time.Minute))
	}
	if d, ok := s.WakeLead(); ok {
		fmt.Fprintf(&b, "; Wake-on-LAN %d min before", int(d/time.Minute))
	}
	if s.ShutdownAfter {
		b.WriteString("; shut down after")
	}
	return b.String()
}

func notificationsText(n task.Notifications) string {
	ret, stored := n.Retention()
	parts := []string{"history " + string(n.Level())}
	if stored {
		parts = append(parts, fmt.Sprintf("kept %d days on the server", int(ret/(24*time.Hour))))
	} else {
		parts = append(parts, "not stored on the server")
	}
	if n.ErrorsOnly {
		parts = append(parts, "notify of errors only")
	}
	if len(n.Email) > 0 {
		parts = append(parts, "e-mail "+strings.Join(n.Email, ", "))
	}
	return strings.Join(parts, "; ")
}

// settingsText prints the settings as JSON with every value that the
// import's private-data warnings name replaced by [REDACTED]: those values
// may be secrets, and a console must not display them.
func settingsText(settings any, warnings []klt.Warning) string {
	data, err := json.Marshal(settings)
	if err != nil {
		return "(cannot display: " + err.Error() + ")"
	}
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		return string(data)
	}
	const prefix = "task.TASK_ADDITIONAL_PARAMS."
	for _, warn := range warnings {
		if warn.Code != klt.WarnPrivateData {
			continue
		}
		// The top-level settings field that holds the value; a nested
		// finding redacts the whole field.
		rest, ok := strings.CutPrefix(warn.Path, prefix)
		if !ok {
			return "(not displayed: private data at " + warn.Path + ")"
		}
		parts := strings.FieldsFunc(rest, func(r rune) bool { return r == '.' || r == '[' })
		if len(parts) == 0 {
			return "(not displayed: private data at " + warn.Path + ")"
		}
		key := parts[0]
		if _, ok := fields[key]; !ok {
			return "(not displayed: private data at " + warn.Path + ")"
		}
		fields[key] = credentials.Redacted
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		v, _ := json.Marshal(fields[k])
		fmt.Fprintf(&b, "%s: %s", k, v)
	}
	b.WriteByte('}')
	return b.String()
}
