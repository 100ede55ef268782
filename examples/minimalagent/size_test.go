package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/taskfleet/taskfleet/task/transport"
)

// The agent is light: the smallest device program, built stripped as a
// vendor ships it, stays within the size budget, and runs (it sends its
// first heartbeat). The budgets are the goal for the in-memory
// store (8 MB; 2.9 MB measured with Go 1.26 on linux/amd64) and, for the
// SQLite store, the driver's weight plus headroom (7.6 MB measured).
// Anything that links the task model, CEL, protobuf or validator into
// the agent again blows the first budget.
func TestMinimalAgentBinarySize(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pkg    string
		budget int64
	}{
		{".", 8_000_000},
		{"./sqliteagent", 10_000_000},
	} {
		bin := filepath.Join(t.TempDir(), "agent")
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-ldflags=-s -w", "-o", bin, c.pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", c.pkg, err, out)
		}
		fi, err := os.Stat(bin)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes", c.pkg, fi.Size())
		if fi.Size() > c.budget {
			t.Errorf("%s: the stripped agent is %d bytes, over its budget of %d (go tool nm -size -sort size shows what grew)", c.pkg, fi.Size(), c.budget)
		}
		out, err := exec.Command(bin).Output()
		if err != nil {
			t.Fatalf("%s: %v", c.pkg, err)
		}
		m, err := transport.DecodeBytes(bytes.TrimSpace(out))
		if err != nil {
			t.Fatalf("%s printed %q: %v", c.pkg, out, err)
		}
		if m.Kind != transport.Heartbeat || m.Device != "pc-1" || m.Version != transport.ProtocolVersion {
			t.Errorf("%s sent %+v, want a heartbeat of pc-1 at protocol %d", c.pkg, m, transport.ProtocolVersion)
		}
	}
}
