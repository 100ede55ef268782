package agentsqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/agent/agentsqlite"
	"github.com/taskfleet/taskfleet/task/agent/agenttest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	agenttest.RunStore(t, agenttest.StoreConfig{Durable: true, Open: func(t *testing.T, name string) agent.Store {
		st, err := agentsqlite.Open(context.Background(), filepath.Join(dir, name+".db"))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}})
}

func TestOpenRejectsEmptyPath(t *testing.T) {
	t.Parallel()
	_, err := agentsqlite.Open(context.Background(), "")
	if !errors.Is(err, agent.ErrInvalid) {
		t.Fatalf("Open(\"\") = %v, want ErrInvalid", err)
	}
}
