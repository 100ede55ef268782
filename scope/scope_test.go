package scope_test

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/scope"
)

var update = flag.Bool("update", false, "rewrite golden files")

func mustAddrs(t testing.TB, texts ...string) []scope.Address {
	t.Helper()
	out := make([]scope.Address, len(texts))
	for i, s := range texts {
		a, err := scope.ParseAddress(s)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = a
	}
	return out
}

type fieldErr struct{ Field, Value, Reason string }

// fieldErrs flattens an error into (field, value, reason substring) rows.
func fieldErrs(t *testing.T, err error) []fieldErr {
	t.Helper()
	if err == nil {
		return nil
	}
	if !errors.Is(err, scope.ErrInvalid) {
		t.Fatalf("error %v does not match ErrInvalid", err)
	}
	var list scope.ValidationErrors
	var one *scope.ValidationError
	switch {
	case errors.As(err, &list):
	case errors.As(err, &one):
		list = scope.ValidationErrors{one}
	default:
		t.Fatalf("error %T is neither *ValidationError nor ValidationErrors", err)
	}
	var out []fieldErr
	for _, e := range list {
		out = append(out, fieldErr{e.Field, e.Value, e.Reason})
	}
	return out
}

// matchErrs compares errors with want, where want.Reason is a substring.
func matchErrs(t *testing.T, got []fieldErr, want []fieldErr) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("errors = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Field != want[i].Field || got[i].Value != want[i].Value || !strings.Contains(got[i].Reason, want[i].Reason) {
			t.Errorf("error[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", scope.MaxIDLength+1)
	tests := []struct {
		name string
		s    scope.Scope
		want []fieldErr
	}{
		{"local", scope.Scope{Kind: scope.Local, Device: "d-1"}, nil},
		{"server", scope.Scope{Kind: scope.Server}, nil},
		{"group defaults", scope.Scope{Kind: scope.Group, Group: "g-1"}, nil},
		{"group all options", scope.Scope{Kind: scope.Group, Group: "g-1", DistributeToServers: true, ExcludedGroups: []scope.GroupID{"g-2", "g-3"}}, nil},
		{"group only", scope.Scope{Kind: scope.Group, Group: "g-1", GroupOnly: true}, nil},
		{"devices", scope.Scope{Kind: scope.Devices, Devices: []scope.DeviceID{"d-1", "d-2"}}, nil},
		{"addresses", scope.Scope{Kind: scope.Addresses, Addresses: mustAddrs(t, "10.0.0.0/8", "PC01")}, nil},
		{"selection", scope.Scope{Kind: scope.Selection, Selection: `"a" in device.tags`, SelectionName: "A"}, nil},
		{"saved selection", scope.Scope{Kind: scope.Selection, SelectionID: "sel-1"}, nil},
		{"saved and inline selection", scope.Scope{Kind: scope.Selection, SelectionID: "sel-1", Selection: "true"},
			[]fieldErr{{"selection", "", "only one of selection"}}},
		{"saved selection with a name", scope.Scope{Kind: scope.Selection, SelectionID: "sel-1", SelectionName: "X"},
			[]fieldErr{{"selection_name", "", "only allowed with an inline selection"}}},
		{"saved selection long id", scope.Scope{Kind: scope.Selection, SelectionID: scope.SelectionID(long)},
			[]fieldErr{{"selection_id", long[:80] + "…", "at most 256 bytes"}}},
		{"saved selection NUL id", scope.Scope{Kind: scope.Selection, SelectionID: "a\x00b"},
			[]fieldErr{{"selection_id", "", "valid UTF-8 without NUL"}}},
		{"selection id on a group", scope.Scope{Kind: scope.Group, Group: "g-1", SelectionID: "sel-1"},
			[]fieldErr{{"selection_id", "", "only allowed for kind selection"}}},

		{"kind missing", scope.Scope{}, []fieldErr{{"kind", "", "is required"}}},
		{"kind unknown", scope.Scope{Kind: "global"}, []fieldErr{{"kind", "global", "must be one of"}}},
		{"local without device", scope.Scope{Kind: scope.Local}, []fieldErr{{"device", "", "is required"}}},
		{"local long id", scope.Scope{Kind: scope.Local, Device: scope.DeviceID(long)}, []fieldErr{{"device", long[:80] + "…", "at most 256 bytes"}}},
		{"group without group", scope.Scope{Kind: scope.Group}, []fieldErr{{"group", "", "is required"}}},
		{"servers without subgroups", scope.Scope{Kind: scope.Group, Group: "g-1", GroupOnly: true, DistributeToServers: true},
			[]fieldErr{{"distribute_to_servers", "true", "only allowed when distributing to subgroups"}}},
		{"exclusions without subgroups", scope.Scope{Kind: scope.Group, Group: "g-1", GroupOnly: true, ExcludedGroups: []scope.GroupID{"g-2"}},
			[]fieldErr{{"excluded_groups", "", "only allowed when distributing to subgroups"}}},
		{"excluded group is the group", scope.Scope{Kind: scope.Group, Group: "g-1", ExcludedGroups: []scope.GroupID{"g-1"}},
			[]fieldErr{{"excluded_groups[0]", "g-1", "strict subgroup"}}},
		{"excluded duplicate and empty", scope.Scope{Kind: scope.Group, Group: "g-1", ExcludedGroups: []scope.GroupID{"g-2", "", "g-2"}},
			[]fieldErr{{"excluded_groups[1]", "", "is required"}, {"excluded_groups[2]", "g-2", "duplicate of excluded_groups[0]"}}},
		{"too many exclusions", scope.Scope{Kind: scope.Group, Group: "g-1", ExcludedGroups: make([]scope.GroupID, scope.MaxExcludedGroups+1)},
			[]fieldErr{{"excluded_groups", "10001 entries", "at most 10000"}}},
		{"devices empty", scope.Scope{Kind: scope.Devices, Devices: []scope.DeviceID{}}, []fieldErr{{"devices", "", "at least one"}}},
		{"devices duplicate", scope.Scope{Kind: scope.Devices, Devices: []scope.DeviceID{"d-1", "d-1", ""}},
			[]fieldErr{{"devices[1]", "d-1", "duplicate of devices[0]"}, {"devices[2]", "", "is required"}}},
		{"too many devices", scope.Scope{Kind: scope.Devices, Devices: make([]scope.DeviceID, scope.MaxListLength+1)},
			[]fieldErr{{"devices", "100001 entries", "at most 100000"}}},
		{"addresses empty", scope.Scope{Kind: scope.Addresses}, []fieldErr{{"addresses", "", "at least one"}}},
		{"too many addresses", scope.Scope{Kind: scope.Addresses, Addresses: make([]scope.Address, scope.MaxListLength+1)},
			[]fieldErr{{"addresses", "100001 entries", "at most 100000"}}},
		{"address built by hand", scope.Scope{Kind: scope.Addresses, Addresses: []scope.Address{mustAddrs(t, "PC01")[0], {Kind: scope.DNSName, Name: "Bad Name.example"}, {}}},
			[]fieldErr{{"addresses[1]", "Bad Name.example", "build it with ParseAddress"}, {"addresses[2]", "", "build it with ParseAddress"}}},
		{"selection empty", scope.Scope{Kind: scope.Selection}, []fieldErr{{"selection", "", "is required"}}},
		{"selection bad", scope.Scope{Kind: scope.Selection, Selection: "device.nope"}, []fieldErr{{"selection", "device.nope", "undefined field 'nope'"}}},
		{"selection name too long", scope.Scope{Kind: scope.Selection, Selection: "true", SelectionName: strings.Repeat("n", scope.MaxSelectionLength+1)},
			[]fieldErr{{"selection_name", "", "at most 4096 bytes"}}},
		{"fields of other kinds", scope.Scope{Kind: scope.Server, Device: "d", Group: "g", GroupOnly: true, DistributeToServers: true,
			ExcludedGroups: []scope.GroupID{}, Devices: []scope.DeviceID{}, Addresses: []scope.Address{}, Selection: "true", SelectionName: "n"},
			[]fieldErr{
				{"device", "", "only allowed for kind local"},
				{"group", "", "only allowed for kind group"},
				{"group_only", "", "only allowed for kind group"},
				{"distribute_to_servers", "", "only allowed for kind group"},
				{"excluded_groups", "", "only allowed for kind group"},
				{"devices", "", "only allowed for kind devices"},
				{"addresses", "", "only allowed for kind addresses"},
				{"selection", "", "only allowed for kind selection"},
				{"selection_name", "", "only allowed for kind selection"},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			matchErrs(t, fieldErrs(t, tt.s.Validate()), tt.want)
		})
	}
}

func TestRunsOnServer(t *testing.T) {
	t.Parallel()
	want := map[scope.Kind]bool{scope.Local: false, scope.Server: true, scope.Group: false, scope.Devices: false, scope.Addresses: false, scope.Selection: true}
	for k, w := range want {
		if got := (scope.Scope{Kind: k}).RunsOnServer(); got != w {
			t.Errorf("Scope{Kind: %s}.RunsOnServer() = %v, want %v", k, got, w)
		}
	}
}

// TestScopeJSONGolden pins the stored encoding: it is read back from
// databases and KLT files written by older versions.
func TestScopeJSONGolden(t *testing.T) {
	t.Parallel()
	scopes := []scope.Scope{
		{Kind: scope.Local, Device: "d-1"},
		{Kind: scope.Server},
		{Kind: scope.Group, Group: "g-42"},
		{Kind: scope.Group, Group: "g-42", GroupOnly: true},
		{Kind: scope.Group, Group: "g-42", DistributeToServers: true, ExcludedGroups: []scope.GroupID{"g-43", "g-44"}},
		{Kind: scope.Devices, Devices: []scope.DeviceID{"d-1", "d-2"}},
		{Kind: scope.Addresses, Addresses: mustAddrs(t, "10.0.0.0/24", "10.1.0.1-10.1.0.9", "2001:db8::7", "pc01", "PC02.Example.com")},
		{Kind: scope.Selection, Selection: `"accounting" in device.tags`, SelectionName: "Accounting"},
		{Kind: scope.Selection, SelectionID: "sel-accounting"},
	}
	var b strings.Builder
	for _, s := range scopes {
		line, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	path := filepath.Join("testdata", "scopes.golden.jsonl")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(golden), b.String()); diff != "" {
		t.Fatalf("encoding changed (-golden +got):\n%s", diff)
	}
	// Decode the golden file back: every scope round-trips and validates.
	for i, line := range strings.Split(strings.TrimSpace(string(golden)), "\n") {
		var s scope.Scope
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if err := s.Validate(); err != nil {
			t.Errorf("line %d: Validate() = %v", i+1, err)
		}
		again, _ := json.Marshal(s)
		if string(again) != line {
			t.Errorf("line %d: round trip gives %s", i+1, again)
		}
	}
}

func TestScopeJSONDefaults(t *testing.T) {
	t.Parallel()
	// A stored group scope without the option fields distributes to
	// subgroups and not to secondary servers (the product documentation's defaults).
	var s scope.Scope
	if err := json.Unmarshal([]byte(`{"kind":"group","group":"g-1"}`), &s); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(scope.Scope{Kind: scope.Group, Group: "g-1"}, s, cmp.Comparer(func(a, b scope.Address) bool { return a.String() == b.String() })); diff != "" {
		t.Fatalf("decoded (-want +got):\n%s", diff)
	}
	if s.GroupOnly || s.DistributeToServers {
		t.Fatal("defaults are wrong")
	}
	err := json.Unmarshal([]byte(`{"kind":"addresses","addresses":["10.0.0.1","bad name"]}`), &s)
	if !errors.Is(err, scope.ErrInvalid) {
		t.Fatalf("bad address in JSON: error = %v, want ErrInvalid", err)
	}
	if msg := fmt.Sprint(err); !strings.Contains(msg, "bad name") {
		t.Errorf("message %q does not quote the offending address", msg)
	}
}
