// Package agentsqlite is the durable local store of the device agent
// (package task/agent): the delivered task definitions, each task's local
// schedule state and the outbox of results and events live in one SQLite
// file (modernc.org/sqlite, pure Go, driver name "sqlite") and survive
// agent and device restarts.
//
// It is a package of its own so that an agent built with another store
// (agent.MemStore, or the vendor's own agent.Store) links no SQL driver:
//
//	st, err := agentsqlite.Open(ctx, "/var/lib/agent/tasks.db")
//	if err != nil { ... }
//	defer st.Close()
//	a, err := agent.New(ctx, agent.Config{Device: id, Store: st, Executor: app, Location: zone})
//
// The store passes the agent store conformance suite, agenttest.RunStore.
package agentsqlite
