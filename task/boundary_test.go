package task_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

// authzFunc adapts a function to task.Authorizer.
type authzFunc func(ctx context.Context, actor task.Actor, op task.Operation, t *task.Task) error

func (f authzFunc) Authorize(ctx context.Context, actor task.Actor, op task.Operation, t *task.Task) error {
	return f(ctx, actor, op, t)
}

// only lets actor "admin" do everything and other actors only ops.
func only(ops ...task.Operation) task.Authorizer {
	return authzFunc(func(_ context.Context, actor task.Actor, op task.Operation, t *task.Task) error {
		if actor.ID == "admin" {
			return nil
		}
		for _, o := range ops {
			if o == op {
				return nil
			}
		}
		return fmt.Errorf("%s may not %s: %w", actor.ID, op, task.ErrPermission)
	})
}

func managerAuthz(t *testing.T, b *bundle, a task.Authorizer, log zerolog.Logger) *task.Manager {
	t.Helper()
	m, err := task.New(task.Config{Store: b.store, Registry: registry(t), Inventory: b.inv, Clock: b.clk, Authorizer: a, Logger: log})
	must(t, err)
	return m
}

// A user with read access only cannot use the change-password wizard to
// test password guesses (a correct guess was reported "already done").
func TestWizardNeedsModifyAccessBeforeComparing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := managerAuthz(t, b, only(task.OpRead), zerolog.Nop())
	acct, err := credentials.Specify(`CORP\svc`, credentials.NewSecret("right-pw-1"), b.sealer)
	must(t, err)
	x := groupScan("Scan")
	x.Account = acct
	_, err = m.Create(b.ctx, b.admin, x)
	must(t, err)
	reader := task.Actor{ID: "reader"}
	wiz, err := credentials.NewWizard(credentials.WizardConfig{Tasks: m.Accounts(reader), Sealer: b.sealer})
	must(t, err)
	ch, err := wiz.Start(b.ctx, credentials.NewCredentials{AccountName: `CORP\svc`, NewPassword: credentials.NewSecret("right-pw-1")})
	must(t, err)
	if len(ch.AutoReplaced()) != 0 || len(ch.Pending()) != 0 {
		t.Fatalf("a read-only user's guess was compared: auto %+v, pending %+v", ch.AutoReplaced(), ch.Pending())
	}
}

// The wizard logs an opaque reference of the run, never the account
// name (which may be a mistyped password).
func TestWizardLogsOpaqueReference(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acct, err := credentials.Specify(`CORP\Sup3rS3cret`, credentials.NewSecret("old-pw-1"), b.sealer)
	must(t, err)
	x := groupScan("Scan")
	x.Account = acct
	_, err = b.m.Create(b.ctx, b.admin, x)
	must(t, err)
	var buf bytes.Buffer
	wiz, err := credentials.NewWizard(credentials.WizardConfig{Tasks: b.m.Accounts(b.admin), Sealer: b.sealer, Logger: zerolog.New(&buf)})
	must(t, err)
	ch, err := wiz.Start(b.ctx, credentials.NewCredentials{AccountName: `CORP\Sup3rS3cret`, NewPassword: credentials.NewSecret("new-pw-2"), PreviousPassword: credentials.NewSecret("old-pw-1")})
	must(t, err)
	_, err = ch.Apply(b.ctx, nil)
	must(t, err)
	out := buf.String()
	if strings.Contains(strings.ToLower(out), "sup3rs3cret") {
		t.Fatalf("the wizard logged the account name:\n%s", out)
	}
	if ch.Ref() == "" || !strings.Contains(out, ch.Ref()) {
		t.Fatalf("the log does not carry the run's reference %q:\n%s", ch.Ref(), out)
	}
}

// Create checks permission before the inventory: a refused user learns
// nothing about which groups exist.
func TestCreateAuthorizesBeforeInventoryErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := managerAuthz(t, b, only(), zerolog.Nop())
	mallory := task.Actor{ID: "mallory"}
	for _, g := range []scope.GroupID{"office", "no-such-group"} {
		x := groupScan("Probe " + string(g))
		x.Scope.Group = g
		if _, err := m.Create(b.ctx, mallory, x); !errors.Is(err, task.ErrPermission) {
			t.Errorf("Create in group %q = %v, want ErrPermission", g, err)
		}
	}
}

// A user who may modify but not read a task gets back only the
// bookkeeping of the update, not the task.
func TestUpdateReturnsOnlyWhatTheCallerMayRead(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := managerAuthz(t, b, only(task.OpModify), zerolog.Nop())
	x := groupScan("Scan")
	x.Description = "private notes"
	created, err := m.Create(b.ctx, b.admin, x)
	must(t, err)
	upd := *created
	upd.Name = "Scan 2"
	upd.Description = ""
	got, err := m.Update(b.ctx, task.Actor{ID: "writer"}, upd)
	must(t, err)
	if got.Revision != 2 || got.ID != created.ID {
		t.Fatalf("bookkeeping missing: %+v", got)
	}
	if got.Name != "" || got.Settings != nil || got.Application != "" || got.Scope.Group != "" || got.CreatedBy != "" {
		t.Fatalf("a writer without read access got the task back: %+v", got)
	}
	full, err := m.Update(b.ctx, b.admin, func() task.Task { c := upd; c.Revision = 2; return c }())
	must(t, err)
	if full.Name != "Scan 2" {
		t.Fatalf("a reader gets the whole task: %+v", full)
	}
}

// With ACLAuthorizer, a global task needs the same device-level check as
// a group task: creating or starting one on a device of a group the user
// may not manage is refused.
func TestACLAuthorizerChecksGlobalTaskDevices(t *testing.T) {
	t.Parallel()
	b := setup(t)
	groups := func(_ context.Context, actor task.Actor, op task.Operation, g scope.GroupID) error {
		if actor.ID == "alice" && g == "lab" {
			return fmt.Errorf("alice may not %s in lab: %w", op, task.ErrPermission)
		}
		return nil
	}
	m := managerAuthz(t, b, task.ACLAuthorizer{Groups: groups, Inventory: b.inv}, zerolog.Nop())
	alice, admin := task.Actor{ID: "alice"}, task.Actor{ID: "admin"}
	lab := task.Task{Name: "Lab", Application: appES, Type: "virus_scan", Scope: devicesScope("dev-01", "dev-07")}
	if _, err := m.Create(b.ctx, alice, lab); !errors.Is(err, task.ErrPermission) {
		t.Errorf("alice creating a task on a lab device = %v, want ErrPermission", err)
	}
	sel := lab
	sel.Name, sel.Scope = "Lab selection", scope.Scope{Kind: scope.Selection, Selection: `device.group == "lab"`}
	if _, err := m.Create(b.ctx, alice, sel); !errors.Is(err, task.ErrPermission) {
		t.Errorf("alice creating a selection of lab devices = %v, want ErrPermission", err)
	}
	own := task.Task{Name: "Mine", Application: appES, Type: "virus_scan", Scope: devicesScope("dev-01", "dev-04")}
	_, err := m.Create(b.ctx, alice, own)
	must(t, err)
	made, err := m.Create(b.ctx, admin, lab)
	must(t, err)
	if _, err := m.Start(b.ctx, alice, made.ID); !errors.Is(err, task.ErrPermission) {
		t.Errorf("alice starting a task on a lab device = %v, want ErrPermission", err)
	}
	noInv := managerAuthz(t, b, task.ACLAuthorizer{Groups: groups}, zerolog.Nop())
	own.Name = "Mine 2"
	if _, err := noInv.Create(b.ctx, alice, own); !errors.Is(err, task.ErrPermission) {
		t.Errorf("without an inventory the device-level check cannot be made: Create = %v, want ErrPermission", err)
	}
}

// Access-list principals and e-mail recipients are bounded (an 8 MiB
// principal was accepted).
func TestAccessListAndEmailLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	huge := strings.Repeat("p", 8<<20)
	all := []task.Permission{task.PermRead, task.PermModify, task.PermExecute, task.PermDelete}
	for _, c := range []struct {
		name  string
		mod   func(*task.Task)
		field string
	}{
		{"8 MiB principal", func(x *task.Task) {
			x.Security.ACL = []task.AccessEntry{{Principal: huge, Allow: all}}
		}, "security.acl[0].principal"},
		{"long principal", func(x *task.Task) {
			x.Security.ACL = []task.AccessEntry{{Principal: strings.Repeat("a", task.MaxPrincipalLength+1), Allow: all}}
		}, "security.acl[0].principal"},
		{"principal with a control character", func(x *task.Task) {
			x.Security.ACL = []task.AccessEntry{{Principal: "bob\x00", Allow: all}}
		}, "security.acl[0].principal"},
		{"repeated permissions", func(x *task.Task) {
			x.Security.ACL = []task.AccessEntry{{Principal: "bob", Allow: append(all, task.PermRead)}}
		}, "security.acl[0]"},
		{"long e-mail address", func(x *task.Task) {
			x.Notifications.Email = []string{strings.Repeat("a", 250) + "@example.com"}
		}, "notifications.email[0]"},
		{"8 MiB e-mail address", func(x *task.Task) {
			x.Notifications.Email = []string{huge + "@example.com"}
		}, "notifications.email[0]"},
	} {
		x := task.Task{Name: "Limits", Application: appES, Type: "virus_scan", Scope: devicesScope("dev-01")}
		c.mod(&x)
		_, err := b.m.Create(b.ctx, b.admin, x)
		var ve task.ValidationErrors
		var one *task.ValidationError
		switch {
		case errors.As(err, &ve):
			if ve[0].Field != c.field {
				t.Errorf("%s: %v, want field %s", c.name, err, c.field)
			}
		case errors.As(err, &one):
			if one.Field != c.field {
				t.Errorf("%s: %v, want field %s", c.name, err, c.field)
			}
		default:
			t.Errorf("%s: Create = %v, want a validation error", c.name, err)
		}
		if err != nil && len(err.Error()) > 4096 {
			t.Errorf("%s: the error is %d bytes long", c.name, len(err.Error()))
		}
	}
}
