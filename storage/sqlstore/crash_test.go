package sqlstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
)

// crashBatch is the number of results in one batch of the crash test; a
// batch is present either completely or not at all.
const crashBatch = 1000

// childCrashWriter writes batches of results for ever, starting at batch
// number CHILD_ARG. Before each write it prints "begin N", after the commit
// returned "committed N". The parent kills it with SIGKILL.
func childCrashWriter() int {
	ctx := context.Background()
	first, err := strconv.Atoi(os.Getenv(childArgEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad first batch:", err)
		return 2
	}
	s, err := childStore()
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	rec := storage.TaskRecord{ID: "crash", Name: "crash", Kind: "server", Revision: 1, Body: []byte(`{}`)}
	err = s.CreateTask(ctx, storage.CreateTaskParams{Task: rec, Revision: storage.RevisionRecord{Number: 1, Body: rec.Body}})
	if err != nil && !errors.Is(err, storage.ErrConflict) {
		fmt.Fprintln(os.Stderr, "create:", err)
		return 1
	}
	at := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	batch := make([]storage.ResultRecord, crashBatch)
	for b := first; ; b++ {
		for i := range batch {
			batch[i] = storage.ResultRecord{TaskID: "crash", DeviceID: fmt.Sprintf("b%07d-d%04d", b, i), RunID: 1, Seq: 1, State: "completed", UpdatedAt: at, Message: strings.Repeat("x", 100)}
		}
		fmt.Fprintf(os.Stdout, "begin %d\n", b)
		n, err := s.UpsertResults(ctx, storage.UpsertResultsParams{Results: batch})
		if err != nil || n != crashBatch {
			fmt.Fprintf(os.Stderr, "batch %d: %d, %v\n", b, n, err)
			return 1
		}
		fmt.Fprintf(os.Stdout, "committed %d\n", b)
	}
}

// TestCrashSafety kills a writer process with SIGKILL in the middle of a
// batch write, several times, and checks after each kill that every batch
// the writer saw committed is fully present and that no batch is partly
// present.
func TestCrashSafety(t *testing.T) {
	t.Parallel()
	for _, tg := range []target{
		{"SQLite", sqlstore.SQLite, func(t *testing.T) string { return filepath.Join(t.TempDir(), "crash.db") }},
		{"Postgres", sqlstore.Postgres, func(t *testing.T) string { return pgSchemaDSN(t) }},
	} {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			dsn := tg.dsn(t)
			seed := uint64(time.Now().UnixNano())
			t.Logf("kill points drawn with seed %d", seed)
			rng := rand.New(rand.NewPCG(1, seed))
			committed := map[int]bool{}
			for round := range 3 {
				// Each round numbers its batches apart, so a batch that
				// committed without being reported is never rewritten.
				first := round * 1_000_000
				killAt := first + 2 + rng.IntN(4)
				delay := time.Duration(rng.IntN(3000)) * time.Microsecond
				reported, begun := runAndKill(t, tg, dsn, first, killAt, delay)
				for _, b := range reported {
					committed[b] = true
				}
				checkBatches(t, tg, dsn, committed, begun)
				t.Logf("round %d: killed %v into batch %d; %d batches reported committed", round, delay, begun, len(reported))
			}
		})
	}
}

// runAndKill starts a writer at batch first, kills it delay after it began
// batch killAt, and returns the batches it reported committed and the last
// batch it began.
func runAndKill(t *testing.T, tg target, dsn string, first, killAt int, delay time.Duration) (reported []int, begun int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=crash-writer", childDialectEnv+"="+string(tg.dialect), childDSNEnv+"="+dsn, childArgEnv+"="+strconv.Itoa(first))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		verb, num, _ := strings.Cut(sc.Text(), " ")
		b, err := strconv.Atoi(num)
		if err != nil {
			t.Fatalf("child wrote %q", sc.Text())
		}
		switch verb {
		case "begin":
			begun = b
			if b >= killAt && !killed {
				time.Sleep(delay)
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		case "committed":
			reported = append(reported, b)
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !killed || !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("writer ended without being killed: %v\n%s", err, stderr.String())
	}
	return reported, begun
}

// checkBatches reopens the database and checks every batch: complete or
// absent; every reported batch complete; nothing beyond the last begun.
func checkBatches(t *testing.T, tg target, dsn string, committed map[int]bool, lastBegun int) {
	t.Helper()
	s := open(t, tg.dialect, dsn)
	defer s.Close()
	rows, err := s.DB().Query(`SELECT substr(device_id, 2, 7), COUNT(*) FROM results WHERE task_id = 'crash' GROUP BY substr(device_id, 2, 7)`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	present := map[int]int{}
	for rows.Next() {
		var b string
		var n int
		if err := rows.Scan(&b, &n); err != nil {
			t.Fatal(err)
		}
		num, err := strconv.Atoi(b)
		if err != nil {
			t.Fatalf("unexpected device prefix %q", b)
		}
		present[num] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for b, n := range present {
		if n != crashBatch {
			t.Errorf("batch %d is half-written: %d of %d results visible", b, n, crashBatch)
		}
		if b > lastBegun {
			t.Errorf("batch %d present but never begun", b)
		}
	}
	for b := range committed {
		if present[b] != crashBatch {
			t.Errorf("batch %d was reported committed but has %d of %d results", b, present[b], crashBatch)
		}
	}
	// Statistics agree with the rows.
	st, err := s.TaskStatistics(context.Background(), "crash")
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != len(present)*crashBatch {
		t.Errorf("statistics count %d results, the table %d", st.Total, len(present)*crashBatch)
	}
}
