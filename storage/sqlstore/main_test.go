package sqlstore_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
)

// The tests re-execute their own binary as child processes (crash safety,
// migrations from several processes); childEnv tells a child what to do.
const (
	childEnv        = "TASKFLEET_SQLSTORE_CHILD"
	childDialectEnv = "TASKFLEET_SQLSTORE_CHILD_DIALECT"
	childDSNEnv     = "TASKFLEET_SQLSTORE_CHILD_DSN"
	childArgEnv     = "TASKFLEET_SQLSTORE_CHILD_ARG"
)

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "crash-writer":
		os.Exit(childCrashWriter())
	case "open":
		os.Exit(childOpen())
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", childEnv, os.Getenv(childEnv))
		os.Exit(2)
	}
}

func childStore() (*sqlstore.Store, error) {
	return sqlstore.Open(context.Background(), sqlstore.Config{
		Dialect: sqlstore.Dialect(os.Getenv(childDialectEnv)),
		DSN:     os.Getenv(childDSNEnv),
	})
}

// childOpen opens the database (migrating it if needed) and creates a task
// named after its argument.
func childOpen() int {
	s, err := childStore()
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	defer s.Close()
	rec := storage.TaskRecord{ID: os.Getenv(childArgEnv), Name: os.Getenv(childArgEnv), Kind: "server", Revision: 1, Body: []byte(`{}`)}
	if err := s.CreateTask(context.Background(), storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{Number: 1, Action: "create", Body: rec.Body}}); err != nil {
		fmt.Fprintln(os.Stderr, "create:", err)
		return 1
	}
	return 0
}
