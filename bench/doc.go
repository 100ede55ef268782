// Package bench compares taskfleet's packages with their peers. It is a
// separate module so the library never depends on the peers; it holds only
// benchmarks and the tests that keep them honest. See README.md.
package bench
