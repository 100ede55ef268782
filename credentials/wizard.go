package credentials

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"unicode"

	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/internal/errs"
)

// TaskAccount is one task's run-as account, as the change-password wizard
// sees it.
type TaskAccount struct {
	// TaskID identifies the task.
	TaskID string
	// TaskName is the task's name, for the report.
	TaskName string
	// Local marks a local task. The wizard never changes local tasks
	// (the product documentation: the wizard covers non-local tasks), even
	// if a store returns one.
	Local bool
	// Revision is the task's revision, for compare-and-set.
	Revision int64
	// Account is the task's run-as account.
	Account Account
}

// ListTasksParams selects a page of tasks by account name.
type ListTasksParams struct {
	// AccountName matches a task's account name under SameAccountName
	// (FoldAccountName gives an index key that agrees with it).
	AccountName string
	// After is the TaskID cursor: return tasks with TaskID > After
	// (byte-wise string order); "" starts at the beginning.
	After string
	// Limit is the page size, > 0.
	Limit int
}

// SetTaskAccountParams replaces one task's account.
type SetTaskAccountParams struct {
	// TaskID is the task to change.
	TaskID string
	// ExpectedRevision must equal the task's current revision.
	ExpectedRevision int64
	// Account is the complete new account; the wizard has validated it.
	Account Account
}

// TaskAccounts is how the wizard reaches tasks; the task package implements
// it on top of its storage. Methods must be safe for concurrent use.
//
// ListTasksByAccount returns up to p.Limit non-local tasks whose account
// name matches p.AccountName (SameAccountName), with TaskID > p.After,
// ordered by TaskID ascending; fewer than p.Limit (possibly none) means the
// end. It may return extra tasks (the wizard filters again) but must not
// miss one. It must return only tasks the user running the wizard may
// modify: the wizard compares their passwords with the ones it is given,
// so a task the user may only read would let it test password guesses.
//
// GetTaskAccount returns one task's current state, or an error matching
// ErrNotFound.
//
// SetTaskAccount replaces the task's whole account (name and sealed
// password together, atomically: never one without the other) if and only
// if its revision still equals p.ExpectedRevision, and returns the new
// revision. It returns an error matching ErrConflict when the revision
// moved, ErrNotFound when the task is gone, and must refuse a local task
// with an error matching ErrInvalid. It records the change in the task's
// revision history like any other edit.
type TaskAccounts interface {
	// ListTasksByAccount returns a page of tasks by account name (above).
	ListTasksByAccount(ctx context.Context, p ListTasksParams) ([]TaskAccount, error)
	// GetTaskAccount returns one task's account (above).
	GetTaskAccount(ctx context.Context, taskID string) (TaskAccount, error)
	// SetTaskAccount replaces one task's account if its revision is
	// still the expected one (above).
	SetTaskAccount(ctx context.Context, p SetTaskAccountParams) (newRevision int64, err error)
}

// FoldAccountName returns a key such that FoldAccountName(x) ==
// FoldAccountName(y) exactly when SameAccountName(x, y): stores index
// account names by it.
func FoldAccountName(name string) string {
	out := make([]rune, 0, len(name))
	for _, r := range name {
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		out = append(out, min)
	}
	return string(out)
}

// Action is what the wizard does to one task.
type Action string

const (
	// ActionReplace: step 1's automatic replacement (the previous password
	// was given and matched).
	ActionReplace Action = "replace"
	// ActionDeleteCredentials: switch the task to the default account.
	ActionDeleteCredentials Action = "delete_credentials"
	// ActionEnforce: set the new password although the old one is wrong
	// or was not given.
	ActionEnforce Action = "enforce"
	// ActionNone: leave the task unchanged (the default in step 2).
	ActionNone Action = "no_action"
)

// Outcome is what happened to one task.
type Outcome string

const (
	// OutcomeChanged: the task's account was written.
	OutcomeChanged Outcome = "changed"
	// OutcomeAlreadyDone: the task already had the result (the new
	// password, or the default account for DeleteCredentials); nothing was
	// written. A retried wizard reports this for the tasks done before.
	OutcomeAlreadyDone Outcome = "already_done"
	// OutcomeSkipped: no action was chosen, or the task is local.
	OutcomeSkipped Outcome = "skipped"
	// OutcomeConflict: the task changed concurrently so that the action no
	// longer applies (another account name, or it kept moving); it was
	// left as the other writer left it.
	OutcomeConflict Outcome = "conflict"
	// OutcomeNotFound: the task was deleted meanwhile.
	OutcomeNotFound Outcome = "not_found"
	// OutcomeFailed: the store or the sealer failed; the task is
	// unchanged (writes are all-or-nothing). Retrying is safe.
	OutcomeFailed Outcome = "failed"
	// OutcomeCanceled: ctx ended before the task was processed.
	OutcomeCanceled Outcome = "canceled"
)

// PendingReason says why a task needs a step-2 choice.
type PendingReason string

const (
	// PendingNoPreviousPassword: step 1 had no previous password.
	PendingNoPreviousPassword PendingReason = "previous_password_not_given"
	// PendingPreviousMismatch: the task's password is not the previous
	// password given.
	PendingPreviousMismatch PendingReason = "previous_password_mismatch"
	// PendingCannotOpen: the task's sealed password does not open
	// (unknown key or tampered); only Enforce or DeleteCredentials fix it.
	PendingCannotOpen PendingReason = "password_cannot_be_opened"
)

// TaskResult is the step-3 report line of one task.
type TaskResult struct {
	// TaskID identifies the task.
	TaskID string `json:"task_id"`
	// TaskName is the task's name.
	TaskName string `json:"task_name"`
	// Action is what the wizard was asked to do with the task.
	Action Action `json:"action"`
	// Outcome is what happened.
	Outcome Outcome `json:"outcome"`
	// NewRevision is the task's revision after a write (OutcomeChanged).
	NewRevision int64 `json:"new_revision,omitempty"`
	// Err explains Conflict, NotFound, Failed and Canceled outcomes. It
	// never contains a password.
	Err error `json:"-"`
	// Error is Err's text, for JSON.
	Error string `json:"error,omitempty"`
}

// PendingTask is a task awaiting a step-2 choice.
type PendingTask struct {
	// TaskID identifies the task.
	TaskID string `json:"task_id"`
	// TaskName is the task's name.
	TaskName string `json:"task_name"`
	// Revision is the task's revision when the wizard looked.
	Revision int64 `json:"revision"`
	// Reason says why the administrator must choose.
	Reason PendingReason `json:"reason"`
}

// Report is step 3: one result per task the wizard found, in TaskID order.
type Report struct {
	// AccountName is the account whose password changed.
	AccountName string `json:"account_name"`
	// Results has one entry per task, in TaskID order.
	Results []TaskResult `json:"results"`
}

// Counts tallies the results by outcome.
func (r Report) Counts() map[Outcome]int {
	m := map[Outcome]int{}
	for _, res := range r.Results {
		m[res.Outcome]++
	}
	return m
}

// WizardConfig configures a Wizard.
type WizardConfig struct {
	// Tasks reaches the tasks; required.
	Tasks TaskAccounts
	// Sealer seals the new password and opens the tasks' passwords;
	// required.
	Sealer Sealer
	// Logger receives one event per write and per failure (task ids and
	// outcomes, never passwords); the zero Logger logs nothing.
	Logger zerolog.Logger
	// PageSize is the ListTasksByAccount page size; 0 means 1000.
	PageSize int
	// MaxAttempts bounds compare-and-set retries per task when its
	// revision moves; 0 means 3.
	MaxAttempts int
}

// Wizard is the product documentation's "Change tasks password" wizard as an API:
//
//  1. Start with the new credentials (and optionally the previous
//     password): every non-local task whose account name matches gets the
//     new password automatically when the previous password was given and
//     matches its password; the other matching tasks await a choice.
//  2. Change.Apply with a choice per pending task: DeleteCredentials,
//     Enforce or no action.
//  3. The returned Report has one result per task.
//
// Each task is changed by one compare-and-set of its whole account, so a
// task never holds a half-written credential, and a concurrent edit is
// never overwritten blindly: on a revision conflict the wizard re-reads the
// task and re-checks the action. The wizard is idempotent: running it (or
// Apply) again reports tasks that already carry the new password (or the
// default account) as OutcomeAlreadyDone without writing.
//
// A Wizard is safe for concurrent use; each Change is not.
type Wizard struct {
	cfg WizardConfig
}

// NewWizard validates cfg.
func NewWizard(cfg WizardConfig) (*Wizard, error) {
	var bad ValidationErrors
	if cfg.Tasks == nil {
		bad = append(bad, errs.Invalid("tasks", "", "is required"))
	}
	if cfg.Sealer == nil {
		bad = append(bad, errs.Invalid("sealer", "", "is required"))
	}
	if cfg.PageSize < 0 || cfg.PageSize > 100000 {
		bad = append(bad, errs.Range("page_size", cfg.PageSize, 0, 100000))
	}
	if cfg.MaxAttempts < 0 || cfg.MaxAttempts > 100 {
		bad = append(bad, errs.Range("max_attempts", cfg.MaxAttempts, 0, 100))
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = 1000
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 3
	}
	return &Wizard{cfg: cfg}, nil
}

// NewCredentials is step 1's input.
type NewCredentials struct {
	// AccountName selects the tasks (SameAccountName).
	AccountName string
	// NewPassword is the account's new, currently valid password.
	NewPassword Secret
	// PreviousPassword is optional (zero: not given). When given, tasks
	// whose password equals it are changed automatically.
	PreviousPassword Secret
}

// Change is a wizard run between step 1 and step 3. It holds the new
// password sealed, never in plaintext. Not safe for concurrent use.
type Change struct {
	w        *Wizard
	name     string
	ref      string // opaque reference logged instead of the account name
	newPW    Sealed
	prevPW   Secret
	hasPrev  bool
	newPlain Secret // kept to recognise tasks already done; never printed

	mu      sync.Mutex
	auto    []TaskResult
	pending []PendingTask
	tasks   map[string]TaskAccount // pending tasks' state as last seen
	step2   map[string]TaskResult
	matches map[string]match // open-and-compare cache by ciphertext
	keyBuf  []byte
}

// Ref returns the opaque reference of this wizard run: its log lines
// carry it (field "change") instead of the account name, which may be a
// mistyped password. A host that needs to audit which account a run
// changed records the reference next to the account name in its own
// audit trail.
func (ch *Change) Ref() string { return ch.ref }

// newChangeRef returns a random reference for a wizard run.
func newChangeRef() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return "chpw-" + hex.EncodeToString(b[:])
}

// match caches the comparison of one ciphertext with the passwords.
type match struct {
	isNew, isPrev bool
	openErr       error
}

// Start runs step 1. It validates c (ValidationErrors for "account_name",
// "new_password", "previous_password", never echoing a password), seals the
// new password, lists the matching tasks and changes those whose password
// is the previous password. It returns an error only when it cannot go on
// (invalid input, sealer or listing failure, ctx); a failed Start may have
// changed some tasks, and running it again is safe.
func (w *Wizard) Start(ctx context.Context, c NewCredentials) (*Change, error) {
	var bad ValidationErrors
	if e := validateName(c.AccountName, true); e != nil {
		e.Field = "account_name"
		bad = append(bad, e)
	}
	if e := validatePassword("new_password", c.NewPassword); e != nil {
		bad = append(bad, e)
	}
	if c.PreviousPassword.Len() > MaxPasswordLength {
		bad = append(bad, errs.Invalid("previous_password", "", fmt.Sprintf("must be at most %d bytes", MaxPasswordLength)))
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	sealed, err := w.cfg.Sealer.Seal(c.NewPassword)
	if err != nil {
		return nil, fmt.Errorf("credentials: sealing the new password: %w", err)
	}
	ch := &Change{
		w: w, name: c.AccountName, ref: newChangeRef(), newPW: sealed, newPlain: c.NewPassword,
		prevPW: c.PreviousPassword, hasPrev: !c.PreviousPassword.IsZero(),
		tasks: map[string]TaskAccount{}, step2: map[string]TaskResult{}, matches: map[string]match{},
	}
	log := w.cfg.Logger.With().Str("component", "change_password_wizard").Str("change", ch.ref).Logger()
	after := ""
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		page, err := w.cfg.Tasks.ListTasksByAccount(ctx, ListTasksParams{AccountName: c.AccountName, After: after, Limit: w.cfg.PageSize})
		if err != nil {
			return nil, fmt.Errorf("credentials: listing tasks of the account: %w", err)
		}
		for _, t := range page {
			if t.TaskID <= after {
				return nil, fmt.Errorf("credentials: TaskAccounts returned task %q out of order after %q", t.TaskID, after)
			}
			after = t.TaskID
			if t.Local || !t.Account.SameName(c.AccountName) {
				continue
			}
			ch.step1(ctx, t, log)
		}
		if len(page) < w.cfg.PageSize {
			break
		}
	}
	log.Info().Int("auto", len(ch.auto)).Int("pending", len(ch.pending)).Msg("step 1 done")
	return ch, nil
}

func (ch *Change) compare(s Sealed) match {
	ch.keyBuf = append(append(append(append(ch.keyBuf[:0], s.keyID...), 0), s.nonce...), s.ct...)
	if m, ok := ch.matches[string(ch.keyBuf)]; ok { // no allocation for the lookup
		return m
	}
	key := string(ch.keyBuf)
	var m match
	pw, err := ch.w.cfg.Sealer.Open(s)
	if err != nil {
		m.openErr = err
	} else {
		m.isNew = pw.Equal(ch.newPlain)
		m.isPrev = ch.hasPrev && pw.Equal(ch.prevPW)
	}
	if len(ch.matches) < 100000 {
		ch.matches[key] = m
	}
	return m
}

func (ch *Change) step1(ctx context.Context, t TaskAccount, log zerolog.Logger) {
	m := ch.compare(t.Account.Password)
	switch {
	case m.openErr == nil && m.isNew:
		ch.auto = append(ch.auto, TaskResult{TaskID: t.TaskID, TaskName: t.TaskName, Action: ActionReplace, Outcome: OutcomeAlreadyDone})
		return
	case m.openErr == nil && m.isPrev:
		res, pend := ch.apply(ctx, t, ActionReplace, log)
		if pend == "" {
			ch.auto = append(ch.auto, res.TaskResult)
			return
		}
		t = res.task
		m = ch.compare(t.Account.Password)
	}
	reason := PendingNoPreviousPassword
	switch {
	case m.openErr != nil:
		reason = PendingCannotOpen
	case ch.hasPrev:
		reason = PendingPreviousMismatch
	}
	ch.pending = append(ch.pending, PendingTask{TaskID: t.TaskID, TaskName: t.TaskName, Revision: t.Revision, Reason: reason})
	ch.tasks[t.TaskID] = t
}

// AutoReplaced returns step 1's results: the tasks changed automatically
// (or found already carrying the new password).
func (ch *Change) AutoReplaced() []TaskResult {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return slices.Clone(ch.auto)
}

// Pending returns the tasks awaiting a step-2 choice, in TaskID order.
func (ch *Change) Pending() []PendingTask {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return slices.Clone(ch.pending)
}

// Apply runs step 2 with a choice per pending task (by TaskID; a task
// without a choice gets ActionNone) and returns the step-3 report of all
// tasks. Choices are validated before anything is written:
// ValidationErrors name `choices["<task id>"]` for an unknown task or an
// action other than DeleteCredentials, Enforce or None.
//
// Build choices from Pending: a choice for a task that is not pending in
// this Change is rejected (a task handled by an earlier run no longer
// matches the account, so it is not pending in a new Change).
//
// Apply may be called again, for example after a failure or with ctx
// canceled midway: tasks already done are reported as OutcomeAlreadyDone.
// When ctx ends, the remaining tasks are reported as OutcomeCanceled and
// ctx's error is returned with the report.
func (ch *Change) Apply(ctx context.Context, choices map[string]Action) (Report, error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	var bad ValidationErrors
	for _, id := range sortedKeys(choices) {
		field := "choices[" + strconv.Quote(id) + "]"
		if _, ok := ch.tasks[id]; !ok {
			bad = append(bad, errs.Invalid(field, "", "is not a task awaiting a choice"))
			continue
		}
		switch a := choices[id]; a {
		case ActionDeleteCredentials, ActionEnforce, ActionNone:
		default:
			bad = append(bad, errs.Invalid(field, string(a), `must be one of "delete_credentials", "enforce", "no_action"`))
		}
	}
	if err := bad.Err(); err != nil {
		return Report{}, err
	}
	log := ch.w.cfg.Logger.With().Str("component", "change_password_wizard").Str("change", ch.ref).Logger()
	var ctxErr error
	for _, p := range ch.pending {
		action := choices[p.TaskID]
		if action == "" {
			action = ActionNone
		}
		t := ch.tasks[p.TaskID]
		if ctxErr == nil {
			ctxErr = ctx.Err()
		}
		if ctxErr != nil {
			ch.step2[p.TaskID] = TaskResult{TaskID: t.TaskID, TaskName: t.TaskName, Action: action, Outcome: OutcomeCanceled, Err: ctxErr, Error: ctxErr.Error()}
			continue
		}
		if action == ActionNone {
			ch.step2[p.TaskID] = TaskResult{TaskID: t.TaskID, TaskName: t.TaskName, Action: action, Outcome: OutcomeSkipped}
			continue
		}
		res, _ := ch.apply(ctx, t, action, log)
		ch.tasks[p.TaskID] = res.task
		ch.step2[p.TaskID] = res.TaskResult
	}
	return ch.report(), ctxErr
}

// Report returns the current step-3 report.
func (ch *Change) Report() Report {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.report()
}

func (ch *Change) report() Report {
	r := Report{AccountName: ch.name, Results: make([]TaskResult, 0, len(ch.auto)+len(ch.pending))}
	r.Results = append(r.Results, ch.auto...)
	for _, p := range ch.pending {
		res, ok := ch.step2[p.TaskID]
		if !ok {
			t := ch.tasks[p.TaskID]
			res = TaskResult{TaskID: t.TaskID, TaskName: t.TaskName, Action: ActionNone, Outcome: OutcomeSkipped}
		}
		r.Results = append(r.Results, res)
	}
	slices.SortStableFunc(r.Results, func(a, b TaskResult) int {
		switch {
		case a.TaskID < b.TaskID:
			return -1
		case a.TaskID > b.TaskID:
			return 1
		}
		return 0
	})
	return r
}

// applied is a TaskResult with the task state it ended on.
type applied struct {
	TaskResult
	task TaskAccount
}

var errAccountChanged = errors.New("credentials: the task's account changed concurrently")

// apply performs one action on one task by compare-and-set, re-reading and
// re-checking the task on conflict. For ActionReplace, a task whose
// password stopped matching the previous password is handed back as
// pending (a non-empty PendingReason) instead of being changed.
func (ch *Change) apply(ctx context.Context, t TaskAccount, action Action, log zerolog.Logger) (applied, PendingReason) {
	res := applied{TaskResult: TaskResult{TaskID: t.TaskID, TaskName: t.TaskName, Action: action}, task: t}
	finish := func(o Outcome, err error) (applied, PendingReason) {
		res.Outcome, res.Err = o, err
		if err != nil {
			res.Error = err.Error()
			log.Warn().Str("task_id", t.TaskID).Str("action", string(action)).Str("outcome", string(o)).Err(err).Msg("task not changed")
		}
		return res, ""
	}
	cur := t
	for attempt := 1; ; attempt++ {
		res.task, res.TaskName = cur, cur.TaskName
		if cur.Local {
			return finish(OutcomeSkipped, errors.New("credentials: local tasks are not changed by the wizard"))
		}
		var target Account
		switch action {
		case ActionDeleteCredentials:
			if cur.Account.IsDefault() {
				return finish(OutcomeAlreadyDone, nil)
			}
			if !cur.Account.SameName(ch.name) {
				return finish(OutcomeConflict, errAccountChanged)
			}
			target = Account{}
		case ActionReplace, ActionEnforce:
			if !cur.Account.SameName(ch.name) {
				return finish(OutcomeConflict, errAccountChanged)
			}
			m := ch.compare(cur.Account.Password)
			if m.openErr == nil && m.isNew {
				return finish(OutcomeAlreadyDone, nil)
			}
			if action == ActionReplace && (m.openErr != nil || !m.isPrev) {
				return res, PendingPreviousMismatch
			}
			target = Account{Name: cur.Account.Name, Password: ch.newPW}
		}
		if err := target.Validate(); err != nil { // never write a partial credential
			return finish(OutcomeFailed, fmt.Errorf("credentials: refusing to write an invalid account: %w", err))
		}
		rev, err := ch.w.cfg.Tasks.SetTaskAccount(ctx, SetTaskAccountParams{TaskID: cur.TaskID, ExpectedRevision: cur.Revision, Account: target})
		switch {
		case err == nil:
			res.NewRevision = rev
			cur.Revision, cur.Account = rev, target
			res.task = cur
			log.Info().Str("task_id", cur.TaskID).Str("action", string(action)).Int64("revision", rev).Msg("task account changed")
			return finish(OutcomeChanged, nil)
		case errors.Is(err, ErrNotFound):
			return finish(OutcomeNotFound, err)
		case errors.Is(err, ErrConflict) && attempt < ch.w.cfg.MaxAttempts:
			fresh, gerr := ch.w.cfg.Tasks.GetTaskAccount(ctx, cur.TaskID)
			if errors.Is(gerr, ErrNotFound) {
				return finish(OutcomeNotFound, gerr)
			}
			if gerr != nil {
				return finish(OutcomeFailed, gerr)
			}
			cur = fresh
		case errors.Is(err, ErrConflict):
			return finish(OutcomeConflict, err)
		default:
			return finish(OutcomeFailed, err)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
