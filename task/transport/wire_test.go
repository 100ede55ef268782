package transport_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/restart"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

var update = flag.Bool("update", false, "rewrite the golden message files")

var at = time.Date(2026, 3, 23, 10, 0, 0, 0, time.UTC)

// spec is the task of the golden Deliver: the task of protocol 2's
// golden Deliver, less what a device is no longer sent.
func spec() transport.TaskSpec {
	return transport.TaskSpec{ID: "t1", Name: "Quick scan", Application: "Endpoint Security", Type: "virus_scan",
		Scope: transport.ScopeSpec{Kind: "group"}, Schedule: schedule.Default(schedule.EveryDays, at, time.UTC),
		Restart: restart.Default(), Revision: 3, SettingsRevision: 2, Settings: json.RawMessage(`{"action":"disinfect"}`)}
}

// fullSpec is the task of the golden StartRun: every field of TaskSpec
// set, so that the golden files pin the encoding of each of them
// (TestGoldenCoversEveryTaskSpecField).
func fullSpec() transport.TaskSpec {
	sch := schedule.Default(schedule.Weekly, at, time.UTC)
	sch.StopAfter = schedule.Limit{Enabled: true, Minutes: 90}
	rst := restart.Default()
	rst.Action = restart.DoNotRestart
	// A fixed ciphertext (a real one has a fresh nonce): the device
	// opens it, the wire only carries it.
	pw, err := credentials.ParseSealed("tfsealed:v1:k1:" + base64.RawURLEncoding.EncodeToString(make([]byte, 28)))
	if err != nil {
		panic(err)
	}
	return transport.TaskSpec{ID: "t9", Name: "Nightly update", Description: "the device user's own task", Application: "Endpoint Security",
		ApplicationVersion: "12.1", Type: "update", Scope: transport.ScopeSpec{Kind: transport.ScopeLocal}, Schedule: sch,
		Account: credentials.Account{Name: "svc-update", Password: pw}, Restart: rst,
		Notifications: transport.NotificationsSpec{History: transport.HistoryAll, DeviceEventLog: true},
		Settings:      json.RawMessage(`{"source":"server"}`), Suspended: true, Revision: 8, SettingsRevision: 7}
}

// golden are the messages of the current protocol version, one per kind:
// their files in testdata/golden pin the wire. A change that alters one
// is a protocol change (see the package documentation).
func golden() map[string]transport.Message {
	def := &transport.Definition{Task: spec(), Since: at, Devices: 2,
		LastManual: &transport.Start{TaskID: "t1", RunID: transport.RunID(at, transport.Manual), At: at, Manual: true}}
	full := &transport.Definition{Task: fullSpec(), Since: at, Devices: 1}
	v := transport.ProtocolVersion
	return map[string]transport.Message{
		"deliver":  {Version: v, Kind: transport.Deliver, Device: "d1", SentAt: at, Definition: def, Slot: &transport.Slot{Index: 1, Of: 2}},
		"withdraw": {Version: v, Kind: transport.Withdraw, Device: "d1", SentAt: at, TaskID: "t1"},
		"start": {Version: v, Key: "s/t9/1", Kind: transport.StartRun, Device: "d1", SentAt: at, Definition: full,
			Start: &transport.Start{TaskID: "t9", RunID: transport.RunID(at, transport.Manual), At: at, Due: at.Add(time.Minute), Manual: true}},
		"stop":     {Version: v, Key: "x/t1/1", Kind: transport.StopRun, Device: "d1", SentAt: at, TaskID: "t1", Control: &transport.Control{RunID: 29}},
		"pause":    {Version: v, Key: "pause/t1/29/4", Kind: transport.PauseRun, Device: "d1", SentAt: at, TaskID: "t1", Control: &transport.Control{RunID: 29, Order: 4}},
		"resume":   {Version: v, Key: "resume/t1/29/5", Kind: transport.ResumeRun, Device: "d1", SentAt: at, TaskID: "t1", Control: &transport.Control{RunID: 29, Order: 5}},
		"wake":     {Version: v, Kind: transport.Wake, Device: "d1", SentAt: at},
		"shutdown": {Version: v, Kind: transport.Shutdown, Device: "d1", SentAt: at},
		"sync":     {Version: v, Kind: transport.Sync, Device: "d1", SentAt: at, SyncInfo: &transport.SyncInfo{UpdatesGeneration: 7, UpdatesAt: at}},
		"heartbeat": {Version: v, Kind: transport.Heartbeat, Device: "d1", SentAt: at, Heartbeat: &transport.HeartbeatInfo{UpdatesGeneration: 7,
			Held: []transport.HeldTask{{TaskID: "t1", Revision: 3, Slot: &transport.Slot{Index: 1, Of: 2}}, {TaskID: "t2", Revision: 1}}, Quiet: true}},
		"results": {Version: v, Key: "r/d1/t1/29/2", Kind: transport.Results, Device: "d1", SentAt: at, Merged: []string{"r/d1/t1/29/2", "r/d1/t1/29/3"},
			Results: []transport.Result{
				{TaskID: "t1", RunID: 29, Seq: 2, State: "running", DueAt: at, StartedAt: at, UpdatedAt: at},
				{TaskID: "t1", RunID: 29, Seq: 3, State: "completed", DueAt: at, StartedAt: at, FinishedAt: at.Add(time.Minute), UpdatedAt: at.Add(time.Minute), Progress: 100, Message: "done"},
			}},
		"events": {Version: v, Key: "ev/d1/w", Kind: transport.Events, Device: "d1", SentAt: at,
			Events: []transport.Event{{TaskID: "t1", RunID: 29, At: at, Level: "progress", Severity: "warning", Message: "cannot be paused", Key: "d1/w"}}},
		"updates_downloaded": {Version: v, Key: "u/d1/repo-1", Kind: transport.UpdatesDownloaded, Device: "d1", SentAt: at},
		"virus_outbreak":     {Version: v, Key: "v/d1/o1", Kind: transport.VirusOutbreak, Device: "d1", SentAt: at, Outbreak: &transport.Outbreak{AppType: 1, At: at}},
		"local_edit": {Version: v, Key: "e/d1/t1/3/1", Kind: transport.LocalEdit, Device: "d1", SentAt: at,
			Edit: &transport.Edit{User: "alice", BaseRevision: 3, Task: json.RawMessage(`{"id":"t1","description":"mine"}`)}},
		"ack":   {Version: v, Kind: transport.Ack, Device: "d1", SentAt: at, Acks: []string{"r/d1/t1/29/2"}},
		"error": {Version: v, Kind: transport.Error, Device: "d1", SentAt: at, Error: &transport.ErrorInfo{Code: transport.ErrUnknownKind, Kind: "teleport", Key: "k1", Message: "the server does not take \"teleport\" messages from devices"}},
	}
}

// Every message kind of the current version encodes exactly as its
// golden file, and the golden file decodes back to the message.
func TestGoldenMessages(t *testing.T) {
	t.Parallel()
	for name, m := range golden() {
		path := filepath.Join("testdata", "golden", name+".json")
		b, err := transport.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, b, "", "  "); err != nil {
			t.Fatal(err)
		}
		pretty.WriteByte('\n')
		if *update {
			if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run with -update to create it)", name, err)
		}
		if diff := cmp.Diff(string(want), pretty.String()); diff != "" {
			t.Errorf("%s: the wire changed (-golden +now); a protocol change needs a new version:\n%s", name, diff)
		}
		got, err := transport.DecodeBytes(want)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		again, err := transport.Encode(got)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Errorf("%s: the golden file decodes to a different message:\n%s\n%s", name, again, b)
		}
		if !transport.KnownKind(got.Kind) {
			t.Errorf("%s: kind %q not known", name, got.Kind)
		}
	}
	if n := len(golden()); n != 17 {
		t.Errorf("%d golden messages, want one per kind (17)", n)
	}
}

// Protocol 1 (no version field, untagged Go field names) messages from an
// agent one version older decode into the current types, unknown fields
// are ignored, and fields a newer sender adds are ignored too.
func TestProtocol1MessagesDecode(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "v1", "*.json"))
	if err != nil || len(files) < 3 {
		t.Fatalf("protocol 1 samples: %v %v", files, err)
	}
	want := map[string]transport.Message{
		"results.json": {Key: "r/d1/t1/29/3", Kind: transport.Results, Device: "d1", SentAt: at, Merged: []string{"r/d1/t1/29/3"},
			Results: []transport.Result{{TaskID: "t1", Device: "d1", RunID: 29, Seq: 3, State: "completed", DueAt: at, StartedAt: at, FinishedAt: at, UpdatedAt: at, Progress: 100, Message: "done"}}},
		"heartbeat.json": {Kind: transport.Heartbeat, Device: "d1", SentAt: at, Heartbeat: &transport.HeartbeatInfo{UpdatesGeneration: 7,
			Held: []transport.HeldTask{{TaskID: "t1", Revision: 3, Slot: &transport.Slot{Index: 1, Of: 2}}}}},
		"events.json": {Key: "ev/d1/w", Kind: transport.Events, Device: "d1", SentAt: at,
			Events: []transport.Event{{TaskID: "t1", Device: "d1", RunID: 29, At: at, Level: "progress", Severity: "warning", Message: "cannot be paused", Key: "d1/w"}}},
		"virus_outbreak.json": {Key: "v/d1/o1", Kind: transport.VirusOutbreak, Device: "d1", SentAt: at, Outbreak: &transport.Outbreak{AppType: 1, At: at}},
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := transport.DecodeBytes(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		w, ok := want[filepath.Base(f)]
		if !ok {
			t.Fatalf("%s: no expectation", f)
		}
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", f, diff)
		}
	}
}

// compactRaw compares JSON documents by content, not by layout.
var compactRaw = cmp.Comparer(func(a, b json.RawMessage) bool {
	var x, y bytes.Buffer
	if json.Compact(&x, a) != nil || json.Compact(&y, b) != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(x.Bytes(), y.Bytes())
})

// Protocol 2 messages (testdata/v2: protocol 2's golden files, whose
// Deliver and StartRun carried the whole task) decode to the same meaning
// as today's: the same message but for its version, and a definition that
// holds exactly what TaskSpec carries of the task.
func TestProtocol2MessagesDecode(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "v2", "*.json"))
	if err != nil || len(files) != 17 {
		t.Fatalf("protocol 2 samples: %d files, %v", len(files), err)
	}
	want := golden()
	// Protocol 2's StartRun carried the Deliver's task.
	st := want["start"]
	st.Key, st.Start = "s/t1/1", &transport.Start{TaskID: "t1", RunID: transport.RunID(at, transport.Manual), At: at, Due: at.Add(time.Minute), Manual: true}
	st.Definition = want["deliver"].Definition
	want["start"] = st
	decodeAsOlder(t, files, want, 2)
}

// beforeQuiet returns a golden message as protocols 1 to 3 sent it: their
// heartbeats had no Quiet flag (protocol 4), so the server answers each
// with a Sync.
func beforeQuiet(m transport.Message) transport.Message {
	if m.Heartbeat != nil {
		hb := *m.Heartbeat
		hb.Quiet = false
		m.Heartbeat = &hb
	}
	return m
}

// Protocol 3 messages (testdata/v3: protocol 3's golden files) decode to
// the same meaning as today's: the same message but for its version, and
// a heartbeat without Quiet.
func TestProtocol3MessagesDecode(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "v3", "*.json"))
	if err != nil || len(files) != 17 {
		t.Fatalf("protocol 3 samples: %d files, %v", len(files), err)
	}
	want := golden()
	decodeAsOlder(t, files, want, 3)
}

// An agent of protocol 2 decodes a Definition's task as a task.Task: a
// Deliver and a StartRun of this version must give it every field it
// used, with the same meaning.
func TestProtocol2AgentReadsTaskSpec(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"deliver", "start"} {
		b, err := os.ReadFile(filepath.Join("testdata", "golden", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var old struct {
			Definition struct {
				Task task.Task `json:"task"`
			} `json:"definition"`
		}
		if err := json.Unmarshal(b, &old); err != nil {
			t.Fatalf("%s: a protocol 2 agent cannot decode it: %v", name, err)
		}
		sp := golden()[name].Definition.Task
		o := old.Definition.Task
		got := transport.TaskSpec{ID: o.ID, Name: o.Name, Description: o.Description, Application: o.Application,
			ApplicationVersion: o.ApplicationVersion, Type: o.Type, Scope: transport.ScopeSpec{Kind: transport.ScopeKind(o.Scope.Kind)},
			Schedule: o.Schedule, Account: o.Account, Restart: o.Restart,
			Notifications: transport.NotificationsSpec{History: transport.HistoryLevel(o.Notifications.History), DeviceEventLog: o.Notifications.DeviceEventLog},
			Suspended:     o.Suspended, Revision: o.Revision, SettingsRevision: o.SettingsRevision}
		if raw, ok := o.Settings.(map[string]any); ok {
			got.Settings, _ = json.Marshal(raw)
		}
		if diff := cmp.Diff(sp, got, compactRaw); diff != "" {
			t.Errorf("%s: a protocol 2 agent reads (-sent +read):\n%s", name, diff)
		}
		if (o.Kind() == task.Local) != sp.Local() {
			t.Errorf("%s: a protocol 2 agent reads kind %s, the spec says local=%v", name, o.Kind(), sp.Local())
		}
	}
}

// Every field of TaskSpec is set in a golden message, so its encoding is
// pinned: a field added to TaskSpec (or a change of the JSON of the
// schedule, credentials or restart types it carries) changes a golden
// file and fails TestGoldenMessages.
func TestGoldenCoversEveryTaskSpecField(t *testing.T) {
	t.Parallel()
	v := reflect.ValueOf(golden()["start"].Definition.Task)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("TaskSpec.%s is zero in the golden StartRun: its encoding is not pinned", v.Type().Field(i).Name)
		}
	}
}

func TestDecodeRefusesBadEnvelopes(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"not json":         `{"kind":`,
		"no kind":          `{"key":"k"}`,
		"negative version": `{"version":-1,"kind":"ack"}`,
		"wrong type":       `{"kind":"results","results":{"a":1}}`,
	} {
		if _, err := transport.DecodeBytes([]byte(in)); !errors.Is(err, transport.ErrInvalid) {
			t.Errorf("%s: error %v, want ErrInvalid", name, err)
		}
	}
	big := `{"kind":"ack","acks":["` + strings.Repeat("a", transport.MaxMessageBytes) + `"]}`
	if _, err := transport.Decode(strings.NewReader(big)); !errors.Is(err, transport.ErrTooLarge) {
		t.Errorf("a message over MaxMessageBytes: %v, want ErrTooLarge", err)
	}
}

func TestClip(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdefghij", 6, "abc…"},
		{"ééééé", 7, "éé…"}, // never cuts a rune
		{"abc", 2, ""},
	} {
		got := transport.Clip(c.in, c.n)
		if got != c.want || len(got) > c.n || !utf8.ValidString(got) {
			t.Errorf("Clip(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

// FuzzDecode: any input decodes to a message or an ErrInvalid/ErrTooLarge
// error, never a panic, and a decoded message encodes again.
func FuzzDecode(f *testing.F) {
	for _, m := range golden() {
		b, _ := transport.Encode(m)
		f.Add(b)
	}
	f.Add([]byte(`{"Kind":"results","Results":[{"task_id":"t","run_id":-1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := transport.DecodeBytes(b)
		if err != nil {
			if !errors.Is(err, transport.ErrInvalid) && !errors.Is(err, transport.ErrTooLarge) {
				t.Fatalf("error %v is neither ErrInvalid nor ErrTooLarge", err)
			}
			return
		}
		if _, err := transport.Encode(m); err != nil {
			t.Fatalf("a decoded message does not encode: %v", err)
		}
	})
}

// decodeAsOlder checks that each older protocol's sample file decodes to
// its golden message as that protocol sent it (its version, no Quiet).
func decodeAsOlder(t *testing.T, files []string, want map[string]transport.Message, version int) {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := transport.DecodeBytes(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		w, ok := want[strings.TrimSuffix(filepath.Base(f), ".json")]
		if !ok {
			t.Fatalf("%s: no expectation", f)
		}
		w.Version = version
		w = beforeQuiet(w)
		if diff := cmp.Diff(w, got, compactRaw); diff != "" {
			t.Errorf("%s (-want +got):\n%s", f, diff)
		}
	}
}
