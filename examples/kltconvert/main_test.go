package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/taskfleet/taskfleet/klt"
)

// result is one run of the program.
type result struct {
	code           int
	stdout, stderr string
}

func runWith(t testing.TB, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// setup runs the demo once into a temporary file and returns its output
// and the file.
func setup(t *testing.T, args ...string) (result, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "sub", "task.klt")
	r := runWith(t, append([]string{"-out", file}, args...)...)
	if r.code != exitOK {
		t.Fatalf("demo: exit %d, stderr:\n%s\nstdout:\n%s", r.code, r.stderr, r.stdout)
	}
	return r, file
}

// The whole main path: create, export, parse, commit twice.
func TestDemo(t *testing.T) {
	t.Parallel()
	r, file := setup(t)
	for _, want := range []string{
		`Source server: created "Friday scan" (Endpoint Security/virus_scan) in group "office", account CORP\svc-scan`,
		"Export: wrote " + file,
		"  run-as account: CORP\\svc-scan (name exported)",
		"  password: dropped, never exported",
		"  private data in settings: task.TASK_ADDITIONAL_PARAMS.update_proxy (url_credentials)",
		"Would import from " + file + ":",
		"  name:          Friday scan\n",
		"  application:   Endpoint Security 12.1\n",
		"  type:          virus_scan\n",
		"  schedule:      weekly, every Friday at 19:00:00 device-local time; run missed starts; randomized delay up to 15 min; stop after 240 min\n",
		`  settings:      {action: "disinfect", max_file_size_mb: 250, paths: ["C:\\","D:\\Shares"], scan_archives: true, update_proxy: "[REDACTED]"}`,
		"  account:       CORP\\svc-scan (password not in the file)",
		"  notifications: history all; kept 90 days on the server; notify of errors only; e-mail soc@corp.example",
		`  exported from: scope {"kind":"group","group":"office","excluded_groups":["sales"]}`,
		"  kept field:    task.TASK_DEL_AFTER_RUN_FLAG = false",
		"  warning:       unknown_field at task.TASK_DEL_AFTER_RUN_FLAG",
		"  warning:       credentials_required at task.TASK_ADDITIONAL_PARAMS.klprts-TaskAccountUser",
		"  warning:       private_data at task.TASK_ADDITIONAL_PARAMS.update_proxy",
		`Import: created "Friday scan" in group "lab"`,
		`Import again: the name is taken, created "Friday scan (1)" in group "lab"`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", r.stdout)
	}
	if r.stderr != "" {
		t.Errorf("stderr: %s", r.stderr)
	}
	// The first import keeps the plain name, the second gets " (1)", and
	// there is no third.
	if n := len(regexp.MustCompile(`created "Friday scan \(\d+\)"`).FindAllString(r.stdout, -1)); n != 1 {
		t.Errorf("%d suffixed imports, want 1", n)
	}
}

// Secrets: the account password is neither in the file nor in the output,
// and neither is its sealed form; the proxy password is in the file (it is
// exported as is, and the report says so) but never printed.
func TestNoSecretsPrinted(t *testing.T) {
	t.Parallel()
	r, file := setup(t)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{demoPassword, "tfsealed:"} {
		if strings.Contains(string(data), secret) {
			t.Errorf("the KLT file holds %q", secret)
		}
	}
	if !strings.Contains(string(data), demoProxy) {
		t.Errorf("the settings value flagged as private data was not exported as is")
	}
	in := runWith(t, "-in", file)
	for name, text := range map[string]string{"demo stdout": r.stdout, "demo stderr": r.stderr, "-in stdout": in.stdout} {
		for _, secret := range []string{demoPassword, demoProxyPassword, "tfsealed:"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows %q", name, secret)
			}
		}
	}
}

// -in only parses: it prints what would be imported and stores nothing.
func TestParseOnly(t *testing.T) {
	t.Parallel()
	demo, file := setup(t)
	r := runWith(t, "-in", file)
	if r.code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	// Exactly the "Would import" block of the demo.
	start := strings.Index(demo.stdout, "Would import from")
	end := strings.Index(demo.stdout, "\nImport: ")
	if start < 0 || end < 0 {
		t.Fatalf("demo output has no import block:\n%s", demo.stdout)
	}
	if want := demo.stdout[start:end]; r.stdout != want {
		t.Errorf("-in prints\n%s\nwant\n%s", r.stdout, want)
	}
}

func TestChosenGroup(t *testing.T) {
	t.Parallel()
	r, _ := setup(t, "-group", "servers")
	if !strings.Contains(r.stdout, `Import: created "Friday scan" in group "servers"`) {
		t.Errorf("import not in the chosen group:\n%s", r.stdout)
	}
	bad := runWith(t, "-out", filepath.Join(t.TempDir(), "t.klt"), "-group", "no-such-group")
	if bad.code != exitUsage {
		t.Fatalf("unknown group: exit %d, want %d; stderr:\n%s", bad.code, exitUsage, bad.stderr)
	}
	if !strings.Contains(bad.stderr, "scope.group") {
		t.Errorf("error does not name scope.group:\n%s", bad.stderr)
	}
}

// A tampered file is refused with the JSON path of what is wrong, exit 2.
func TestTamperedFile(t *testing.T) {
	t.Parallel()
	_, file := setup(t)
	orig, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, old, new string
		want           string
	}{
		{"schedule time", `"time": "19:00:00"`, `"time": "25:00:00"`, "task.TF_SCHEDULE.time"},
		{"settings range", `"max_file_size_mb": 250`, `"max_file_size_mb": 99999`, "task.TASK_ADDITIONAL_PARAMS.max_file_size_mb"},
		{"mirror disagrees", `"TASKSCH_TYPE": 6`, `"TASKSCH_TYPE": 4`, "task.TASKSCH_TYPE"},
		{"display name", `"DisplayName": "Friday scan"`, `"DisplayName": ""`, "task.TASK_INFO_PARAMS.DisplayName"},
		{"duplicate key", `"TASK_NAME": "virus_scan",`, `"TASK_NAME": "virus_scan", "TASK_NAME": "virus_scan",`, "TASK_NAME"},
		{"newer major version", `"format_version": "` + klt.FormatVersion + `"`, `"format_version": "2.0"`, "2.0"},
		{"truncated", `"TF_SCHEDULE"`, `"TF_SCHEDULE`, "kltconvert: refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if !bytes.Contains(orig, []byte(tt.old)) {
				t.Fatalf("the exported file has no %s", tt.old)
			}
			bad := filepath.Join(t.TempDir(), "bad.klt")
			text := bytes.Replace(orig, []byte(tt.old), []byte(tt.new), 1)
			if tt.name == "truncated" {
				text = text[:bytes.Index(text, []byte(tt.new))+len(tt.new)]
			}
			if err := os.WriteFile(bad, text, 0o600); err != nil {
				t.Fatal(err)
			}
			r := runWith(t, "-in", bad)
			if r.code != exitUsage {
				t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", r.code, exitUsage, r.stdout, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("a refused file printed an import:\n%s", r.stdout)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, r.stderr)
			}
		})
	}
}

func TestFlagsAndHelp(t *testing.T) {
	t.Parallel()
	help := runWith(t, "-help")
	if help.code != exitOK || help.stderr != "" {
		t.Fatalf("-help: exit %d, stderr %q", help.code, help.stderr)
	}
	for _, w := range []string{"-out", "-in", "-group", "Exit codes", "never exported"} {
		if !strings.Contains(help.stdout, w) {
			t.Errorf("-help lacks %q", w)
		}
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"-format", "xml"}, exitUsage, "flag provided but not defined: -format"},
		{"positional", []string{"task.klt"}, exitUsage, `unexpected argument "task.klt"`},
		{"missing file", []string{"-in", filepath.Join(t.TempDir(), "none.klt")}, exitError, "no such file"},
		{"unwritable out", []string{"-out", filepath.Join(t.TempDir(), "file", "x.klt"), "-group", "lab"}, exitError, "kltconvert:"},
	}
	// A regular file where -out needs a directory.
	if err := os.WriteFile(filepath.Join(filepath.Dir(filepath.Dir(tests[3].args[1])), "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runWith(t, tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, tt.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, r.stderr)
			}
		})
	}
}

// A task read from a server, of a type this host does not register, is
// shown anyway: its settings as kept fields, and every field with what the
// import does with it. No secret of the file is printed.
func TestServerTaskOfAnyType(t *testing.T) {
	t.Parallel()
	r := runWith(t, "-in", filepath.Join("testdata", "server_task.json"))
	if r.code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		"  settings:      the type is not registered here: shown as kept fields below",
		"  warning:       unregistered_type at PxgRetVal.TASK_NAME",
		`  kept field:    task.TASK_ADDITIONAL_PARAMS.vendor_long = {"type":"long","value":9007199254740993}`,
		"Fields:",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, re := range []string{
		`PxgRetVal\.UNLOCK_PASSWORD_CRYPTED +dropped: a password or secret`,
		`PxgRetVal\.TASK_ADDITIONAL_PARAMS\.proxy_pwd +dropped`,
		`PxgRetVal\.TASK_ADDITIONAL_PARAMS\.vendor_binary +kept opaque`,
		`PxgRetVal\.TASK_UNIQUE_ID +kept opaque`,
		`PxgRetVal\.TASK_INFO_PARAMS\.DisplayName +mapped`,
		`PxgRetVal\.TASKSCH_TYPE +mapped`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("output does not match %s", re)
		}
	}
	for _, secret := range []string{"c2VjcmV0LXVubG9jay0xMjM0", "ZW5jcnlwdGVkLXJ1bi1hcy1wYXNzd29yZA==", "vendor-secret-0001", "proxy-password-5678", "cHJveHk=", "deep-secret-9"} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("the output shows the secret %q", secret)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", r.stdout)
	}
}
