//go:build !linux

package engine_test

import "time"

// threadCPU is not available here: the benchmark falls back to wall time.
func threadCPU() (time.Duration, bool) { return 0, false }
