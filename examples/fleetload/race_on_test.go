//go:build race

package main

// raceEnabled: the race detector slows every process of the load test
// several times, so TestFleetLoad1000 runs a smaller fleet under it.
const raceEnabled = true
