//go:build !race

package klt_test

// raceSlack is 1 in normal builds: the documented bounds hold exactly.
const raceSlack = 1.0
