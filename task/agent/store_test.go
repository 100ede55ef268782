package agent_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task/agent"
	"github.com/taskfleet/taskfleet/task/agent/agenttest"
	"github.com/taskfleet/taskfleet/task/transport"
)

var t0 = time.Date(2026, 3, 23, 0, 0, 0, 0, time.UTC)

func def(id string) transport.Definition {
	s := schedule.Default(schedule.Weekly, t0, time.UTC)
	s.RandomDelay = schedule.RandomDelay{Mode: schedule.DelayInterval, IntervalMinutes: 15}
	return transport.Definition{
		Task: transport.TaskSpec{ID: id, Name: "scan " + id, Application: "ES", Type: "scan", Scope: transport.ScopeSpec{Kind: "group"},
			Schedule: s, Restart: restart.Default(), Settings: json.RawMessage(`{"action":"report"}`), Revision: 3, SettingsRevision: 2},
		Since: t0, Devices: 10, LastManual: &transport.Start{TaskID: id, RunID: 44, At: t0, Manual: true},
	}
}

func TestMemStoreConformance(t *testing.T) {
	t.Parallel()
	agenttest.RunStore(t, agenttest.StoreConfig{Open: func(*testing.T, string) agent.Store { return agent.NewMemStore() }})
}
