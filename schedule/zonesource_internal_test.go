package schedule

import (
	"archive/zip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// ZoneSource is a zone database the tests load locations from, so that a
// plain `go test` checks the package against each source whatever the
// process's default (ZONEINFO, system files or the embedded time/tzdata).
// It is exported to the schedule_test package by this _test file only.
type ZoneSource struct {
	// Name says which database: "system" or "go-zip".
	Name string
	// Load returns the named zone from this source.
	Load func(name string) (*time.Location, error)
}

// systemZoneDirs are where the time package looks for the system's zone
// files on Unix systems.
var systemZoneDirs = []string{"/usr/share/zoneinfo/", "/usr/share/lib/zoneinfo/", "/usr/lib/locale/TZ/", "/etc/zoneinfo/"}

// ZoneSourcesForTest returns the system zone database (the files the time
// package reads on Unix) and Go's own zone data (the zoneinfo.zip in
// GOROOT, which is what a Go program uses on Windows and what time/tzdata
// embeds). On a machine without system zone files the first source falls
// back to time.LoadLocation and says so in its name.
func ZoneSourcesForTest(tb testing.TB) []ZoneSource {
	tb.Helper()
	zipPath := goZoneZip(tb)
	return []ZoneSource{systemSource(), goZipSource(zipPath)}
}

func systemSource() ZoneSource {
	var dir string
	for _, d := range systemZoneDirs {
		if _, err := os.Stat(filepath.Join(d, "UTC")); err == nil {
			dir = d
			break
		}
	}
	if dir == "" {
		return ZoneSource{
			Name: "system-unavailable-using-default",
			Load: time.LoadLocation,
		}
	}
	return ZoneSource{
		Name: "system",
		Load: func(name string) (*time.Location, error) {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				return nil, err
			}
			return time.LoadLocationFromTZData(name, b)
		},
	}
}

var goZip struct {
	once  sync.Once
	files map[string][]byte
	err   error
}

func readGoZip(path string) (map[string][]byte, error) {
	goZip.once.Do(func() {
		r, err := zip.OpenReader(path)
		if err != nil {
			goZip.err = err
			return
		}
		defer r.Close()
		goZip.files = make(map[string][]byte, len(r.File))
		for _, f := range r.File {
			rc, err := f.Open()
			if err != nil {
				goZip.err = err
				return
			}
			b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
			rc.Close()
			if err != nil {
				goZip.err = err
				return
			}
			goZip.files[f.Name] = b
		}
	})
	return goZip.files, goZip.err
}

func goZipSource(path string) ZoneSource {
	return ZoneSource{
		Name: "go-zip",
		Load: func(name string) (*time.Location, error) {
			files, err := readGoZip(path)
			if err != nil {
				return nil, err
			}
			b, ok := files[name]
			if !ok {
				return nil, os.ErrNotExist
			}
			return time.LoadLocationFromTZData(name, b)
		},
	}
}

// GoZoneNames lists every zone of Go's zone data, sorted.
func GoZoneNames(tb testing.TB) []string {
	tb.Helper()
	files, err := readGoZip(goZoneZip(tb))
	if err != nil {
		tb.Fatal(err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// goZoneZip finds $(go env GOROOT)/lib/time/zoneinfo.zip.
func goZoneZip(tb testing.TB) string {
	tb.Helper()
	var roots []string
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		roots = append(roots, strings.TrimSpace(string(out)))
	}
	roots = append(roots, os.Getenv("GOROOT"), runtime.GOROOT())
	for _, r := range roots {
		if r == "" {
			continue
		}
		p := filepath.Join(r, "lib", "time", "zoneinfo.zip")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	tb.Fatalf("no lib/time/zoneinfo.zip under GOROOT (tried %q)", roots)
	return ""
}
