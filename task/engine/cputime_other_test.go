//go:build !linux

package engine_test

import "time"

// threadCPU is not available here: the benchmark falls back to wall time.
func threadCPU() (time.Duration, bool) { return 0, false }

// processCPU is not available here: the benchmark reports wall time only.
func processCPU() (time.Duration, bool) { return 0, false }
