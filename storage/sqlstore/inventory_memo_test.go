package sqlstore_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
)

// Devices read again are not decoded again while their stored facts are
// unchanged (the store remembers them): what a caller does to a device it
// read never shows in later reads, and a change another process stores is
// seen at the next read.
func TestDeviceFactsReadAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "inv.db")
	a, err := sqlstore.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sqlstore.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	addrs := cmp.Comparer(func(x, y netip.Addr) bool { return x == y })
	dev := scope.Device{ID: "d1", IPs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, Tags: []string{"lab"},
		Software: []scope.Software{{Name: "Endpoint Security", Version: "12"}}, OS: &scope.OS{Name: "Windows 11", Platform: "windows"},
		Applications: map[string]scope.AppState{"KES": {Installed: true, Running: true}}}
	if err := a.Devices().PutDevices(ctx, dev); err != nil {
		t.Fatal(err)
	}
	read := func(s *sqlstore.Store) []*scope.Device {
		t.Helper()
		one, err := s.Devices().Device(ctx, "d1")
		if err != nil {
			t.Fatal(err)
		}
		out := []*scope.Device{one}
		for d, err := range s.Devices().Devices(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, d)
		}
		return out
	}
	for round := range 3 {
		for i, got := range read(a) {
			if d := cmp.Diff(dev, *got, addrs); d != "" {
				t.Fatalf("round %d, read %d (-want +got):\n%s", round, i, d)
			}
			// The caller owns what it read.
			got.IPs[0] = netip.MustParseAddr("198.51.100.7")
			got.Tags[0] = "changed"
			got.Software[0].Name = "changed"
			got.OS.Platform = "changed"
			got.Applications["KES"] = scope.AppState{}
			got.Applications["other"] = scope.AppState{Installed: true}
		}
	}
	// Another process changes the device: the next read has it.
	dev.Tags = []string{"lab", "moved"}
	dev.OS = nil
	if err := b.Devices().PutDevices(ctx, dev); err != nil {
		t.Fatal(err)
	}
	for i, got := range read(a) {
		if d := cmp.Diff(dev, *got, addrs); d != "" {
			t.Fatalf("after another process's change, read %d (-want +got):\n%s", i, d)
		}
	}
}
