package task_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

// fields returns the sorted fields of the validation errors in err.
func fields(t *testing.T, err error) []string {
	t.Helper()
	if !errors.Is(err, task.ErrInvalid) {
		t.Fatalf("error %v does not match ErrInvalid", err)
	}
	var out []string
	var many task.ValidationErrors
	var one *task.ValidationError
	switch {
	case errors.As(err, &many):
		for _, e := range many {
			out = append(out, e.Field)
		}
	case errors.As(err, &one):
		out = append(out, one.Field)
	default:
		t.Fatalf("error %v is not a validation error", err)
	}
	slices.Sort(out)
	return out
}

// A missing group is reported with the other errors, not only once they
// are fixed (issue 18): one round of Create or Update names them all.
func TestValidationReportsEveryErrorInOneRound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bad := groupScan("")
	bad.Scope.Group = "no-such-group"
	bad.Settings = &ScanSettings{MaxFileSizeMB: 0, Action: "explode"}
	_, err := b.m.Create(b.ctx, b.admin, bad)
	want := []string{"name", "scope.group", "settings.action", "settings.max_file_size_mb"}
	if diff := cmp.Diff(want, fields(t, err)); diff != "" {
		t.Errorf("Create errors (-want +got):\n%s", diff)
	}

	// A type not registered (yet) is one more error of the same round.
	unreg := task.Task{Name: "", Application: appES, Type: "no_such_type", Scope: scope.Scope{Kind: scope.Group, Group: "no-such-group"}}
	_, err = b.m.Create(b.ctx, b.admin, unreg)
	want = []string{"name", "scope.group", "type"}
	if diff := cmp.Diff(want, fields(t, err)); diff != "" {
		t.Errorf("Create of an unregistered type, errors (-want +got):\n%s", diff)
	}

	x, err := b.m.Create(b.ctx, b.admin, groupScan("Scan"))
	must(t, err)
	upd := *x
	upd.Name = " padded "
	upd.Scope.ExcludedGroups = []scope.GroupID{"lab"} // not a subgroup of office
	_, err = b.m.Update(b.ctx, b.admin, upd)
	want = []string{"name", "scope.excluded_groups[0]"}
	if diff := cmp.Diff(want, fields(t, err)); diff != "" {
		t.Errorf("Update errors (-want +got):\n%s", diff)
	}
}

// A caller who may not create the task learns only what the task itself
// gets wrong, never what the inventory holds: with other errors, the
// inventory errors are left out; without them, the answer is
// ErrPermission.
func TestValidationRoundHidesInventoryFromTheUnauthorized(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := managerAuthz(t, b, only(), zerolog.Nop())
	mallory := task.Actor{ID: "mallory"}
	for _, g := range []scope.GroupID{"office", "no-such-group"} {
		x := groupScan("")
		x.Scope.Group = g
		_, err := m.Create(b.ctx, mallory, x)
		if diff := cmp.Diff([]string{"name"}, fields(t, err)); diff != "" {
			t.Errorf("group %q: errors (-want +got):\n%s", g, diff)
		}
		x.Name = "Probe"
		if _, err := m.Create(b.ctx, mallory, x); !errors.Is(err, task.ErrPermission) {
			t.Errorf("group %q: Create = %v, want ErrPermission", g, err)
		}
	}
}
