// Package doccheck holds the documentation checks CI runs with the tests:
// every code block of README.md and of the root package documentation is
// part of a program or Example test that `go test ./...` builds (and the
// README's "from hello world to production" diffs apply to examples/hello
// and build), no doc comment uses the word "seeds" for the product
// documentation, and at least MinCoverage of the exported identifiers,
// struct fields and interface methods of the library's packages carry a
// doc comment (the figure is printed by `go test -v ./internal/doccheck`).
package doccheck

// MinCoverage is the share of exported identifiers, exported struct
// fields and interface methods that must have a doc comment.
const MinCoverage = 0.90
