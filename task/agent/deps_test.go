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
// never reach a device.
func TestAgentImportsNothingADeviceDoesNotNeed(t *testing.T) {
	t.Parallel()
	out, err := execpkg.Command(runtime.GOROOT()+"/bin/go", "list", "-deps", "github.com/taskfleet/taskfleet/task/agent").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{
		"modernc.org/sqlite",
		"github.com/jackc/pgx",
		"github.com/jmoiron/sqlx",
		"database/sql$", // database/sql/driver (interfaces only, for credentials' Valuer) is fine
		"github.com/taskfleet/taskfleet/storage/",
		"github.com/taskfleet/taskfleet/task/engine",
		"github.com/taskfleet/taskfleet/klt",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			exact, ok := strings.CutSuffix(f, "$")
			if ok && dep == exact || !ok && (dep == f || strings.HasPrefix(dep, strings.TrimSuffix(f, "/")+"/")) {
				t.Errorf("task/agent imports %s", dep)
			}
		}
	}
}
