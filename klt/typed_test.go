package klt_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/klt"
	"github.com/taskfleet/taskfleet/task"
)

// VendorSettings declares a setting of every Open API value type.
type VendorSettings struct {
	Blob     []byte           `json:"blob"`
	When     time.Time        `json:"when"`
	Day      time.Time        `json:"day" klt:"date"`
	Count    int64            `json:"count"`
	Small    int32            `json:"small"`
	Big      uint64           `json:"big"`
	Forced   int              `json:"forced" klt:"long"`
	Ratio    float64          `json:"ratio"`
	Single   float32          `json:"single"`
	Name     string           `json:"name"`
	On       bool             `json:"on"`
	Nested   VendorNested     `json:"nested"`
	ByName   map[string]int64 `json:"by_name"`
	Times    []time.Time      `json:"times"`
	Optional *int64           `json:"optional"`
}

type VendorNested struct {
	Key   []byte  `json:"key_material"`
	Level float32 `json:"level"`
}

func vendorRegistry(t testing.TB) *task.Registry {
	r := registry(t)
	must(t, r.Register(task.TaskType{Application: appES, ApplicationVersion: "12.1", Name: "vendor", Settings: &VendorSettings{}}))
	return r
}

// Declared settings keep their Open API value types both ways, driven by
// the Go types of the settings struct.
func TestDeclaredSettingsKeepTheirTypes(t *testing.T) {
	t.Parallel()
	reg := vendorRegistry(t)
	seven := int64(7)
	x := fullTask(t, nil)
	x.Type = "vendor"
	x.Settings = &VendorSettings{
		Blob: []byte{0, 1, 2, 0xff}, When: time.Date(2026, 11, 20, 18, 0, 0, 0, time.UTC),
		Day: time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC), Count: 5, Small: -3, Big: 1 << 62, Forced: 1,
		Ratio: 0.5, Single: 1.25, Name: "n", On: true,
		Nested: VendorNested{Key: []byte("k"), Level: 2.5},
		ByName: map[string]int64{"a": 1}, Times: []time.Time{time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)}, Optional: &seven,
	}
	out, _, err := klt.Export(x, lookup(t, reg, x), klt.ExportOptions{Time: exportTime})
	must(t, err)
	add := members(t, out)["TASK_ADDITIONAL_PARAMS"]
	for _, want := range []string{
		`"blob":{"type":"binary","value":"AAEC/w=="}`,
		`"when":{"type":"datetime","value":"2026-11-20T18:00:00Z"}`,
		`"day":{"type":"date","value":"2026-02-28"}`,
		`"count":{"type":"long","value":5}`,
		`"small":-3`,
		`"big":{"type":"long","value":4611686018427387904}`,
		`"forced":{"type":"long","value":1}`,
		`"ratio":{"type":"double","value":0.5}`,
		`"single":{"type":"float","value":1.25}`,
		`"nested":{"type":"params","value":{"key_material":{"type":"binary","value":"aw=="},"level":{"type":"float","value":2.5}}}`,
		`"by_name":{"type":"params","value":{"a":{"type":"long","value":1}}}`,
		`"times":[{"type":"datetime","value":"2026-01-01T00:00:01Z"}]`,
		`"optional":{"type":"long","value":7}`,
	} {
		if !bytes.Contains([]byte(add), []byte(want)) {
			t.Errorf("TASK_ADDITIONAL_PARAMS lacks %s:\n%s", want, add)
		}
	}
	imp, err := klt.Parse(bytes.NewReader(out), reg, klt.ParseOptions{})
	must(t, err)
	if d := cmp.Diff(x.Settings, imp.Task.Settings); d != "" {
		t.Fatalf("settings (-exported +imported):\n%s", d)
	}
}

// A typed value of another type than the declared one is refused at its
// path, and so is a value Export could not write.
func TestDeclaredSettingsTypeRefusals(t *testing.T) {
	t.Parallel()
	reg := vendorRegistry(t)
	x := fullTask(t, nil)
	x.Type = "vendor"
	x.Settings = &VendorSettings{When: time.Date(2026, 11, 20, 18, 0, 0, 0, time.UTC), Day: time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC)}
	out, _, err := klt.Export(x, lookup(t, reg, x), klt.ExportOptions{Time: exportTime})
	must(t, err)
	cases := []struct{ name, old, new, field string }{
		{"datetime for a long", `"count": {
            "type": "long",
            "value": 0
          }`, `"count": {"type": "datetime", "value": "2026-11-20T18:00:00Z"}`, "task.TASK_ADDITIONAL_PARAMS.count"},
		{"string for binary", `"blob": null`, `"blob": "AAEC"`, "task.TASK_ADDITIONAL_PARAMS.blob"},
		{"datetime for a date", `"type": "date",
            "value": "2026-02-28"`, `"type": "datetime",
            "value": "2026-02-28T00:00:00Z"`, "task.TASK_ADDITIONAL_PARAMS.day"},
		{"bad date", `"value": "2026-02-28"`, `"value": "2026-02-30"`, "task.TASK_ADDITIONAL_PARAMS.day"},
		{"double for an integer", `"small": 0`, `"small": {"type": "double", "value": 1.5}`, "task.TASK_ADDITIONAL_PARAMS.small"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !bytes.Contains(out, []byte(c.old)) {
				t.Fatalf("the export lacks %s:\n%s", c.old, out)
			}
			_, err := klt.Parse(bytes.NewReader(bytes.Replace(out, []byte(c.old), []byte(c.new), 1)), reg, klt.ParseOptions{})
			if !errors.Is(err, klt.ErrInvalid) || !slices.Contains(fieldsOf(err), c.field) {
				t.Fatalf("err = %v, want one at %s", err, c.field)
			}
		})
	}
	// Export refuses what it cannot write in the declared type.
	x.Settings = &VendorSettings{When: time.Date(2026, 11, 20, 18, 0, 0, 5, time.UTC)}
	if _, _, err := klt.Export(x, lookup(t, reg, x), klt.ExportOptions{Time: exportTime}); !errors.Is(err, klt.ErrInvalid) || !slices.Contains(fieldsOf(err), "settings.when") {
		t.Fatalf("a datetime with nanoseconds: %v", err)
	}
	x.Settings = &VendorSettings{Big: 1 << 63}
	if _, _, err := klt.Export(x, lookup(t, reg, x), klt.ExportOptions{Time: exportTime}); !errors.Is(err, klt.ErrInvalid) || !slices.Contains(fieldsOf(err), "settings.big") {
		t.Fatalf("a uint64 beyond a signed long: %v", err)
	}
	x.Settings = &VendorSettings{Day: time.Date(2026, 2, 28, 1, 0, 0, 0, time.UTC)}
	if _, _, err := klt.Export(x, lookup(t, reg, x), klt.ExportOptions{Time: exportTime}); !errors.Is(err, klt.ErrInvalid) || !slices.Contains(fieldsOf(err), "settings.day") {
		t.Fatalf("a date that is not midnight: %v", err)
	}
}
