package task_test

import (
	"testing"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/credentials/credentialstest"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/memstore"
	"github.com/taskfleet/taskfleet/task"
)

// The change-password wizard reaches tasks through Manager.Accounts; it
// must honour the credentials.TaskAccounts contract.
func TestAccountsConformance(t *testing.T) {
	sealer := setup(t).sealer
	credentialstest.RunTaskAccounts(t, sealer, func(t *testing.T, fixture []credentials.TaskAccount) credentials.TaskAccounts {
		next := ""
		m, err := task.New(task.Config{Store: memstore.New(), Registry: registry(t), NewID: func() string { return next }})
		must(t, err)
		admin := task.Actor{ID: "admin"}
		for _, fa := range fixture {
			next = fa.TaskID
			x := task.Task{Name: fa.TaskName, Application: appES, Type: "virus_scan", Account: fa.Account,
				Scope: scope.Scope{Kind: scope.Devices, Devices: []scope.DeviceID{"dev-01"}}}
			if fa.Local {
				x.Scope = scope.Scope{Kind: scope.Local, Device: "dev-01"}
			}
			cur, err := m.Create(t.Context(), admin, x)
			must(t, err)
			for cur.Revision < fa.Revision {
				cur.Description += "."
				cur, err = m.Update(t.Context(), admin, *cur)
				must(t, err)
			}
		}
		return m.Accounts(admin)
	})
}

// The wizard end to end over Manager tasks: the password is replaced where
// the previous one matches, and the change is a revision without secrets.
func TestChangePasswordWizardOnTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	old, err := credentials.Specify(`CORP\svc`, credentials.NewSecret("old-pass-1"), b.sealer)
	must(t, err)
	x := groupScan("Scan")
	x.Account = old
	created, err := b.m.Create(b.ctx, b.admin, x)
	must(t, err)
	wiz, err := credentials.NewWizard(credentials.WizardConfig{Tasks: b.m.Accounts(b.admin), Sealer: b.sealer})
	must(t, err)
	ch, err := wiz.Start(b.ctx, credentials.NewCredentials{AccountName: `corp\SVC`, NewPassword: credentials.NewSecret("new-pass-2"), PreviousPassword: credentials.NewSecret("old-pass-1")})
	must(t, err)
	if len(ch.AutoReplaced()) != 1 || len(ch.Pending()) != 0 {
		t.Fatalf("auto-replaced %d, pending %d; want 1, 0", len(ch.AutoReplaced()), len(ch.Pending()))
	}
	got, err := b.m.Get(b.ctx, b.admin, created.ID)
	must(t, err)
	pw, err := b.sealer.Open(got.Account.Password)
	must(t, err)
	if pw.Reveal() != "new-pass-2" || got.Revision != 2 {
		t.Fatalf("after the wizard: revision %d, password changed %v", got.Revision, pw.Reveal() == "new-pass-2")
	}
	rev, err := b.m.Revision(b.ctx, b.admin, created.ID, 2)
	must(t, err)
	if rev.Action != "change_password" {
		t.Fatalf("revision action %q", rev.Action)
	}
}
