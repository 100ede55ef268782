package sqlstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
)

// Open the embedded default, store a task, ingest device results (a retried
// delivery is ignored) and read the statistics.
func ExampleOpenSQLite() {
	ctx := context.Background()
	// A file path in production; ":memory:" for a throw-away database.
	s, err := sqlstore.OpenSQLite(ctx, ":memory:")
	if err != nil {
		panic(err)
	}
	defer s.Close()

	at := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	task := storage.TaskRecord{ID: "t1", Name: "Nightly scan", SearchName: "nightly scan", Kind: "group", GroupID: "g1", Revision: 1, CreatedAt: at, UpdatedAt: at, Body: []byte(`{}`)}
	if err := s.CreateTask(ctx, storage.CreateTaskParams{Task: task, Revision: storage.RevisionRecord{Number: 1, At: at, Action: "create", Body: task.Body}}); err != nil {
		panic(err)
	}
	batch := []storage.ResultRecord{
		{TaskID: "t1", DeviceID: "pc-1", RunID: 1, Seq: 1, State: "running", UpdatedAt: at},
		{TaskID: "t1", DeviceID: "pc-2", RunID: 1, Seq: 2, State: "completed", UpdatedAt: at},
		{TaskID: "t1", DeviceID: "pc-1", RunID: 1, Seq: 2, State: "completed", UpdatedAt: at},
	}
	n, _ := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: batch})
	fmt.Println("applied:", n)
	n, _ = s.UpsertResults(ctx, storage.UpsertResultsParams{Results: batch}) // a retried delivery
	fmt.Println("applied again:", n)
	st, _ := s.TaskStatistics(ctx, "t1")
	fmt.Println("completed:", st.ByState["completed"], "of", st.Total)
	// Output:
	// applied: 3
	// applied again: 0
	// completed: 2 of 2
}

// Open PostgreSQL with pool settings. The schema is created or upgraded on
// Open; several processes may open the same database at once.
func ExampleOpen_postgres() {
	cfg := sqlstore.Config{
		Dialect:         sqlstore.Postgres,
		DSN:             "postgres://taskfleet@db.example:5432/taskfleet?sslmode=verify-full",
		MaxOpenConns:    32,
		ConnMaxLifetime: 15 * time.Minute,
	}
	_ = cfg // s, err := sqlstore.Open(ctx, cfg)
	fmt.Println(cfg.Dialect)
	// Output: postgres
}
