//go:build unix

package scope_test

import (
	"syscall"
	"time"
)

// processCPU returns the user+system CPU time of the test process, so the
// benchmarks can report CPU per operation, which (unlike ns/op) does not
// grow when other processes compete for the machine's cores.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
