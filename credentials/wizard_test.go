package credentials_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/credentials/credentialstest"
)

const (
	oldPW   = "Old-Passw0rd!quux"
	newPW   = "New-Passw0rd!corge"
	otherPW = "Other-Passw0rd!grault"
)

type wiz struct {
	sealer *credentials.AESGCM
	store  *credentialstest.MemTaskAccounts
	wizard *credentials.Wizard
	logs   *bytes.Buffer
	before map[string]credentials.TaskAccount
}

func keyring(t testing.TB, active string, ids ...string) *credentials.AESGCM {
	t.Helper()
	var keys []credentials.Key
	for i, id := range ids {
		keys = append(keys, credentials.Key{ID: id, Material: bytes.Repeat([]byte{byte(i + 1)}, credentials.KeySize)})
	}
	s, err := credentials.NewAESGCM(credentials.AESGCMConfig{Keys: keys, ActiveKeyID: active})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func account(t testing.TB, s credentials.Sealer, name, pw string) credentials.Account {
	t.Helper()
	a, err := credentials.Specify(name, credentials.NewSecret(pw), s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// setup builds the product documentation's scenario: tasks of CORP\svc with the old, the new
// and other passwords, plus tasks that must never be touched.
func setup(t *testing.T, cfg func(*credentials.WizardConfig)) *wiz {
	t.Helper()
	s := keyring(t, "k1", "k1")
	retired := keyring(t, "gone", "gone") // a key the wizard's sealer lacks
	tasks := []credentials.TaskAccount{
		{TaskID: "t01", TaskName: "Update", Revision: 1, Account: account(t, s, `CORP\svc`, oldPW)},
		{TaskID: "t02", TaskName: "Scan", Revision: 4, Account: account(t, s, `corp\SVC`, oldPW)},
		{TaskID: "t03", TaskName: "Inventory", Revision: 1, Account: account(t, s, `CORP\svc`, otherPW)},
		{TaskID: "t04", TaskName: "Backup", Revision: 2, Account: account(t, s, `CORP\svc`, newPW)},
		{TaskID: "t05", TaskName: "Local scan", Revision: 1, Local: true, Account: account(t, s, `CORP\svc`, oldPW)},
		{TaskID: "t06", TaskName: "Admin task", Revision: 1, Account: account(t, s, `CORP\admin`, oldPW)},
		{TaskID: "t07", TaskName: "Default", Revision: 1},
		{TaskID: "t08", TaskName: "Old key", Revision: 1, Account: account(t, retired, `CORP\svc`, oldPW)},
		{TaskID: "t09", TaskName: "Deploy", Revision: 1, Account: account(t, s, `CORP\svc`, otherPW)},
		{TaskID: "t10", TaskName: "Patch", Revision: 9, Account: account(t, s, `CORP\svc`, otherPW)},
	}
	w := &wiz{sealer: s, store: credentialstest.NewMemTaskAccounts(tasks...), logs: &bytes.Buffer{}, before: map[string]credentials.TaskAccount{}}
	for _, ta := range tasks {
		w.before[ta.TaskID] = ta
	}
	c := credentials.WizardConfig{Tasks: w.store, Sealer: s, Logger: zerolog.New(w.logs), PageSize: 3}
	if cfg != nil {
		cfg(&c)
	}
	var err error
	w.wizard, err = credentials.NewWizard(c)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *wiz) get(t *testing.T, id string) credentials.TaskAccount {
	t.Helper()
	ta, err := w.store.GetTaskAccount(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return ta
}

// password opens a task's password ("" for the default account).
func (w *wiz) password(t *testing.T, id string) string {
	t.Helper()
	ta := w.get(t, id)
	if ta.Account.IsDefault() {
		return ""
	}
	pw, err := w.sealer.Open(ta.Account.Password)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return pw.Reveal()
}

func (w *wiz) unchanged(t *testing.T, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if diff := cmp.Diff(w.before[id], w.get(t, id)); diff != "" {
			t.Errorf("task %s changed (-before +after):\n%s", id, diff)
		}
	}
}

var ignoreErr = cmpopts.IgnoreFields(credentials.TaskResult{}, "Err", "Error")

type res = credentials.TaskResult

func TestWizardSeedsScenario(t *testing.T) {
	t.Parallel()
	w := setup(t, nil)
	ctx := t.Context()
	ch, err := w.wizard.Start(ctx, credentials.NewCredentials{
		AccountName:      `CORP\svc`,
		NewPassword:      credentials.NewSecret(newPW),
		PreviousPassword: credentials.NewSecret(oldPW),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Step 1: automatic replacement where the previous password matches.
	wantAuto := []res{
		{TaskID: "t01", TaskName: "Update", Action: credentials.ActionReplace, Outcome: credentials.OutcomeChanged, NewRevision: 2},
		{TaskID: "t02", TaskName: "Scan", Action: credentials.ActionReplace, Outcome: credentials.OutcomeChanged, NewRevision: 5},
		{TaskID: "t04", TaskName: "Backup", Action: credentials.ActionReplace, Outcome: credentials.OutcomeAlreadyDone},
	}
	if diff := cmp.Diff(wantAuto, ch.AutoReplaced(), ignoreErr); diff != "" {
		t.Fatalf("step 1 (-want +got):\n%s", diff)
	}
	wantPending := []credentials.PendingTask{
		{TaskID: "t03", TaskName: "Inventory", Revision: 1, Reason: credentials.PendingPreviousMismatch},
		{TaskID: "t08", TaskName: "Old key", Revision: 1, Reason: credentials.PendingCannotOpen},
		{TaskID: "t09", TaskName: "Deploy", Revision: 1, Reason: credentials.PendingPreviousMismatch},
		{TaskID: "t10", TaskName: "Patch", Revision: 9, Reason: credentials.PendingPreviousMismatch},
	}
	if diff := cmp.Diff(wantPending, ch.Pending()); diff != "" {
		t.Fatalf("pending (-want +got):\n%s", diff)
	}
	if w.password(t, "t01") != newPW || w.password(t, "t02") != newPW {
		t.Fatal("step 1 did not replace the passwords")
	}
	if w.get(t, "t02").Account.Name != `corp\SVC` {
		t.Fatal("the task's own spelling of the account name must be kept")
	}
	// Step 2.
	rep, err := ch.Apply(ctx, map[string]credentials.Action{
		"t08": credentials.ActionEnforce,
		"t09": credentials.ActionDeleteCredentials,
		"t10": credentials.ActionEnforce,
		// t03: no choice -> no action
	})
	if err != nil {
		t.Fatal(err)
	}
	// Step 3.
	want := credentials.Report{AccountName: `CORP\svc`, Results: []res{
		wantAuto[0], wantAuto[1],
		{TaskID: "t03", TaskName: "Inventory", Action: credentials.ActionNone, Outcome: credentials.OutcomeSkipped},
		wantAuto[2],
		{TaskID: "t08", TaskName: "Old key", Action: credentials.ActionEnforce, Outcome: credentials.OutcomeChanged, NewRevision: 2},
		{TaskID: "t09", TaskName: "Deploy", Action: credentials.ActionDeleteCredentials, Outcome: credentials.OutcomeChanged, NewRevision: 2},
		{TaskID: "t10", TaskName: "Patch", Action: credentials.ActionEnforce, Outcome: credentials.OutcomeChanged, NewRevision: 10},
	}}
	if diff := cmp.Diff(want, rep, ignoreErr); diff != "" {
		t.Fatalf("report (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, ch.Report(), ignoreErr); diff != "" {
		t.Fatalf("Report() (-want +got):\n%s", diff)
	}
	for id, wantPW := range map[string]string{"t01": newPW, "t02": newPW, "t03": otherPW, "t04": newPW, "t08": newPW, "t09": "", "t10": newPW} {
		if got := w.password(t, id); got != wantPW {
			t.Errorf("task %s password is %q, want %q", id, got, wantPW)
		}
	}
	if !w.get(t, "t09").Account.IsDefault() {
		t.Error("t09 must run under the default account")
	}
	w.unchanged(t, "t03", "t04", "t05", "t06", "t07")
	if w.store.Writes() != 5 {
		t.Errorf("%d writes, want 5", w.store.Writes())
	}
	if got := rep.Counts(); got[credentials.OutcomeChanged] != 5 || got[credentials.OutcomeSkipped] != 1 || got[credentials.OutcomeAlreadyDone] != 1 {
		t.Errorf("Counts() = %v", got)
	}
	leakFree(t, w, rep)
}

// leakFree greps the report JSON, the logs and the errors for passwords.
func leakFree(t *testing.T, w *wiz, rep credentials.Report) {
	t.Helper()
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	out := string(js) + w.logs.String() + fmt.Sprintf("%v %+v %#v", rep, rep, rep)
	for _, r := range rep.Results {
		if r.Err != nil {
			out += r.Err.Error()
		}
	}
	for _, pw := range []string{oldPW, newPW, otherPW} {
		if strings.Contains(out, pw) {
			t.Fatalf("a password leaks into the report, logs or errors:\n%s", out)
		}
	}
}

func TestWizardWithoutPreviousPassword(t *testing.T) {
	t.Parallel()
	w := setup(t, nil)
	ch, err := w.wizard.Start(t.Context(), credentials.NewCredentials{AccountName: `CORP\SVC`, NewPassword: credentials.NewSecret(newPW)})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]res{{TaskID: "t04", TaskName: "Backup", Action: credentials.ActionReplace, Outcome: credentials.OutcomeAlreadyDone}}, ch.AutoReplaced(), ignoreErr); diff != "" {
		t.Fatal(diff)
	}
	var reasons []string
	for _, p := range ch.Pending() {
		reasons = append(reasons, p.TaskID+":"+string(p.Reason))
	}
	want := "t01:previous_password_not_given t02:previous_password_not_given t03:previous_password_not_given t08:password_cannot_be_opened t09:previous_password_not_given t10:previous_password_not_given"
	if got := strings.Join(reasons, " "); got != want {
		t.Fatalf("pending = %s\nwant      %s", got, want)
	}
	if w.store.Writes() != 0 {
		t.Fatal("step 1 wrote without a previous password")
	}
	// Apply with no choices changes nothing.
	rep, err := ch.Apply(t.Context(), nil)
	if err != nil || rep.Counts()[credentials.OutcomeSkipped] != 6 || w.store.Writes() != 0 {
		t.Fatalf("Apply(nil) = %v, %v; writes %d", rep.Counts(), err, w.store.Writes())
	}
}

func TestWizardIsIdempotent(t *testing.T) {
	t.Parallel()
	w := setup(t, nil)
	creds := credentials.NewCredentials{AccountName: `CORP\svc`, NewPassword: credentials.NewSecret(newPW), PreviousPassword: credentials.NewSecret(oldPW)}
	choices := map[string]credentials.Action{"t03": credentials.ActionEnforce, "t08": credentials.ActionEnforce, "t09": credentials.ActionDeleteCredentials, "t10": credentials.ActionEnforce}
	ch, err := w.wizard.Start(t.Context(), creds)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Apply(t.Context(), choices); err != nil {
		t.Fatal(err)
	}
	writes := w.store.Writes()
	// Apply again on the same Change: the tasks moved (our own writes),
	// the wizard re-reads them and finds them done.
	rep, err := ch.Apply(t.Context(), choices)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Outcome != credentials.OutcomeAlreadyDone && r.Outcome != credentials.OutcomeChanged {
			t.Errorf("second Apply: %s %s", r.TaskID, r.Outcome)
		}
		if strings.HasPrefix(r.TaskID, "t0") && r.Action != credentials.ActionReplace && r.Outcome != credentials.OutcomeAlreadyDone {
			t.Errorf("second Apply rewrote %s: %s", r.TaskID, r.Outcome)
		}
	}
	// The whole wizard again, from step 1.
	ch2, err := w.wizard.Start(t.Context(), creds)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch2.Pending()) != 0 {
		t.Errorf("a rerun has pending tasks: %v", ch2.Pending())
	}
	for _, r := range ch2.AutoReplaced() {
		if r.Outcome != credentials.OutcomeAlreadyDone {
			t.Errorf("rerun: %s %s", r.TaskID, r.Outcome)
		}
	}
	if w.store.Writes() != writes {
		t.Errorf("retries wrote %d more times", w.store.Writes()-writes)
	}
}

func TestWizardConcurrentEdits(t *testing.T) {
	t.Parallel()
	type edit func(w *wiz, t *testing.T, id string)
	setPW := func(pw string) edit {
		return func(w *wiz, t *testing.T, id string) {
			cur := w.get(t, id)
			cur.Account = account(t, w.sealer, cur.Account.Name, pw)
			cur.Revision++
			w.store.Put(cur)
		}
	}
	rename := func(w *wiz, t *testing.T, id string) {
		cur := w.get(t, id)
		cur.Account = account(t, w.sealer, `CORP\someone-else`, "x")
		cur.Revision++
		w.store.Put(cur)
	}
	bumpOnly := func(w *wiz, t *testing.T, id string) {
		cur := w.get(t, id)
		cur.Revision++
		w.store.Put(cur)
	}
	tests := []struct {
		name        string
		task        string
		action      credentials.Action // "" = step 1 automatic replacement
		edit        edit
		times       int
		wantOutcome credentials.Outcome
		wantPending credentials.PendingReason
		wantPW      string
	}{
		{"auto: other writer set the new password", "t01", "", setPW(newPW), 1, credentials.OutcomeAlreadyDone, "", newPW},
		{"auto: other writer changed an unrelated field", "t01", "", bumpOnly, 1, credentials.OutcomeChanged, "", newPW},
		{"auto: other writer set another password -> pending", "t01", "", setPW(otherPW), 1, "", credentials.PendingPreviousMismatch, otherPW},
		{"auto: other writer switched the account", "t01", "", rename, 1, credentials.OutcomeConflict, "", "x"},
		{"auto: keeps moving", "t01", "", bumpOnly, 100, credentials.OutcomeConflict, "", oldPW},
		{"enforce: other writer set another password", "t10", credentials.ActionEnforce, setPW("zzz"), 1, credentials.OutcomeChanged, "", newPW},
		{"enforce: other writer switched the account", "t10", credentials.ActionEnforce, rename, 1, credentials.OutcomeConflict, "", "x"},
		{"delete: other writer already deleted", "t09", credentials.ActionDeleteCredentials, func(w *wiz, t *testing.T, id string) {
			cur := w.get(t, id)
			cur.Account = credentials.Default()
			cur.Revision++
			w.store.Put(cur)
		}, 1, credentials.OutcomeAlreadyDone, "", ""},
		{"delete: task deleted meanwhile", "t09", credentials.ActionDeleteCredentials, func(w *wiz, t *testing.T, id string) { w.store.Delete(id) }, 1, credentials.OutcomeNotFound, "", "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := setup(t, nil)
			var n atomic.Int32
			w.store.BeforeSet = func(_ context.Context, p credentials.SetTaskAccountParams) error {
				if p.TaskID == tt.task && int(n.Add(1)) <= tt.times {
					tt.edit(w, t, p.TaskID)
				}
				return nil
			}
			ch, err := w.wizard.Start(t.Context(), credentials.NewCredentials{AccountName: `CORP\svc`, NewPassword: credentials.NewSecret(newPW), PreviousPassword: credentials.NewSecret(oldPW)})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := ch.Apply(t.Context(), map[string]credentials.Action{"t09": credentials.ActionDeleteCredentials, "t10": credentials.ActionEnforce})
			if err != nil {
				t.Fatal(err)
			}
			var got credentials.TaskResult
			for _, r := range rep.Results {
				if r.TaskID == tt.task {
					got = r
				}
			}
			if tt.wantPending != "" {
				var reason credentials.PendingReason
				for _, p := range ch.Pending() {
					if p.TaskID == tt.task {
						reason = p.Reason
					}
				}
				if reason != tt.wantPending || got.Outcome != credentials.OutcomeSkipped {
					t.Fatalf("pending reason %q, outcome %q; want %q and skipped", reason, got.Outcome, tt.wantPending)
				}
			} else if got.Outcome != tt.wantOutcome {
				t.Fatalf("outcome %q (%v), want %q", got.Outcome, got.Err, tt.wantOutcome)
			}
			if tt.wantPW == "-" {
				return
			}
			if pw := w.password(t, tt.task); pw != tt.wantPW {
				t.Fatalf("task password %q, want %q", pw, tt.wantPW)
			}
		})
	}
}

func TestWizardFailuresLeaveTasksWhole(t *testing.T) {
	t.Parallel()
	w := setup(t, nil)
	failing := map[string]bool{"t02": true, "t10": true}
	w.store.BeforeSet = func(_ context.Context, p credentials.SetTaskAccountParams) error {
		if failing[p.TaskID] {
			return errors.New("database is down")
		}
		return nil
	}
	ch, err := w.wizard.Start(t.Context(), credentials.NewCredentials{AccountName: `CORP\svc`, NewPassword: credentials.NewSecret(newPW), PreviousPassword: credentials.NewSecret(oldPW)})
	if err != nil {
		t.Fatal(err)
	}
	choices := map[string]credentials.Action{"t10": credentials.ActionEnforce, "t09": credentials.ActionDeleteCredentials}
	rep, err := ch.Apply(t.Context(), choices)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]credentials.Outcome{}
	for _, r := range rep.Results {
		outcomes[r.TaskID] = r.Outcome
		if r.Outcome == credentials.OutcomeFailed && !strings.Contains(r.Error, "database is down") {
			t.Errorf("%s: error text %q", r.TaskID, r.Error)
		}
	}
	if outcomes["t02"] != credentials.OutcomeFailed || outcomes["t10"] != credentials.OutcomeFailed || outcomes["t01"] != credentials.OutcomeChanged || outcomes["t09"] != credentials.OutcomeChanged {
		t.Fatalf("outcomes = %v", outcomes)
	}
	// Failed tasks keep their whole old account.
	w.unchanged(t, "t02", "t10")
	// Retry once the store is back: the failed ones change, the rest are
	// already done.
	failing = map[string]bool{}
	ch, err = w.wizard.Start(t.Context(), credentials.NewCredentials{AccountName: `CORP\svc`, NewPassword: credentials.NewSecret(newPW), PreviousPassword: credentials.NewSecret(oldPW)})
	if err != nil {
		t.Fatal(err)
	}
	// t09 is no longer pending (it runs under the default account now), so
	// the retry passes only the choices for tasks still pending.
	retry := map[string]credentials.Action{}
	for _, p := range ch.Pending() {
		if a, ok := choices[p.TaskID]; ok {
			retry[p.TaskID] = a
		}
	}
	rep, err = ch.Apply(t.Context(), retry)
	if err != nil {
		t.Fatal(err)
	}
	if w.password(t, "t02") != newPW || w.password(t, "t10") != newPW {
		t.Fatal("retry did not finish the failed tasks")
	}
	leakFree(t, w, rep)
}

func TestWizardCanceledMidway(t *testing.T) {
	t.Parallel()
	w := setup(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, err := w.wizard.Start(ctx, credentials.NewCredentials{AccountName: `CORP\svc`, NewPassword: credentials.NewSecret(newPW)})
	if err != nil {
		t.Fatal(err)
	}
	w.store.BeforeSet = func(_ context.Context, p credentials.SetTaskAccountParams) error {
		if p.TaskID == "t03" {
			cancel() // the operator closes the wizard during the first write
		}
		return nil
	}
	choices := map[string]credentials.Action{"t01": credentials.ActionEnforce, "t02": credentials.ActionEnforce, "t03": credentials.ActionEnforce, "t09": credentials.ActionEnforce}
	rep, err := ch.Apply(ctx, choices)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply err = %v, want context.Canceled", err)
	}
	got := map[string]credentials.Outcome{}
	for _, r := range rep.Results {
		got[r.TaskID] = r.Outcome
	}
	want := map[string]credentials.Outcome{"t01": "changed", "t02": "changed", "t03": "failed", "t04": "already_done", "t08": "canceled", "t09": "canceled", "t10": "canceled"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("outcomes (-want +got):\n%s", diff)
	}
	w.store.BeforeSet = nil
	rep, err = ch.Apply(t.Context(), choices)
	if err != nil {
		t.Fatal(err)
	}
	got = map[string]credentials.Outcome{}
	for _, r := range rep.Results {
		got[r.TaskID] = r.Outcome
	}
	want = map[string]credentials.Outcome{"t01": "already_done", "t02": "already_done", "t03": "changed", "t04": "already_done", "t08": "skipped", "t09": "changed", "t10": "skipped"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("after retry (-want +got):\n%s", diff)
	}
}

func TestWizardValidation(t *testing.T) {
	t.Parallel()
	w := setup(t, nil)
	tests := []struct {
		name string
		c    credentials.NewCredentials
		want []string
	}{
		{"empty", credentials.NewCredentials{}, []string{"account_name: must not be empty", "new_password: must not be empty"}},
		{"bad name", credentials.NewCredentials{AccountName: " x", NewPassword: credentials.NewSecret("p")}, []string{"account_name: must not start or end with spaces"}},
		{"long previous", credentials.NewCredentials{AccountName: "x", NewPassword: credentials.NewSecret("p"), PreviousPassword: credentials.NewSecret(strings.Repeat("p", 1025))},
			[]string{"previous_password: must be at most 1024 bytes"}},
	}
	for _, tt := range tests {
		_, err := w.wizard.Start(t.Context(), tt.c)
		if got := fieldReasons(t, err); !cmp.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	ch, err := w.wizard.Start(t.Context(), credentials.NewCredentials{AccountName: `CORP\svc`, NewPassword: credentials.NewSecret(newPW)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ch.Apply(t.Context(), map[string]credentials.Action{"t05": credentials.ActionEnforce, "t03": "explode", "t09": credentials.ActionReplace, "t10": credentials.ActionEnforce})
	want := []string{
		`choices["t03"]: must be one of "delete_credentials", "enforce", "no_action"`,
		`choices["t05"]: is not a task awaiting a choice`,
		`choices["t09"]: must be one of "delete_credentials", "enforce", "no_action"`,
	}
	if got := fieldReasons(t, err); !cmp.Equal(got, want) {
		t.Errorf("Apply validation: %v", got)
	}
	if w.store.Writes() != 0 {
		t.Error("an invalid Apply wrote")
	}
	_, err = credentials.NewWizard(credentials.WizardConfig{PageSize: -1})
	if got := fieldReasons(t, err); !cmp.Equal(got, []string{"tasks: is required", "sealer: is required", "page_size: must be between 0 and 100000"}) {
		t.Errorf("NewWizard validation: %v", got)
	}
}

func fieldReasons(t *testing.T, err error) []string {
	t.Helper()
	if !errors.Is(err, credentials.ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	var list credentials.ValidationErrors
	var one *credentials.ValidationError
	if errors.As(err, &list) {
	} else if errors.As(err, &one) {
		list = credentials.ValidationErrors{one}
	}
	var out []string
	for _, e := range list {
		out = append(out, e.Field+": "+e.Reason)
	}
	return out
}

// leakyStore returns local tasks and tasks of other accounts, and pages out
// of order when asked to: the wizard must filter and refuse.
type leakyStore struct {
	*credentialstest.MemTaskAccounts
	extra      []credentials.TaskAccount
	outOfOrder bool
}

func (l leakyStore) ListTasksByAccount(ctx context.Context, p credentials.ListTasksParams) ([]credentials.TaskAccount, error) {
	page, err := l.MemTaskAccounts.ListTasksByAccount(ctx, p)
	if p.After == "" {
		page = append(l.extra, page...)
	}
	if l.outOfOrder && len(page) > 1 {
		page[0], page[1] = page[1], page[0]
	}
	return page, err
}

func TestWizardFiltersWhatTheStoreReturns(t *testing.T) {
	t.Parallel()
	w := setup(t, nil)
	local := w.before["t05"] // a local task of the account
	local.TaskID = "t00a"
	admin := w.before["t06"] // another account, same old password
	admin.TaskID = "t00b"
	w.store.Put(local)
	w.store.Put(admin)
	store := leakyStore{MemTaskAccounts: w.store, extra: []credentials.TaskAccount{local, admin}}
	wz, err := credentials.NewWizard(credentials.WizardConfig{Tasks: store, Sealer: w.sealer, PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := wz.Start(t.Context(), credentials.NewCredentials{AccountName: `CORP\svc`, NewPassword: credentials.NewSecret(newPW), PreviousPassword: credentials.NewSecret(oldPW)})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ch.Report().Results {
		if strings.HasPrefix(r.TaskID, "t00") {
			t.Fatalf("the wizard considered %s: %+v", r.TaskID, r)
		}
	}
	for id, want := range map[string]credentials.TaskAccount{"t00a": local, "t00b": admin} {
		if diff := cmp.Diff(want, w.get(t, id)); diff != "" {
			t.Errorf("%s changed:\n%s", id, diff)
		}
	}
	store.outOfOrder = true
	wz, _ = credentials.NewWizard(credentials.WizardConfig{Tasks: store, Sealer: w.sealer, PageSize: 100})
	if _, err := wz.Start(t.Context(), credentials.NewCredentials{AccountName: `CORP\svc`, NewPassword: credentials.NewSecret(newPW)}); err == nil || !strings.Contains(err.Error(), "out of order") {
		t.Fatalf("out-of-order pages: err = %v", err)
	}
}

func TestFoldAccountName(t *testing.T) {
	t.Parallel()
	pairs := [][2]string{{`CORP\svc`, `corp\SVC`}, {"straße", "STRASSE"}, {"K", "\u212a"}, {"ſ", "S"}, {"Jürgen", "jÜRGEN"}, {"a", "b"}}
	for _, p := range pairs {
		same := credentials.SameAccountName(p[0], p[1])
		if got := credentials.FoldAccountName(p[0]) == credentials.FoldAccountName(p[1]); got != same {
			t.Errorf("%q vs %q: fold keys equal %v, SameAccountName %v", p[0], p[1], got, same)
		}
	}
}
