package task_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/task"
)

type decodeScan struct {
	Action    string   `json:"action" validate:"oneof=report disinfect delete"`
	MaxFileMB int      `json:"max_file_mb" validate:"min=1,max=4096"`
	Paths     []string `json:"paths" validate:"max=3"`
}

func decodeRegistry(t *testing.T) *task.Registry {
	t.Helper()
	r := task.NewRegistry()
	for _, tt := range []task.TaskType{
		{Application: "ES", Name: "scan", Settings: decodeScan{Action: "report", MaxFileMB: 100}},
		{Application: "ES", Name: "pscan", Settings: &decodeScan{Action: "disinfect", MaxFileMB: 8}},
		{Application: "ES", Name: "update"},
	} {
		if err := r.Register(tt); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestDecodeSettingsToTheRegisteredType(t *testing.T) {
	t.Parallel()
	r := decodeRegistry(t)
	tests := []struct {
		name, typ, raw string
		want           any
	}{
		{"full", "scan", `{"action":"delete","max_file_mb":5,"paths":["C:\\"]}`, decodeScan{Action: "delete", MaxFileMB: 5, Paths: []string{`C:\`}}},
		{"missing fields keep the defaults", "scan", `{"max_file_mb":7}`, decodeScan{Action: "report", MaxFileMB: 7}},
		{"empty is the defaults", "scan", ``, decodeScan{Action: "report", MaxFileMB: 100}},
		{"null is the defaults", "scan", ` null `, decodeScan{Action: "report", MaxFileMB: 100}},
		{"pointer type", "pscan", `{"action":"report"}`, &decodeScan{Action: "report", MaxFileMB: 8}},
		{"no settings", "update", ``, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.DecodeSettings("ES", tc.typ, []byte(tc.raw))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			if err := r.ValidateSettings("ES", tc.typ, got); err != nil {
				t.Fatalf("Create would refuse the decoded value: %v", err)
			}
		})
	}
}

// Settings from a UI are hostile input: each bad one is a typed error
// naming the field, never a panic or a silent fix-up.
func TestDecodeSettingsRejectsBadInput(t *testing.T) {
	t.Parallel()
	r := decodeRegistry(t)
	tests := []struct {
		name, app, typ, raw string
		fields              []string
	}{
		{"unregistered type", "ES", "nope", `{}`, []string{"type"}},
		{"unknown field", "ES", "scan", `{"action":"report","max_size":3}`, []string{"settings.max_size"}},
		{"wrong JSON type", "ES", "scan", `{"max_file_mb":"big"}`, []string{"settings.max_file_mb"}},
		{"not an object", "ES", "scan", `[1,2]`, []string{"settings"}},
		{"malformed", "ES", "scan", `{"action":`, []string{"settings"}},
		{"trailing data", "ES", "scan", `{"action":"report"} {}`, []string{"settings"}},
		{"settings for a type without", "ES", "update", `{"a":1}`, []string{"settings"}},
		{"every validate failure at once", "ES", "scan", `{"action":"burn","max_file_mb":0,"paths":["a","b","c","d"]}`,
			[]string{"settings.action", "settings.max_file_mb", "settings.paths"}},
		{"oversized", "ES", "scan", `{"paths":["` + strings.Repeat("x", task.MaxSettingsBytes) + `"]}`, []string{"settings"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := r.DecodeSettings(tc.app, tc.typ, []byte(tc.raw))
			if err == nil {
				t.Fatalf("no error; decoded %#v", v)
			}
			if !errors.Is(err, task.ErrInvalid) {
				t.Fatalf("%v does not match ErrInvalid", err)
			}
			var fields []string
			var ve *task.ValidationError
			var ves task.ValidationErrors
			switch {
			case errors.As(err, &ves):
				for _, e := range ves {
					fields = append(fields, e.Field)
				}
			case errors.As(err, &ve):
				fields = []string{ve.Field}
			}
			if diff := cmp.Diff(tc.fields, fields); diff != "" {
				t.Fatalf("fields of %v (-want +got):\n%s", err, diff)
			}
			if len(err.Error()) > 1000 {
				t.Fatalf("error of %d bytes echoes the input", len(err.Error()))
			}
		})
	}
}

func FuzzDecodeSettings(f *testing.F) {
	f.Add([]byte(`{"action":"report","max_file_mb":5}`))
	f.Add([]byte(`{"paths":[1]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r := decodeRegistry(t)
		v, err := r.DecodeSettings("ES", "scan", raw)
		if err != nil {
			if !errors.Is(err, task.ErrInvalid) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if err := r.ValidateSettings("ES", "scan", v); err != nil {
			t.Fatalf("decoded %#v fails validation: %v", v, err)
		}
	})
}
