package doccheck

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for the PostgreSQL step
)

// fence returns the bodies of the ``` blocks of markdown with the given
// info string.
func fence(markdown, info string) []string {
	var out []string
	lines := strings.Split(markdown, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```"+info {
			continue
		}
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, lines[i])
		}
		out = append(out, strings.Join(body, "\n"))
	}
	return out
}

// docBlocks returns the code blocks (tab-indented paragraphs) of a
// package's doc comment.
func docBlocks(t *testing.T, file string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			out = append(out, strings.Join(cur, "\n"))
			cur = nil
		}
	}
	for _, line := range strings.Split(f.Doc.Text(), "\n") {
		if strings.HasPrefix(line, "\t") {
			cur = append(cur, line[1:])
			continue
		}
		if line == "" && len(cur) > 0 {
			continue
		}
		flush()
	}
	flush()
	return out
}

// programs returns the built Go files: every .go file under examples/ and
// every Example test file of the module.
func programs(t *testing.T) map[string][]string {
	t.Helper()
	files := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != root || d.Name() == "testdata" || d.Name() == "bench") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		if !strings.Contains(filepath.ToSlash(path), "/examples/") && !strings.HasPrefix(d.Name(), "example") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[path] = normalize(string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// normalize trims each line and drops blank ones.
func normalize(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// contains reports whether seg occurs as consecutive lines of file.
func contains(file, seg []string) bool {
	for i := 0; i+len(seg) <= len(file); i++ {
		ok := true
		for j := range seg {
			if file[i+j] != seg[j] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// checkBlock reports whether every part of block (parts are separated by
// lines that are only "..." or "// ...") occurs verbatim, in one piece, in
// one of the built files.
func checkBlock(t *testing.T, where, block string, files map[string][]string) {
	t.Helper()
	var parts [][]string
	var cur []string
	for _, l := range normalize(block) {
		if l == "..." || l == "// ..." {
			parts, cur = append(parts, cur), nil
			continue
		}
		cur = append(cur, l)
	}
	parts = append(parts, cur)
	for _, p := range parts {
		if len(p) == 0 {
			continue
		}
		found := false
		for _, f := range files {
			if contains(f, p) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s: this code is in no program under examples/ and no Example test, so nothing builds it:\n%s", where, strings.Join(p, "\n"))
		}
	}
}

// Every Go block of the README and every code block of the root package
// documentation is (a verbatim excerpt of) a program or Example test that
// `go test ./...` builds and runs.
func TestCodeBlocksAreBuilt(t *testing.T) {
	t.Parallel()
	files := programs(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := fence(string(readme), "go")
	if len(blocks) == 0 {
		t.Fatal("no Go block in README.md")
	}
	for i, b := range blocks {
		checkBlock(t, fmt.Sprintf("README.md Go block %d", i+1), b, files)
	}
	docs := docBlocks(t, filepath.Join(root, "doc.go"))
	if len(docs) == 0 {
		t.Fatal("no code block in doc.go")
	}
	for i, b := range docs {
		if strings.Contains(b, "evaluated in") { // the table of schedule kinds
			continue
		}
		checkBlock(t, fmt.Sprintf("doc.go code block %d", i+1), b, files)
	}
}

// applyDiff applies the hunks of a unified diff without line numbers
// (hunks separated by "@@" lines) to src; each hunk's old lines must
// occur exactly once.
func applyDiff(src, diff string) (string, error) {
	lines := strings.Split(src, "\n")
	for _, hunk := range strings.Split(diff, "\n@@\n") {
		var old, repl []string
		for _, l := range strings.Split(hunk, "\n") {
			if l == "" {
				continue
			}
			switch l[0] {
			case ' ':
				old, repl = append(old, l[1:]), append(repl, l[1:])
			case '-':
				old = append(old, l[1:])
			case '+':
				repl = append(repl, l[1:])
			default:
				return "", fmt.Errorf("diff line %q has no ' ', '-' or '+' prefix", l)
			}
		}
		at, n := -1, 0
		for i := 0; i+len(old) <= len(lines); i++ {
			match := true
			for j := range old {
				if lines[i+j] != old[j] {
					match = false
					break
				}
			}
			if match {
				at, n = i, n+1
			}
		}
		if n != 1 {
			return "", fmt.Errorf("the lines\n%s\noccur %d times, want once", strings.Join(old, "\n"), n)
		}
		lines = append(lines[:at], append(repl, lines[at+len(old):]...)...)
	}
	return strings.Join(lines, "\n"), nil
}

// The README's "from hello world to production" diffs apply, in order, to
// examples/hello/main.go; every step builds; the SQLite step runs and
// prints what the hello world prints, and so does the PostgreSQL step when
// TASKFLEET_TEST_POSTGRES names a server.
func TestReadmeDiffsBuildAndRun(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	diffs := fence(string(readme), "diff")
	if len(diffs) != 3 {
		t.Fatalf("%d diff blocks in the README, want 3 (SQLite, PostgreSQL, real time)", len(diffs))
	}
	mainGo, err := filepath.Abs(filepath.Join(root, "examples", "hello", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(mainGo)
	if err != nil {
		t.Fatal(err)
	}
	const want = "Daily scan: 3 devices, map[completed:3], 100% complete\n"
	cur := string(src)
	dir := t.TempDir()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	for i, d := range diffs {
		cur, err = applyDiff(cur, d)
		if err != nil {
			t.Fatalf("README diff %d does not apply: %v", i+1, err)
		}
		patched := filepath.Join(dir, fmt.Sprintf("main-%d.go", i+1))
		overlay := filepath.Join(dir, fmt.Sprintf("overlay-%d.json", i+1))
		bin := filepath.Join(dir, fmt.Sprintf("hello-%d", i+1))
		if err := os.WriteFile(patched, []byte(cur), 0o600); err != nil {
			t.Fatal(err)
		}
		o, _ := json.Marshal(map[string]any{"Replace": map[string]string{mainGo: patched}})
		if err := os.WriteFile(overlay, o, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(goTool, "build", "-overlay", overlay, "-o", bin, "./examples/hello")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("README diff %d applied to examples/hello does not build: %v\n%s\n---\n%s", i+1, err, out, cur)
		}
		env := os.Environ()
		switch i {
		case 0: // SQLite
		case 1: // PostgreSQL
			dsn := postgresSchema(t)
			if dsn == "" {
				continue
			}
			env = append(env, "DATABASE_URL="+dsn)
		default:
			continue // real time: built, not run
		}
		run := exec.Command(bin)
		run.Dir, run.Env = t.TempDir(), env
		var out bytes.Buffer
		run.Stdout, run.Stderr = &out, &out
		if err := run.Run(); err != nil || out.String() != want {
			t.Errorf("README step %d printed %q (%v), want %q", i+1, out.String(), err, want)
		}
	}
}

// postgresSchema returns a DSN into a fresh schema of the server named by
// TASKFLEET_TEST_POSTGRES, or "" without one.
func postgresSchema(t *testing.T) string {
	t.Helper()
	base := os.Getenv("TASKFLEET_TEST_POSTGRES")
	if base == "" {
		return ""
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema := "tf_readme_" + hex.EncodeToString(rnd[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if db, err := sql.Open("pgx", base); err == nil {
			_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
			_ = db.Close()
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal("TASKFLEET_TEST_POSTGRES must be a postgres:// URL")
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
