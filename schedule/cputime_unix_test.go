//go:build unix

package schedule_test

import (
	"syscall"
	"time"
)

// processCPU returns the user+system CPU time of the test process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
