package storage_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestContractIsLeaf keeps the storage contract free of the domain: a
// backend written against it must not pull in the scope package (and
// through it cel-go and its protobuf runtime).
func TestContractIsLeaf(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/taskfleet/taskfleet/storage").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/taskfleet/taskfleet/scope",
		"github.com/taskfleet/taskfleet/task",
		"cel.dev/",
		"github.com/google/cel-go",
		"google.golang.org/protobuf",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(dep, f)) {
				t.Errorf("package storage depends on %s; the contract must stay a leaf", dep)
			}
		}
	}
}
