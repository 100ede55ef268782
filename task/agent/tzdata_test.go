package agent_test

import (
	osexec "os/exec"
	"slices"
	"strings"
	"testing"
)

// TestTZDataBuildTag checks the documented build option: with
// -tags taskfleet_tzdata the agent package builds and links time/tzdata
// (Go's zone database), and without the tag it does not.
func TestTZDataBuildTag(t *testing.T) {
	t.Parallel()
	deps := func(args ...string) []string {
		t.Helper()
		out, err := osexec.Command("go", append([]string{"list", "-deps"}, append(args, ".")...)...).Output()
		if err != nil {
			t.Fatalf("go list -deps %v: %v", args, err)
		}
		return strings.Fields(string(out))
	}
	if !slices.Contains(deps("-tags", "taskfleet_tzdata"), "time/tzdata") {
		t.Error("with -tags taskfleet_tzdata the agent does not link time/tzdata")
	}
	if slices.Contains(deps(), "time/tzdata") {
		t.Error("without the tag the agent links time/tzdata (450 KB every host pays for)")
	}
	if out, err := osexec.Command("go", "build", "-tags", "taskfleet_tzdata", ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags taskfleet_tzdata: %v\n%s", err, out)
	}
}
