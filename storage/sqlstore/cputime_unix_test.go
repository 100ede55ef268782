//go:build unix

package sqlstore_test

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) this process used so far;
// benchmarks report it per item beside wall time, which on a shared
// machine is dominated by other processes' disk and CPU use.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
