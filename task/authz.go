package task

import (
	"context"
	"fmt"
	"slices"

	"github.com/taskfleet/taskfleet/scope"
)

// Actor is who calls the Manager: an administrator, the engine, or a
// device user (for local task edits). ID is recorded as the author of
// revisions; Groups are the principals the actor belongs to, matched
// against access lists.
type Actor struct {
	// ID identifies the actor (an administrator's account name, "system",
	// or a device user); it is recorded as the author of revisions.
	ID string
	// Groups are the principals the actor belongs to, matched against
	// access lists.
	Groups []string
}

// System is the actor of the library's own operations (the engine, the
// retention purge).
var System = Actor{ID: "system"}

// Operation is what an actor wants to do with a task.
type Operation string

// Operations, mapped to the access-list permissions.
const (
	OpRead    Operation = "read"
	OpCreate  Operation = "create"
	OpModify  Operation = "modify"
	OpExecute Operation = "execute"
	OpDelete  Operation = "delete"
)

// Authorizer decides whether an actor may perform an operation on a task.
// The host implements it with its own administrators and roles.
//
// Authorize returns nil to allow, or an error matching ErrPermission to
// refuse (other errors are returned to the caller as they are). For group
// tasks (t.Kind() == Group) it must apply the security settings of the
// group t.Scope.Group, since group tasks have no access list of their own;
// for other tasks it may apply t.Security (ACLAuthorizer does). On Create
// and Update it may be given a task that fails validation, since the
// inventory checks, which run only for an authorized caller, are
// reported in the same round as the other errors; it must not assume a
// valid task. It must be safe for concurrent use.
type Authorizer interface {
	// Authorize returns nil when actor may perform op on t, or an error
	// matching ErrPermission.
	Authorize(ctx context.Context, actor Actor, op Operation, t *Task) error
}

// AllowAll allows everything. It is the default Authorizer, suitable only
// for hosts with a single administrator.
type AllowAll struct{}

// Authorize implements Authorizer.
func (AllowAll) Authorize(context.Context, Actor, Operation, *Task) error { return nil }

// ACLAuthorizer applies each non-group task's access list and delegates
// group tasks to Groups.
//
// A task with an empty access list is open to everyone. With entries, an
// actor needs an entry (by ID or one of its Groups) allowing the
// operation's permission and none denying it. Creating a task needs
// modify rights under its own list.
//
// Global tasks (a device list, addresses or a device selection) reach
// devices of administration groups without being group tasks, so when
// Groups is set, creating, modifying and starting one also needs the
// operation's rights under the security settings of the group of every
// device it targets (unassigned devices: group ""), exactly as a group
// task of that group would: the device-level check. That needs Inventory
// to find the devices; with Groups set and no Inventory, those operations
// on global tasks are refused.
type ACLAuthorizer struct {
	// Groups decides for group tasks from the group's security settings
	// (nil: group tasks are allowed, and global tasks get no device-level
	// check).
	Groups func(ctx context.Context, actor Actor, op Operation, group scope.GroupID) error
	// Inventory resolves the devices of global tasks for the device-level
	// check (see above).
	Inventory scope.Inventory
}

// Authorize implements Authorizer.
func (a ACLAuthorizer) Authorize(ctx context.Context, actor Actor, op Operation, t *Task) error {
	if t.Kind() == Group {
		if a.Groups == nil {
			return nil
		}
		return a.Groups(ctx, actor, op, t.Scope.Group)
	}
	if err := a.taskACL(actor, op, t); err != nil {
		return err
	}
	if t.Kind() == Global && a.Groups != nil && (op == OpCreate || op == OpModify || op == OpExecute) {
		return a.devices(ctx, actor, op, t)
	}
	return nil
}

func (a ACLAuthorizer) taskACL(actor Actor, op Operation, t *Task) error {
	if len(t.Security.ACL) == 0 {
		return nil
	}
	perm := Permission(op)
	if op == OpCreate {
		perm = PermModify
	}
	allowed := false
	for _, e := range t.Security.ACL {
		if e.Principal != actor.ID && !slices.Contains(actor.Groups, e.Principal) {
			continue
		}
		if slices.Contains(e.Deny, perm) {
			return fmt.Errorf("task %q: %s is denied to %s: %w", t.ID, op, e.Principal, ErrPermission)
		}
		if slices.Contains(e.Allow, perm) {
			allowed = true
		}
	}
	if !allowed {
		return fmt.Errorf("task %q: %s is not allowed to %s: %w", t.ID, op, actor.ID, ErrPermission)
	}
	return nil
}

// devices applies Groups to the group of every device a global task
// targets, once per group.
func (a ACLAuthorizer) devices(ctx context.Context, actor Actor, op Operation, t *Task) error {
	if a.Inventory == nil {
		return fmt.Errorf("task %q: %s of a global task needs the device-level check, and the ACLAuthorizer has no Inventory: %w", t.ID, op, ErrPermission)
	}
	res, err := scope.Resolve(ctx, t.Scope, a.Inventory)
	if err != nil {
		return fmt.Errorf("task %q: resolve the devices for the permission check: %w", t.ID, err)
	}
	seen := map[scope.GroupID]bool{}
	for _, ids := range [][]scope.DeviceID{res.Devices, res.Offline} {
		for _, id := range ids {
			d, err := a.Inventory.Device(ctx, id)
			if err != nil {
				return fmt.Errorf("task %q: device %q for the permission check: %w", t.ID, id, err)
			}
			if seen[d.GroupID] {
				continue
			}
			seen[d.GroupID] = true
			if err := a.Groups(ctx, actor, op, d.GroupID); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *Manager) authorize(ctx context.Context, actor Actor, op Operation, t *Task) error {
	if err := m.authz.Authorize(ctx, actor, op, t); err != nil {
		m.log.Warn().Str("task", t.ID).Str("actor", actor.ID).Str("op", string(op)).Msg("operation refused")
		return err
	}
	return nil
}
