package task

import (
	"context"
	"fmt"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/storage"
)

// Accounts returns the tasks as the change-password wizard sees them
// (credentials.NewWizard's TaskAccounts), acting as actor: every account
// change is an authorized update with its own revision (action
// ActionChangePassword), and tasks the actor may not modify are not listed,
// so their passwords are never compared with what the actor types.
func (m *Manager) Accounts(actor Actor) credentials.TaskAccounts {
	return accountView{m: m, actor: actor}
}

type accountView struct {
	m     *Manager
	actor Actor
}

var _ credentials.TaskAccounts = accountView{}

func (v accountView) ListTasksByAccount(ctx context.Context, p credentials.ListTasksParams) ([]credentials.TaskAccount, error) {
	if p.Limit <= 0 {
		return nil, errs.Invalid("limit", fmt.Sprint(p.Limit), "must be positive")
	}
	q := storage.ListTasksParams{Order: storage.OrderByID, Limit: 1000}
	if p.After != "" {
		q.After = storage.EncodeCursor("", p.After)
	}
	var out []credentials.TaskAccount
	for {
		page, err := v.m.store.ListTasks(ctx, q)
		if err != nil {
			return nil, v.m.storeErr(err, "list tasks by account")
		}
		for i := range page.Tasks {
			if page.Tasks[i].Kind == string(Local) {
				continue
			}
			t, err := v.m.decodeShared(&page.Tasks[i]) // read only; taskAccount copies values
			if err != nil {
				v.m.log.Error().Err(err).Str("task", page.Tasks[i].ID).Msg("change-password wizard: a task that cannot be decoded was skipped")
				continue
			}
			// Modify access first: the wizard compares the listed tasks'
			// passwords with the ones it is given, so a task the actor
			// may only read would let it test password guesses.
			if !t.Account.SameName(p.AccountName) || v.m.authz.Authorize(ctx, v.actor, OpModify, t) != nil {
				continue
			}
			out = append(out, taskAccount(t))
			if len(out) == p.Limit {
				return out, nil
			}
		}
		if page.Next == "" {
			return out, nil
		}
		q.After = page.Next
	}
}

func taskAccount(t *Task) credentials.TaskAccount {
	return credentials.TaskAccount{TaskID: t.ID, TaskName: t.Name, Local: t.Kind() == Local, Revision: t.Revision, Account: t.Account}
}

func (v accountView) GetTaskAccount(ctx context.Context, id string) (credentials.TaskAccount, error) {
	t, err := v.m.Get(ctx, v.actor, id)
	if err != nil {
		return credentials.TaskAccount{}, err
	}
	return taskAccount(t), nil
}

func (v accountView) SetTaskAccount(ctx context.Context, p credentials.SetTaskAccountParams) (int64, error) {
	t, err := v.m.Get(ctx, v.actor, p.TaskID)
	if err != nil {
		return 0, err
	}
	if t.Kind() == Local {
		return 0, errs.Invalid("task_id", p.TaskID, "the change-password wizard does not change local tasks")
	}
	t.Account = p.Account
	t.Revision = p.ExpectedRevision
	out, err := v.m.update(ctx, v.actor, *t, ActionChangePassword, nil)
	if err != nil {
		return 0, err
	}
	return out.Revision, nil
}
