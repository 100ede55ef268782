package engine_test

import (
	"fmt"
	"os"
	"testing"
)

// The replica test re-executes the test binary as server replica
// processes; childEnv tells a child what to do.
const (
	childEnv    = "TASKFLEET_ENGINE_CHILD"
	childDSNEnv = "TASKFLEET_ENGINE_CHILD_DSN"
	childIDEnv  = "TASKFLEET_ENGINE_CHILD_ID"
	// childStallEnv: "hold" blocks the replica while it holds a claim,
	// "stall" delays one completion past the lease TTL.
	childStallEnv = "TASKFLEET_ENGINE_CHILD_STALL"
)

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "replica":
		os.Exit(childReplica())
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", childEnv, os.Getenv(childEnv))
		os.Exit(2)
	}
}
