//go:build !unix

package schedule_test

import "time"

// processCPU is unavailable here; BenchmarkNext then reports ns/op only.
func processCPU() time.Duration { return 0 }
