package doccheck

import (
	"fmt"
	"go/token"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestDocCoverage fails when less than MinCoverage of what a host touches
// is documented, and prints the figure per package and in all.
func TestDocCoverage(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	var total, documented int
	var missing []undocumented
	var lines []string
	for _, dir := range libraryDirs(t) {
		n, d, m := coverage(t, fset, dir)
		if n == 0 {
			continue
		}
		total, documented = total+n, documented+d
		missing = append(missing, m...)
		rel, _ := filepath.Rel(root, dir)
		lines = append(lines, fmt.Sprintf("  %-32s %5.1f%% of %d", rel, 100*float64(d)/float64(n), n))
	}
	sort.Strings(lines)
	share := float64(documented) / float64(total)
	t.Logf("doc comments on exported identifiers, struct fields and interface methods: %d of %d (%.1f%%)\n%s",
		documented, total, 100*share, strings.Join(lines, "\n"))
	if share < MinCoverage {
		var names []string
		for _, m := range missing {
			names = append(names, m.pkg+": "+m.name)
		}
		t.Errorf("%.1f%% documented, want at least %.0f%%; undocumented:\n%s", 100*share, 100*MinCoverage, strings.Join(names, "\n"))
	}
}
