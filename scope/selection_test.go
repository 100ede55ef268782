package scope_test

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/scope"
)

// fullDevice has every fact.
func fullDevice() *scope.Device {
	return &scope.Device{
		ID:          "d-1",
		NetBIOSName: "ACCT-PC01",
		DNSName:     "acct-pc01.corp.example",
		IPs:         []netip.Addr{netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("2001:db8::7")},
		GroupID:     "g-acct",
		Tags:        []string{"accounting", "berlin"},
		Software: []scope.Software{
			{Name: "Mozilla Firefox", Version: "115.3.0", Vendor: "Mozilla"},
			{Name: "7-Zip", Version: "23.01", Vendor: "Igor Pavlov"},
		},
		OS:           &scope.OS{Name: "Windows 11 Pro", Version: "23H2", Build: "22631", Platform: "windows"},
		TimeZone:     "Europe/Berlin",
		Applications: map[string]scope.AppState{"Kaspersky Endpoint Security": {Installed: true, Running: false}, "X": {Installed: true, Running: true}},
		LastSeen:     time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC),
		Connected:    true,
		Server:       scope.ServerRef{ID: "ksc-1", Role: scope.Primary},
	}
}

func TestSelectionEvaluate(t *testing.T) {
	t.Parallel()
	full := fullDevice()
	bare := &scope.Device{ID: "d-2"} // no facts at all
	tests := []struct {
		expr       string
		full, bare scope.Membership
		bareReason string
	}{
		{`device.id == "d-1"`, scope.In, scope.Out, ""},
		{`device.netbios_name == "ACCT-PC01"`, scope.In, scope.Unknown, "unknown fact device.netbios_name"},
		{`device.dns_name.endsWith(".corp.example")`, scope.In, scope.Unknown, "unknown fact device.dns_name"},
		{`"10.0.0.7" in device.ips`, scope.In, scope.Unknown, "unknown fact device.ips"},
		{`device.group == "g-acct"`, scope.In, scope.Out, ""},
		{`device.group == ""`, scope.Out, scope.In, ""},
		{`"accounting" in device.tags`, scope.In, scope.Unknown, "unknown fact device.tags"},
		{`device.software.exists(s, s.name == "Mozilla Firefox" && int(s.version.split(".")[0]) < 128)`, scope.In, scope.Unknown, "unknown fact device.software"},
		{`device.software.all(s, s.vendor != "")`, scope.In, scope.Unknown, "unknown fact device.software"},
		{`device.os.name.startsWith("Windows 11")`, scope.In, scope.Unknown, "unknown fact device.os"},
		{`device.os.platform == "windows" && device.os.build == "22631" && device.os.version == "23H2"`, scope.In, scope.Unknown, "unknown fact device.os"},
		{`device.time_zone == "Europe/Berlin"`, scope.In, scope.Unknown, "unknown fact device.time_zone"},
		{`"X" in device.applications && device.applications["X"].running`, scope.In, scope.Unknown, "unknown fact device.applications"},
		{`device.applications["Kaspersky Endpoint Security"].installed && !device.applications["Kaspersky Endpoint Security"].running`, scope.In, scope.Unknown, "unknown fact device.applications"},
		{`device.last_seen > timestamp("2026-11-01T00:00:00Z")`, scope.In, scope.Unknown, "unknown fact device.last_seen"},
		{`device.connected`, scope.In, scope.Out, ""},
		{`device.server.role == "primary" && device.server.id == "ksc-1"`, scope.In, scope.Unknown, "unknown fact device.server"},
		// Unknowns are absorbed where the answer does not depend on them.
		{`device.connected && device.os.name == "x"`, scope.Out, scope.Out, ""},
		{`!device.connected || device.os.name == "x"`, scope.Out, scope.In, ""},
		{`device.os.name == "x" || device.id == "d-2"`, scope.Out, scope.In, ""},
		// has() tests for a fact explicitly.
		{`has(device.os) && device.os.name == "Windows 11 Pro"`, scope.In, scope.Out, ""},
		{`!has(device.software)`, scope.Out, scope.In, ""},
		// A missing map key is an evaluation error, reported as Unknown.
		{`device.applications["Y"].running`, scope.Unknown, scope.Unknown, "unknown fact device.applications"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			t.Parallel()
			p, err := scope.CompileSelection(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			if p.String() != tt.expr {
				t.Errorf("String() = %q", p.String())
			}
			if got, reason := p.Evaluate(full); got != tt.full {
				t.Errorf("full device: %s (%s), want %s", got, reason, tt.full)
			}
			got, reason := p.Evaluate(bare)
			if got != tt.bare {
				t.Errorf("bare device: %s (%s), want %s", got, reason, tt.bare)
			}
			if !strings.HasPrefix(reason, tt.bareReason) {
				t.Errorf("bare device reason = %q, want prefix %q", reason, tt.bareReason)
			}
			if got == scope.Unknown && reason == "" {
				t.Error("Unknown without a reason")
			}
		})
	}
	p, _ := scope.CompileSelection(`device.applications["Y"].running`)
	if _, reason := p.Evaluate(full); !strings.Contains(reason, "evaluation error") || !strings.Contains(reason, "no such key") {
		t.Errorf("missing map key: reason %q", reason)
	}
}

func TestSelectionPartialFacts(t *testing.T) {
	t.Parallel()
	d := fullDevice()
	d.OS = &scope.OS{Platform: "windows"} // name unknown
	d.Server.Role = ""
	tests := []struct {
		expr   string
		want   scope.Membership
		reason string
	}{
		{`device.os.platform == "windows"`, scope.In, ""},
		{`device.os.name == "Windows 11 Pro"`, scope.Unknown, "unknown fact device.os.name"},
		{`has(device.os.name)`, scope.Out, ""},
		// The zero role is the primary (this) server.
		{`device.server.role == "primary"`, scope.In, ""},
		{`device.server.id == "ksc-1"`, scope.In, ""},
	}
	for _, tt := range tests {
		p, err := scope.CompileSelection(tt.expr)
		if err != nil {
			t.Fatal(err)
		}
		if got, reason := p.Evaluate(d); got != tt.want || reason != tt.reason {
			t.Errorf("%s = %s %q, want %s %q", tt.expr, got, reason, tt.want, tt.reason)
		}
	}
}

func TestCompileSelectionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr   string
		reason string
		line   int
		column int
	}{
		{"", "is required", 0, 0},
		{"   ", "is required", 0, 0},
		{"device.nmae == 1", "undefined field 'nmae'", 0, 7},
		{`device.os.name == `, "Syntax error", 0, 19},
		{`"a" in device.tags &&`, "Syntax error", 0, 22},
		{"device.tags.size() > 0 &&\n  device.bogus", "undefined field 'bogus'", 2, 9},
		{`user.name == "x"`, "undeclared reference to 'user'", 0, 1},
		{`device.os.name`, "must evaluate to bool, not string", 0, 0},
		{`device.connected + 1`, "found no matching overload", 0, 18},
		{strings.Repeat("a", scope.MaxSelectionLength+1), "at most 4096 bytes", 0, 0},
		{"\xff", "valid UTF-8", 0, 0},
		{strings.Repeat("(", 40) + "true" + strings.Repeat(")", 40), "recursion", 0, 0},
		{`device.software.all(a, device.software.all(b, a.name != b.name))`, "exceeds the limit 10000000 (MaxSelectionCost)", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			t.Parallel()
			p, err := scope.CompileSelection(tt.expr)
			if p != nil || !errors.Is(err, scope.ErrInvalid) {
				t.Fatalf("CompileSelection = %v, %v; want ErrInvalid", p, err)
			}
			var ve *scope.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError", err)
			}
			if ve.Field != "selection" || !strings.Contains(ve.Reason, tt.reason) || ve.Line != tt.line || ve.Column != tt.column {
				t.Errorf("error = %+v, want field selection, reason ~%q, line %d, column %d", ve, tt.reason, tt.line, tt.column)
			}
		})
	}
}

func TestSelectionListBound(t *testing.T) {
	t.Parallel()
	d := fullDevice()
	d.Tags = make([]string, scope.MaxSelectionListFacts+1)
	p, err := scope.CompileSelection(`"accounting" in device.tags`)
	if err != nil {
		t.Fatal(err)
	}
	if got, reason := p.Evaluate(d); got != scope.Unknown || !strings.Contains(reason, "MaxSelectionListFacts") {
		t.Fatalf("oversized tags: %s %q, want Unknown naming MaxSelectionListFacts", got, reason)
	}
	// A selection that does not read the list is unaffected.
	p, _ = scope.CompileSelection(`device.connected`)
	if got, _ := p.Evaluate(d); got != scope.In {
		t.Fatalf("device.connected = %s", got)
	}
}

func TestExampleSelectionsCompile(t *testing.T) {
	t.Parallel()
	ex := scope.ExampleSelections()
	if len(ex) < 2 {
		t.Fatalf("only %d example selections", len(ex))
	}
	names := map[string]bool{}
	for _, s := range ex {
		names[s.Name] = true
		if _, err := scope.CompileSelection(s.Expr); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
	for _, n := range []string{"Windows 11 devices without application X", "tag = accounting"} {
		if !names[n] {
			t.Errorf("missing example %q", n)
		}
	}
	// The examples decide the reference device as documented.
	want := map[string]scope.Membership{
		"Windows 11 devices without application X":                               scope.Out, // it has X
		"tag = accounting":                                                       scope.In,
		"Devices with Firefox older than 128":                                    scope.In,
		"Devices where Kaspersky Endpoint Security is installed but not running": scope.In,
		"Devices managed by a secondary or virtual Administration Server":        scope.Out,
	}
	for _, s := range ex {
		w, ok := want[s.Name]
		if !ok {
			continue
		}
		p, err := scope.CompileSelection(s.Expr)
		if err != nil {
			continue // reported above
		}
		if got, reason := p.Evaluate(fullDevice()); got != w {
			t.Errorf("%s: %s (%s), want %s", s.Name, got, reason, w)
		}
	}
	ex[0].Name = "changed"
	if scope.ExampleSelections()[0].Name == "changed" {
		t.Error("ExampleSelections returns shared state")
	}
}

func TestProgramConcurrentUse(t *testing.T) {
	t.Parallel()
	p, err := scope.CompileSelection(`device.software.exists(s, s.name == "7-Zip") && "berlin" in device.tags`)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := fullDevice()
			for range 200 {
				if got, _ := p.Evaluate(d); got != scope.In {
					errs <- string(got)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent Evaluate = %s", e)
	}
}

// TestSelectionObjectOperations exercises the CEL operations on the
// device schema's lists, maps and objects beyond field access.
func TestSelectionObjectOperations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		want scope.Membership
	}{
		{`device.software.size() == 2`, scope.In},
		{`device.software[0].name == "Mozilla Firefox" && device.software[1].vendor == "Igor Pavlov"`, scope.In},
		{`device.software[0] == device.software[0]`, scope.In},
		{`device.software[0] != device.software[1]`, scope.In},
		{`device.software == device.software`, scope.In},
		{`device.software.map(s, s.name).exists(n, n == "7-Zip")`, scope.In},
		{`device.software.filter(s, s.vendor == "Mozilla").size() == 1`, scope.In},
		{`size(device.software + device.software) == 4`, scope.In},
		{`device.software[0] in device.software`, scope.In},
		{`device.software.exists_one(s, s.name.startsWith("7"))`, scope.In},
		{`device.software[5].name == "x"`, scope.Unknown},
		{`device.os == device.os`, scope.In},
		{`type(device.os) == type(device.os) && type(device.software[0]) != type(device.os)`, scope.In},
		{`device.applications.size() == 2`, scope.In},
		{`device.applications.exists(k, k == "X")`, scope.In},
		{`device.applications.all(k, device.applications[k].installed)`, scope.In},
		{`device.applications == device.applications`, scope.In},
		{`device.applications["X"] == device.applications["X"]`, scope.In},
		{`device.applications["X"] != device.applications["Kaspersky Endpoint Security"]`, scope.In},
		{`device.server == device.server`, scope.In},
		{`device.tags.exists(t, t.lowerAscii() == "berlin")`, scope.In},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			t.Parallel()
			p, err := scope.CompileSelection(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			if got, reason := p.Evaluate(fullDevice()); got != tt.want {
				t.Errorf("= %s (%s), want %s", got, reason, tt.want)
			}
		})
	}
}
