//go:build race

package klt_test

// raceSlack widens the memory bounds of TestMemoryAndQuoteLimits under the
// race detector, whose instrumentation moves more values to the heap; the
// documented bounds (klt.MaxParseAlloc, klt.MaxParseLive) are for normal
// builds.
const raceSlack = 1.25
