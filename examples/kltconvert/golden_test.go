package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/klt"
)

var update = flag.Bool("update", false, "rewrite testdata/demo.golden from testdata/demo.klt")

// testdata/demo.klt is a file this example exported (with a fixed export
// time). Parsing it must keep printing testdata/demo.golden: a file written
// by this version stays importable by later ones.
func TestCommittedFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join("testdata", "demo.klt")
	r := runWith(t, "-in", path)
	if r.code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	golden := filepath.Join("testdata", "demo.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(r.stdout), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), r.stdout); diff != "" {
		t.Errorf("-in %s (-want +got):\n%s", path, diff)
	}
}

// A fresh export of the demo task is the committed file, up to the export
// time (klt.Normalize drops it): the export is deterministic, and a change
// of the format shows up here.
func TestExportMatchesCommittedFile(t *testing.T) {
	t.Parallel()
	_, fresh := setup(t)
	got, err := os.ReadFile(fresh)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "demo.klt"))
	if err != nil {
		t.Fatal(err)
	}
	normGot, err := klt.Normalize(got)
	if err != nil {
		t.Fatal(err)
	}
	normWant, err := klt.Normalize(want)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(normWant), string(normGot)); diff != "" {
		t.Errorf("fresh export differs from testdata/demo.klt (-want +got):\n%s", diff)
	}
}

// FuzzParseOnly feeds arbitrary files to -in: the program never panics and
// either prints an import (exit 0) or refuses the file on stderr (exit 2);
// it never prints a refused file's content as an import. The committed
// corpus is in testdata/fuzz/FuzzParseOnly.
func FuzzParseOnly(f *testing.F) {
	demo, err := os.ReadFile(filepath.Join("testdata", "demo.klt"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(demo)
	f.Add([]byte(strings.Replace(string(demo), `"TASKSCH_TYPE": 6`, `"TASKSCH_TYPE": 2`, 1)))
	f.Add([]byte(`{"PxgRetVal":{"TASK_NAME":"virus_scan","TASKID_PRODUCT_NAME":"Endpoint Security","TASK_INFO_PARAMS":{"type":"params","value":{"DisplayName":"From the server","PRTS_TASK_GROUPID":42}}}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "in.klt")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r := runWith(t, "-in", path)
		switch r.code {
		case exitOK:
			if !strings.HasPrefix(r.stdout, "Would import from ") || r.stderr != "" {
				t.Errorf("exit 0 with stdout %q, stderr %q", r.stdout, r.stderr)
			}
		case exitUsage:
			if r.stdout != "" || !strings.HasPrefix(r.stderr, "kltconvert: ") {
				t.Errorf("exit 2 with stdout %q, stderr %q", r.stdout, r.stderr)
			}
		default:
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}
