package credentials

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type installSettings struct {
	Package       string            `json:"package"`
	SHA256        string            `json:"sha256"`
	AdminPassword string            `json:"admin_password"`
	PasswordHint  string            `json:"password_hint"`
	Args          []string          `json:"args"`
	Env           map[string]string `json:"env"`
	Ignored       string            `json:"-"`
	NoTag         string
	RunAs         Account         `json:"run_as"`
	Extra         json.RawMessage `json:"extra"`
	Plain         Secret          `json:"plain"`
	Nested        *nested         `json:"nested,omitempty"`
	embeddedPart
	unexported string
}

type nested struct {
	APIKey string `json:"apiKey"`
	Self   *nested
}

type embeddedPart struct {
	ClientSecret string `json:"client_secret"`
}

func TestScanSettings(t *testing.T) {
	t.Parallel()
	s := newSealer(t, "k1")
	acct, _ := Specify("svc", NewSecret("pw"), s)
	n := &nested{APIKey: "abc"}
	n.Self = n // a cycle
	v := installSettings{
		Package:       `C:\Program Files\Vendor\AgentSetup_2026-01-Release-x64.msi`,
		SHA256:        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		AdminPassword: "hunter2",
		PasswordHint:  "the usual",
		Args: []string{
			"/quiet",
			"/server=https://deploy:Sup3rS3cret@repo.corp.example/agent",
			"Server=db;Database=x;User Id=sa;Password=Pa55w0rd;",
			"--token=ghp_0123456789abcdefghijklmnopqrstuvwxyzAB",
			"--id=123e4567-e89b-12d3-a456-426614174000",
			"--key=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdI",
			"InstallApplicationRemotelyForAllDevices",
		},
		Env: map[string]string{
			"DB PASSWORD": "${DB_PASSWORD}", // a placeholder, fine
			"API_TOKEN":   "t0k3n-value",
			"LOG_LEVEL":   "debug",
			"CERT":        "-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n-----END RSA PRIVATE KEY-----",
			"JWT":         "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
			"SEALED_PWD":  "tfsealed:v1:k1:AAAA",
			"AWS":         "AKIAIOSFODNN7EXAMPLE",
			"PWD_STARS":   "********",
		},
		Ignored: "password=hidden",
		NoTag:   "x",
		RunAs:   acct,
		Extra:   json.RawMessage(`{"nested":[{"secret":"s3cr3t"},{"ok":"fine"}],"count":3}`),
		Plain:   NewSecret("plaintext"),
		Nested:  n,
		embeddedPart: embeddedPart{
			ClientSecret: "cs",
		},
		unexported: "password=zzz",
	}
	want := []Finding{
		{"admin_password", ReasonSecretName},
		{"args[1]", ReasonURLCredentials},
		{"args[2]", ReasonEmbeddedPassword},
		{"args[3]", ReasonKnownToken},
		{"args[5]", ReasonHighEntropy},
		{"env.API_TOKEN", ReasonSecretName},
		{"env.AWS", ReasonKnownToken},
		{"env.CERT", ReasonPrivateKey},
		{"env.JWT", ReasonKnownToken},
		{"extra.nested[0].secret", ReasonSecretName},
		{"plain", ReasonPlaintextSecret},
		{"nested.apiKey", ReasonSecretName},
		{"client_secret", ReasonSecretName},
	}
	got := ScanSettings(v)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("findings (-want +got):\n%s", diff)
	}
	// Same answer through the JSON document and through a pointer.
	if diff := cmp.Diff(want, ScanSettings(&v)); diff != "" {
		t.Fatalf("pointer: (-want +got):\n%s", diff)
	}
	for _, f := range got {
		if strings.Contains(f.String(), "hunter2") {
			t.Fatal("a finding contains the value")
		}
	}
}

func TestScanSettingsValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		v    any
		want []Finding
	}{
		{"nil", nil, nil},
		{"root string secret-looking", "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdI", []Finding{{"", ReasonHighEntropy}}},
		{"raw JSON root", json.RawMessage(`{"Password":"x","list":["AKIAIOSFODNN7EXAMPLE"]}`),
			[]Finding{{"Password", ReasonSecretName}, {"list[0]", ReasonKnownToken}}},
		{"raw JSON invalid", json.RawMessage(`password=abc`), []Finding{{"", ReasonEmbeddedPassword}}},
		{"map any", map[string]any{"dbPwd": "x", "n": 1, "pwdLength": "12", "token_url": "https://x"},
			[]Finding{{"dbPwd", ReasonSecretName}}},
		{"empty secret values", map[string]string{"password": "", "token": "  "}, nil},
		{"non-string under secret name", map[string]any{"password": 123, "use_password": true}, nil},
		{"bytes under secret name", map[string][]byte{"private_key": []byte("x"), "blob": []byte("y")}, []Finding{{"private_key", ReasonSecretName}}},
		{"int keys", map[int]string{3: "https://u:p@h"}, []Finding{{"[\"3\"]", ReasonURLCredentials}}},
		{"hex checksum", map[string]string{"checksum": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}, nil},
		{"hex secret", map[string]string{"value": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}, []Finding{{"value", ReasonHighEntropy}}},
		{"uuid", []string{"123e4567-e89b-12d3-a456-426614174000"}, nil},
		{"long path", []string{"/opt/vendor/lib/libSomethingVeryLong2026Edition.so"}, nil},
		{"prose", []string{"Please restart your computer to finish installing updates."}, nil},
		{"zero secret", struct{ P Secret }{}, nil},
		{"array", [2]string{"ok", "pwd: s3cret"}, []Finding{{"[1]", ReasonEmbeddedPassword}}},
		{"placeholders", map[string]string{"password": "%ADMIN_PASSWORD%", "secret": "{{ .Secret }}", "token": "<token>", "pass": "$PASS"}, nil},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, ScanSettings(tt.v)); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestNameWords(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"adminPassword":   "admin password",
		"APIKey":          "api key",
		"db_pwd-2":        "db pwd 2",
		"HTTPServerToken": "http server token",
		"sha256":          "sha 256",
		"":                "",
	} {
		if got := strings.Join(nameWords(in), " "); got != want {
			t.Errorf("nameWords(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestScanSettingsBounded(t *testing.T) {
	t.Parallel()
	// Deep nesting and huge fan-out stay bounded.
	var deep any = "password=x"
	for range 1000 {
		deep = []any{deep}
	}
	if got := ScanSettings(deep); len(got) != 0 {
		t.Errorf("deeper than the limit: %v", got)
	}
	many := map[string]string{}
	for i := range 5000 {
		many[strings.Repeat("k", 1+i%7)+string(rune('a'+i%26))+strings.Repeat("x", i/182)+"_password"] = "v"
	}
	if got := ScanSettings(many); len(got) > scanMaxFindings {
		t.Errorf("%d findings > %d", len(got), scanMaxFindings)
	}
}

// TestScanSettingsRates measures the heuristic on random tokens (should be
// found) and on typical harmless task-setting values (should not).
func TestScanSettingsRates(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	found := 0
	const n = 2000
	for range n {
		b := make([]byte, 24+rng.IntN(40))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if len(ScanSettings(map[string]string{"value": string(b)})) > 0 {
			found++
		}
	}
	t.Logf("random tokens detected: %d/%d", found, n)
	if rate := float64(found) / n; rate < 0.9 {
		t.Errorf("random tokens detected at %.2f, want >= 0.90", rate)
	}
	benign := []string{
		`C:\Program Files\Kaspersky Lab\Kaspersky Endpoint Security for Windows\avp.exe`,
		"/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
		"https://updates.corp.example/v2/packages/endpoint-agent/12.5.0.4521/setup.msi",
		"KasperskyEndpointSecurityForWindows_12.5.0.4521_Release",
		"{6F9619FF-8B86-D011-B42D-00C04FC964FF}",
		"WIN-7QK2L9M3T1.corp.example.local",
		"Microsoft.NETCore.App.Runtime.win-x64",
		"2026-11-22T00:10:30Z",
		"S-1-5-21-3623811015-3361044348-30300820-1013",
		"InstallApplicationRemotelyWithoutRestartPrompt",
		"Please restart your computer to finish installing updates.",
		"ProductVersion=12.5.0.4521;Locale=en-US",
		"HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate",
	}
	for _, v := range benign {
		if got := ScanSettings(map[string]string{"value": v}); len(got) > 0 {
			t.Errorf("harmless %q reported: %v", v, got)
		}
	}
}

// A field tagged `taskfleet:"secret"` is reported whatever its name and
// value look like, and only when it is set.
func TestScanSettingsMarkedField(t *testing.T) {
	type s struct {
		K     string `json:"k" taskfleet:"secret"`
		Empty string `json:"empty" taskfleet:"secret"`
		Port  int    `json:"port" taskfleet:"secret"`
		Plain string `json:"plain"`
	}
	got := ScanSettings(s{K: "abc", Port: 8080, Plain: "abc"})
	want := []Finding{{Path: "k", Reason: ReasonMarkedSecret}, {Path: "port", Reason: ReasonMarkedSecret}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("ScanSettings = %v, want %v", got, want)
	}
}
