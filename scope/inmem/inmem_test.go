package inmem_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
)

func setup(t *testing.T) *inmem.Inventory {
	t.Helper()
	inv := inmem.New()
	if err := inv.PutGroups(context.Background(),
		scope.AdminGroup{ID: "g-b", Parent: "g-a", Name: "B"}, // parent in the same call, listed later
		scope.AdminGroup{ID: "g-a", Name: "A"},
		scope.AdminGroup{ID: "g-c", Parent: "g-b", Name: "C"},
	); err != nil {
		t.Fatal(err)
	}
	if err := inv.PutDevices(context.Background(),
		scope.Device{ID: "d-3", GroupID: "g-c", NetBIOSName: "pc3", DNSName: "PC3.Example.com."},
		scope.Device{ID: "d-1", GroupID: "g-a", NetBIOSName: "PC1"},
		scope.Device{ID: "d-2", GroupID: "g-b", DNSName: "pc2.example.com"},
		scope.Device{ID: "d-0"},
	); err != nil {
		t.Fatal(err)
	}
	return inv
}

func members(t *testing.T, seq func(func(scope.Member, error) bool)) []scope.DeviceID {
	t.Helper()
	var out []scope.DeviceID
	for m, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.ID)
	}
	return out
}

func collect(t *testing.T, seq func(func(*scope.Device, error) bool)) []scope.DeviceID {
	t.Helper()
	var out []scope.DeviceID
	for d, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.ID)
	}
	return out
}

func TestReads(t *testing.T) {
	t.Parallel()
	inv := setup(t)
	ctx := context.Background()
	if diff := cmp.Diff([]scope.DeviceID{"d-0", "d-1", "d-2", "d-3"}, collect(t, inv.Devices(ctx))); diff != "" {
		t.Errorf("Devices (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]scope.DeviceID{"d-1", "d-3"}, members(t, inv.GroupMembers(ctx, []scope.GroupID{"g-c", "g-a", "g-missing"}))); diff != "" {
		t.Errorf("GroupMembers (-want +got):\n%s", diff)
	}
	groups, err := inv.Groups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []scope.AdminGroup{{ID: "g-a", Name: "A"}, {ID: "g-b", Parent: "g-a", Name: "B"}, {ID: "g-c", Parent: "g-b", Name: "C"}}
	if diff := cmp.Diff(want, groups); diff != "" {
		t.Errorf("Groups (-want +got):\n%s", diff)
	}
	g, err := inv.Group(ctx, "g-b")
	if err != nil || g.Name != "B" {
		t.Errorf("Group = %v, %v", g, err)
	}
	d, err := inv.Device(ctx, "d-2")
	if err != nil || d.DNSName != "pc2.example.com" {
		t.Errorf("Device = %v, %v", d, err)
	}
	if _, err := inv.Device(ctx, "nope"); !errors.Is(err, scope.ErrNotFound) {
		t.Errorf("Device(nope) = %v, want ErrNotFound", err)
	}
	if _, err := inv.Group(ctx, "nope"); !errors.Is(err, scope.ErrNotFound) {
		t.Errorf("Group(nope) = %v, want ErrNotFound", err)
	}
	if inv.Len() != 4 {
		t.Errorf("Len = %d", inv.Len())
	}
	names := []struct {
		addr string
		want []scope.DeviceID
	}{
		{"PC3", []scope.DeviceID{"d-3"}},
		{"pc1", []scope.DeviceID{"d-1"}},
		{"pc3.example.com", []scope.DeviceID{"d-3"}},
		{"PC2.example.com", []scope.DeviceID{"d-2"}},
		{"pc9", nil},
	}
	for _, n := range names {
		a, err := scope.ParseAddress(n.addr)
		if err != nil {
			t.Fatal(err)
		}
		got, err := inv.DevicesByName(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(n.want, got); diff != "" {
			t.Errorf("DevicesByName(%s) (-want +got):\n%s", n.addr, diff)
		}
	}
	ip, _ := scope.ParseAddress("10.0.0.1")
	if _, err := inv.DevicesByName(ctx, ip); !errors.Is(err, scope.ErrInvalid) {
		t.Errorf("DevicesByName(IP) = %v, want ErrInvalid", err)
	}
}

func TestWriteErrors(t *testing.T) {
	t.Parallel()
	inv := setup(t)
	tests := []struct {
		name   string
		err    error
		fields []string
	}{
		{"group without id", inv.PutGroups(context.Background(), scope.AdminGroup{Name: "x"}), []string{"groups[0].id"}},
		{"group with missing parent", inv.PutGroups(context.Background(), scope.AdminGroup{ID: "g-x", Parent: "g-nope"}), []string{"groups[0].parent"}},
		{"cycle", inv.PutGroups(context.Background(), scope.AdminGroup{ID: "g-a", Parent: "g-c"}), []string{"groups[0].parent"}},
		{"self parent", inv.PutGroups(context.Background(), scope.AdminGroup{ID: "g-s", Parent: "g-s"}), []string{"groups[0].parent"}},
		{"device without id and unknown group", inv.PutDevices(context.Background(), scope.Device{GroupID: "g-nope"}), []string{"devices[0].id", "devices[0].group_id"}},
		{"duplicate device", inv.PutDevices(context.Background(), scope.Device{ID: "d-9"}, scope.Device{ID: "d-9"}), []string{"devices[1].id"}},
	}
	for _, tt := range tests {
		var list errs.ValidationErrors
		var one *errs.ValidationError
		var got []string
		switch {
		case errors.As(tt.err, &list):
			for _, e := range list {
				got = append(got, e.Field)
			}
		case errors.As(tt.err, &one):
			got = []string{one.Field}
		default:
			t.Errorf("%s: error = %v, want validation errors", tt.name, tt.err)
			continue
		}
		if diff := cmp.Diff(tt.fields, got); diff != "" {
			t.Errorf("%s: fields (-want +got):\n%s", tt.name, diff)
		}
	}
	// Nothing of a rejected call was stored.
	ctx := context.Background()
	if _, err := inv.Device(ctx, "d-9"); !errors.Is(err, scope.ErrNotFound) {
		t.Error("a rejected PutDevices stored a device")
	}
	if g, _ := inv.Group(ctx, "g-a"); g.Parent != "" {
		t.Error("a rejected PutGroups changed a group")
	}
}

func TestDeletes(t *testing.T) {
	t.Parallel()
	inv := setup(t)
	ctx := context.Background()
	if err := inv.DeleteGroup(ctx, "g-c"); !errors.Is(err, errs.ErrConflict) {
		t.Errorf("DeleteGroup of a group with devices = %v, want ErrConflict", err)
	}
	if err := inv.DeleteGroup(ctx, "g-a"); !errors.Is(err, errs.ErrConflict) {
		t.Errorf("DeleteGroup of a group with subgroups = %v, want ErrConflict", err)
	}
	if err := inv.DeleteGroup(ctx, "g-nope"); !errors.Is(err, scope.ErrNotFound) {
		t.Errorf("DeleteGroup(nope) = %v, want ErrNotFound", err)
	}
	// Moving d-3 out of g-c empties it.
	if err := inv.PutDevices(ctx, scope.Device{ID: "d-3", GroupID: "g-a"}); err != nil {
		t.Fatal(err)
	}
	if err := inv.DeleteGroup(ctx, "g-c"); err != nil {
		t.Fatalf("DeleteGroup of an empty leaf = %v", err)
	}
	if err := inv.DeleteDevice(ctx, "d-2"); err != nil {
		t.Fatal(err)
	}
	if err := inv.DeleteDevice(ctx, "d-2"); !errors.Is(err, scope.ErrNotFound) {
		t.Errorf("second DeleteDevice = %v, want ErrNotFound", err)
	}
	if err := inv.DeleteGroup(ctx, "g-b"); err != nil {
		t.Fatalf("DeleteGroup after its device left = %v", err)
	}
	if diff := cmp.Diff([]scope.DeviceID{"d-1", "d-3"}, members(t, inv.GroupMembers(ctx, []scope.GroupID{"g-a", "g-b", "g-c"}))); diff != "" {
		t.Errorf("GroupMembers after moves (-want +got):\n%s", diff)
	}
}

func TestCancelledIteration(t *testing.T) {
	t.Parallel()
	inv := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var got error
	for _, err := range inv.Devices(ctx) {
		got = err
	}
	if !errors.Is(got, context.Canceled) {
		t.Errorf("Devices with a cancelled context yielded %v", got)
	}
	got = nil
	for _, err := range inv.GroupMembers(ctx, []scope.GroupID{"g-a"}) {
		got = err
	}
	if !errors.Is(got, context.Canceled) {
		t.Errorf("GroupMembers with a cancelled context yielded %v", got)
	}
	if _, err := inv.Device(ctx, "d-1"); !errors.Is(err, context.Canceled) {
		t.Errorf("Device = %v", err)
	}
}

// TestConcurrentReadersAndWriters is meant for -race: readers iterate old
// and new snapshots while writers put and delete devices.
func TestConcurrentReadersAndWriters(t *testing.T) {
	t.Parallel()
	inv := setup(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				id := scope.DeviceID(fmt.Sprintf("w%d-%03d", w, i))
				if err := inv.PutDevices(ctx, scope.Device{ID: id, GroupID: "g-b"}); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					if err := inv.DeleteDevice(ctx, id); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				var ids []scope.DeviceID
				for m, err := range inv.GroupMembers(ctx, []scope.GroupID{"g-b"}) {
					if err != nil {
						t.Error(err)
						return
					}
					ids = append(ids, m.ID)
				}
				if !slices.IsSorted(ids) {
					t.Error("GroupMembers not sorted")
					return
				}
				if _, err := scope.Resolve(ctx, scope.Scope{Kind: scope.Group, Group: "g-a"}, inv); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := inv.Len(); got != 4+2*133 {
		t.Errorf("Len = %d, want %d", got, 4+2*133)
	}
}
