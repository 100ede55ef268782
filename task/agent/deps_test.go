package agent_test

import (
	execpkg "os/exec"
	"runtime"
	"strings"
	"testing"
)

// The agent runs on every device: it must not link what a device does not
// need. A SQL driver comes only with the store subpackage the host picks
// (agentsqlite); the server-side packages (storage backends, the engine)
// never reach a device; nor does the task model (package task, and scope
// with its CEL selections and validator): the agent speaks the wire
// protocol's types only. The device channels (transport, inproc,
// httptransport) are held to the same rule, since a device links one.
func TestAgentImportsNothingADeviceDoesNotNeed(t *testing.T) {
	t.Parallel()
	forbidden := []string{
		"modernc.org/sqlite",
		"github.com/jackc/pgx",
		"github.com/jmoiron/sqlx",
		"database/sql$", // database/sql/driver (interfaces only, for credentials' Valuer) is fine
		"github.com/taskfleet/taskfleet/storage/",
		"github.com/taskfleet/taskfleet/task/engine",
		"github.com/taskfleet/taskfleet/klt",
		// The task model and what it links: task/transport and task/agent
		// are fine, package task itself is not.
		"github.com/taskfleet/taskfleet/task$",
		"github.com/taskfleet/taskfleet/scope",
		"cel.dev/",
		"github.com/google/cel-go",
		"github.com/go-playground/validator",
		"google.golang.org/protobuf",
		// Metrics go through the OpenTelemetry API only: the SDK and any
		// exporter are the host's choice.
		"go.opentelemetry.io/otel/sdk",
		"go.opentelemetry.io/otel/exporters",
		"github.com/prometheus/",
	}
	for _, pkg := range []string{
		"github.com/taskfleet/taskfleet/task/agent",
		"github.com/taskfleet/taskfleet/task/transport",
		"github.com/taskfleet/taskfleet/task/transport/inproc",
		"github.com/taskfleet/taskfleet/task/transport/httptransport",
	} {
		for _, dep := range deps(t, pkg) {
			if f := forbiddenMatch(dep, forbidden); f != "" {
				t.Errorf("%s imports %s (forbidden: %s)", pkg, dep, f)
			}
		}
	}
}

// The SQLite store adds its driver and nothing else of the forbidden
// list.
func TestAgentSQLiteImportsOnlyItsDriver(t *testing.T) {
	t.Parallel()
	forbidden := []string{"github.com/taskfleet/taskfleet/task$", "github.com/taskfleet/taskfleet/scope", "cel.dev/",
		"github.com/go-playground/validator", "google.golang.org/protobuf", "github.com/jackc/pgx", "github.com/taskfleet/taskfleet/storage/"}
	for _, dep := range deps(t, "github.com/taskfleet/taskfleet/task/agent/agentsqlite") {
		if f := forbiddenMatch(dep, forbidden); f != "" {
			t.Errorf("agentsqlite imports %s (forbidden: %s)", dep, f)
		}
	}
}

// The rule matches what it should: a test of the test.
func TestForbiddenMatch(t *testing.T) {
	t.Parallel()
	rules := []string{"github.com/taskfleet/taskfleet/task$", "github.com/taskfleet/taskfleet/scope", "cel.dev/", "github.com/taskfleet/taskfleet/storage/"}
	for dep, want := range map[string]bool{
		"github.com/taskfleet/taskfleet/task":             true,
		"github.com/taskfleet/taskfleet/task/transport":   false,
		"github.com/taskfleet/taskfleet/scope":            true,
		"github.com/taskfleet/taskfleet/scope/inmem":      true,
		"github.com/taskfleet/taskfleet/scopes":           false,
		"cel.dev/cel-go/cel":                              true,
		"cel.dev/expr":                                    true,
		"github.com/taskfleet/taskfleet/storage":          false, // the light contract package
		"github.com/taskfleet/taskfleet/storage/memstore": true,
	} {
		if got := forbiddenMatch(dep, rules) != ""; got != want {
			t.Errorf("%s: forbidden %v, want %v", dep, got, want)
		}
	}
}

// forbiddenMatch returns the rule of forbidden that dep breaks ("" for
// none). A rule ending in $ is one package; a rule ending in / is
// everything under a path (not the package at the path itself); other
// rules are a package or module path with everything under it.
func forbiddenMatch(dep string, forbidden []string) string {
	for _, f := range forbidden {
		exact, ok := strings.CutSuffix(f, "$")
		switch {
		case ok && dep == exact:
			return f
		case !ok && (dep == f || strings.HasPrefix(dep, strings.TrimSuffix(f, "/")+"/")):
			return f
		}
	}
	return ""
}

// deps lists the packages pkg links (go list -deps).
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := execpkg.Command(runtime.GOROOT()+"/bin/go", "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}
