package credentialstest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/taskfleet/taskfleet/credentials"
)

// NewStore returns a fresh TaskAccounts holding exactly tasks (with their
// ids, names, local flags, revisions and accounts).
type NewStore func(t *testing.T, tasks []credentials.TaskAccount) credentials.TaskAccounts

// RunTaskAccounts checks that a TaskAccounts implementation honours the
// contract documented on credentials.TaskAccounts. sealer seals the test
// passwords.
func RunTaskAccounts(t *testing.T, sealer credentials.Sealer, newStore NewStore) {
	t.Helper()
	acct := func(name, pw string) credentials.Account {
		a, err := credentials.Specify(name, credentials.NewSecret(pw), sealer)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	svc := acct(`CORP\svc`, "pw1")
	svcLower := acct(`corp\SVC`, "pw2")
	other := acct(`CORP\other`, "pw3")
	fixture := []credentials.TaskAccount{
		{TaskID: "t01", TaskName: "one", Revision: 1, Account: svc},
		{TaskID: "t02", TaskName: "two", Revision: 7, Account: svcLower},
		{TaskID: "t03", TaskName: "three", Revision: 1, Account: other},
		{TaskID: "t04", TaskName: "local", Revision: 1, Account: svc, Local: true},
		{TaskID: "t05", TaskName: "default", Revision: 1},
		{TaskID: "t06", TaskName: "six", Revision: 3, Account: svc},
		{TaskID: "t07", TaskName: "seven", Revision: 1, Account: svc},
	}
	ctx := context.Background()

	listAll := func(t *testing.T, s credentials.TaskAccounts, name string, limit int) []string {
		t.Helper()
		var ids []string
		after := ""
		for range 100 {
			page, err := s.ListTasksByAccount(ctx, credentials.ListTasksParams{AccountName: name, After: after, Limit: limit})
			if err != nil {
				t.Fatal(err)
			}
			for _, ta := range page {
				if ta.TaskID <= after {
					t.Fatalf("page out of order: %q after %q", ta.TaskID, after)
				}
				if ta.Local {
					t.Fatalf("listed local task %q", ta.TaskID)
				}
				after = ta.TaskID
				if ta.Account.SameName(name) {
					ids = append(ids, ta.TaskID)
				}
			}
			if len(page) < limit {
				return ids
			}
		}
		t.Fatal("listing does not end")
		return nil
	}

	t.Run("ListMatchesCaseInsensitivelyAndSkipsLocal", func(t *testing.T) {
		s := newStore(t, fixture)
		for _, limit := range []int{1, 2, 3, 100} {
			got := fmt.Sprint(listAll(t, s, `Corp\Svc`, limit))
			if want := "[t01 t02 t06 t07]"; got != want {
				t.Errorf("limit %d: listed %s, want %s", limit, got, want)
			}
		}
		if got := listAll(t, s, "nobody", 10); len(got) != 0 {
			t.Errorf("unknown account listed %v", got)
		}
	})

	t.Run("GetReturnsTheTask", func(t *testing.T) {
		s := newStore(t, fixture)
		got, err := s.GetTaskAccount(ctx, "t02")
		if err != nil || got.TaskName != "two" || got.Revision != 7 || !got.Account.Password.Equal(svcLower.Password) || got.Account.Name != svcLower.Name {
			t.Fatalf("Get(t02) = %+v, %v", got, err)
		}
		if _, err := s.GetTaskAccount(ctx, "nope"); !errors.Is(err, credentials.ErrNotFound) {
			t.Fatalf("Get(unknown): err = %v, want ErrNotFound", err)
		}
	})

	t.Run("SetIsCompareAndSet", func(t *testing.T) {
		s := newStore(t, fixture)
		newAcct := acct(`CORP\svc`, "new")
		rev, err := s.SetTaskAccount(ctx, credentials.SetTaskAccountParams{TaskID: "t06", ExpectedRevision: 3, Account: newAcct})
		if err != nil || rev <= 3 {
			t.Fatalf("Set = %d, %v", rev, err)
		}
		got, _ := s.GetTaskAccount(ctx, "t06")
		if got.Revision != rev || got.Account.Name != newAcct.Name || !got.Account.Password.Equal(newAcct.Password) {
			t.Fatalf("after Set: %+v", got)
		}
		// Stale revision: conflict, unchanged.
		_, err = s.SetTaskAccount(ctx, credentials.SetTaskAccountParams{TaskID: "t06", ExpectedRevision: 3, Account: credentials.Default()})
		if !errors.Is(err, credentials.ErrConflict) {
			t.Fatalf("stale Set: err = %v, want ErrConflict", err)
		}
		if again, _ := s.GetTaskAccount(ctx, "t06"); again.Revision != rev || again.Account.IsDefault() {
			t.Fatalf("a conflicting Set changed the task: %+v", again)
		}
		if _, err := s.SetTaskAccount(ctx, credentials.SetTaskAccountParams{TaskID: "nope", ExpectedRevision: 1}); !errors.Is(err, credentials.ErrNotFound) {
			t.Fatalf("Set(unknown): err = %v, want ErrNotFound", err)
		}
		if _, err := s.SetTaskAccount(ctx, credentials.SetTaskAccountParams{TaskID: "t04", ExpectedRevision: 1, Account: newAcct}); !errors.Is(err, credentials.ErrInvalid) {
			t.Fatalf("Set(local): err = %v, want ErrInvalid", err)
		}
	})

	t.Run("SetToDefaultLeavesTheListing", func(t *testing.T) {
		s := newStore(t, fixture)
		if _, err := s.SetTaskAccount(ctx, credentials.SetTaskAccountParams{TaskID: "t01", ExpectedRevision: 1, Account: credentials.Default()}); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(listAll(t, s, `CORP\svc`, 10)); got != "[t02 t06 t07]" {
			t.Fatalf("listed %s after deleting t01's credentials", got)
		}
		got, _ := s.GetTaskAccount(ctx, "t01")
		if !got.Account.IsDefault() {
			t.Fatalf("t01 = %v, want the default account", got.Account)
		}
	})

	t.Run("ConcurrentSetsOneWins", func(t *testing.T) {
		s := newStore(t, fixture)
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := range 8 {
			wg.Go(func() {
				a := acct(`CORP\svc`, fmt.Sprint("racer-", i))
				_, err := s.SetTaskAccount(ctx, credentials.SetTaskAccountParams{TaskID: "t07", ExpectedRevision: 1, Account: a})
				if err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				} else if !errors.Is(err, credentials.ErrConflict) {
					t.Errorf("racer %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d concurrent compare-and-sets won, want 1", wins)
		}
	})
}
