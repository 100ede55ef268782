//go:build race

package engine_test

// raceEnabled: the race detector slows the simulation down several times.
const raceEnabled = true
