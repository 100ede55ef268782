package storagetest

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/storage"
)

// testStatisticsCounters checks that TaskStatistics follows every kind of
// write, whatever keeps the counts (a COUNT over the rows, PostgreSQL's
// delta rows, SQLite's trigger-maintained counters): new results, newer
// reports that change the state or the restart flag, progress in the same
// state, stale and repeated deliveries (ignored: the upsert is
// idempotent), results for two tasks in one batch, and DeleteTask (a task
// created again under the same id starts from zero). The expected counts
// come from a model of the documented newest-(run, seq)-wins rule.
func testStatisticsCounters(t *testing.T, s storage.Store, _ Features) {
	type cur struct {
		run, seq int64
		state    string
		restart  bool
	}
	states := []string{"scheduled", "pending", "running", "completed", "failed", "restart_required"}
	model := map[string]map[string]cur{"t": {}, "u": {}}
	for id := range model {
		create(t, s, NewTaskRecord(id, id))
	}
	want := func(task string) storage.Statistics {
		st := storage.Statistics{ByState: map[string]int{}}
		for _, c := range model[task] {
			st.ByState[c.state]++
			st.Total++
			if c.restart {
				st.RestartRequired++
			}
		}
		return st
	}
	check := func(when string) {
		t.Helper()
		for task := range model {
			got, err := s.TaskStatistics(ctx(), task)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want(task), got, emptyAsNil); d != "" {
				t.Fatalf("%s: TaskStatistics(%s) (-model +store):\n%s", when, task, d)
			}
		}
	}
	rng := rand.New(rand.NewPCG(15, 8))
	for round := range 30 {
		var batch []storage.ResultRecord
		seen := map[string]bool{}
		for range 1 + rng.IntN(20) {
			task := []string{"t", "u"}[rng.IntN(2)]
			dev := fmt.Sprintf("d%02d", rng.IntN(25))
			if seen[task+"/"+dev] {
				continue // one record per device and batch keeps the model simple
			}
			seen[task+"/"+dev] = true
			c := model[task][dev]
			r := storage.ResultRecord{TaskID: task, DeviceID: dev, RunID: c.run, Seq: c.seq + 1,
				State: states[rng.IntN(len(states))], RestartRequired: rng.IntN(3) == 0, Progress: rng.IntN(100), UpdatedAt: base}
			switch rng.IntN(5) {
			case 0: // a stale delivery: never newer than what is stored
				r.Seq = c.seq
			case 1: // a new run
				r.RunID, r.Seq = c.run+1, 1
			case 2: // progress in the same state
				if _, ok := model[task][dev]; ok {
					r.State, r.RestartRequired = c.state, c.restart
				}
			}
			_, stored := model[task][dev]
			if !stored || r.RunID > c.run || (r.RunID == c.run && r.Seq > c.seq) {
				model[task][dev] = cur{r.RunID, r.Seq, r.State, r.RestartRequired}
			}
			batch = append(batch, r)
		}
		for range 2 { // the second delivery of the same batch changes nothing
			if _, err := s.UpsertResults(ctx(), storage.UpsertResultsParams{Results: batch}); err != nil {
				t.Fatal(err)
			}
		}
		check(fmt.Sprintf("round %d", round))
	}
	if err := s.DeleteTask(ctx(), storage.DeleteTaskParams{ID: "u"}); err != nil {
		t.Fatal(err)
	}
	model["u"] = map[string]cur{}
	create(t, s, NewTaskRecord("u", "u"))
	check("after DeleteTask and re-creating the task")
	r := storage.ResultRecord{TaskID: "u", DeviceID: "d00", RunID: 1, Seq: 1, State: "pending", UpdatedAt: base}
	if _, err := s.UpsertResults(ctx(), storage.UpsertResultsParams{Results: []storage.ResultRecord{r}}); err != nil {
		t.Fatal(err)
	}
	model["u"]["d00"] = cur{1, 1, "pending", false}
	check("after a result of the re-created task")
}
