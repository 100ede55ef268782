package doccheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// root is the module root, from this package's directory.
const root = "../.."

// libraryDirs returns the directories of the library's packages: not
// examples, internal, the bench module or testdata.
func libraryDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		switch base := d.Name(); {
		case rel == ".":
		case strings.HasPrefix(base, ".") || base == "testdata" || base == "examples" || base == "internal" || base == "bench":
			return filepath.SkipDir
		}
		dirs = append(dirs, path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// undocumented is one exported name without a doc comment.
type undocumented struct{ pkg, name string }

// coverage counts the documented exported identifiers of the package in
// dir: exported funcs and methods, types, constants and variables (a
// comment on their group counts), exported fields of struct types and
// methods of interface types (a trailing line comment counts).
func coverage(t *testing.T, fset *token.FileSet, dir string) (total, documented int, missing []undocumented) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	pkg, _ := filepath.Rel(root, dir)
	count := func(name string, docs ...*ast.CommentGroup) {
		total++
		for _, d := range docs {
			if d != nil && strings.TrimSpace(d.Text()) != "" {
				documented++
				return
			}
		}
		missing = append(missing, undocumented{pkg, name})
	}
	fields := func(owner string, fl *ast.FieldList, iface bool) {
		if fl == nil {
			return
		}
		for _, f := range fl.List {
			for _, n := range f.Names {
				if n.IsExported() {
					count(owner+"."+n.Name, f.Doc, f.Comment)
				}
			}
			if len(f.Names) == 0 && iface {
				continue // an embedded interface is documented where it is declared
			}
		}
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				if d.Recv != nil && !exportedRecv(d.Recv) {
					continue
				}
				count(funcName(d), d.Doc)
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch s := spec.(type) {
					case *ast.TypeSpec:
						if !s.Name.IsExported() {
							continue
						}
						count(s.Name.Name, s.Doc, d.Doc)
						switch tt := s.Type.(type) {
						case *ast.StructType:
							fields(s.Name.Name, tt.Fields, false)
						case *ast.InterfaceType:
							fields(s.Name.Name, tt.Methods, true)
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								count(n.Name, s.Doc, s.Comment, d.Doc)
							}
						}
					}
				}
			}
		}
	}
	return total, documented, missing
}

func exportedRecv(recv *ast.FieldList) bool {
	if len(recv.List) == 0 {
		return false
	}
	t := recv.List[0].Type
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
		case *ast.IndexExpr:
			t = x.X
		case *ast.IndexListExpr:
			t = x.X
		case *ast.Ident:
			return x.IsExported()
		default:
			return false
		}
	}
}

func funcName(d *ast.FuncDecl) string {
	if d.Recv == nil {
		return d.Name.Name
	}
	t := d.Recv.List[0].Type
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
			continue
		case *ast.IndexExpr:
			t = x.X
			continue
		case *ast.IndexListExpr:
			t = x.X
			continue
		case *ast.Ident:
			return x.Name + "." + d.Name.Name
		}
		return d.Name.Name
	}
}

// seedsRe finds the project's old private name for the product
// documentation: the word "seeds" after "the", or before an apostrophe or
// a colon.
var seedsRe = regexp.MustCompile(`(?i)\bthe seeds\b|\bseeds'|\bseeds:`)

// No comment of the module uses the old private name for the product
// documentation: the root package documentation names the manuals once,
// and every other comment says "the product documentation".
func TestNoSeedsInDocs(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bench") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		for _, cg := range f.Comments {
			for _, c := range cg.List {
				if seedsRe.MatchString(c.Text) {
					t.Errorf("%s: %q: say \"the product documentation\"", fset.Position(c.Pos()), c.Text)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
