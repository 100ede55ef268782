package schedule

import (
	"math/bits"
	"time"
)

// DefaultStartsPerSecond is the start-rate budget of the automatic
// randomized delay: how many devices may start one task per second, so
// their requests to the Administration Server stay spread out.
const DefaultStartsPerSecond = 10

// MaxAutoWindow caps the automatic randomized delay window. Beyond
// DefaultStartsPerSecond × 3600 = 36,000 devices the start rate exceeds the
// budget rather than delaying some devices by more than an hour.
const MaxAutoWindow = time.Hour

// AutoWindow returns the automatic randomized delay window for a start on
// devices devices:
//
//	window = min(devices / DefaultStartsPerSecond seconds, MaxAutoWindow)
//
// computed exactly in nanoseconds (10 devices → 1 s, 600 → 1 min, 36,000 or
// more → 1 h). It is 0 for devices ≤ 1: a single device needs no spreading.
func AutoWindow(devices int) time.Duration {
	if devices <= 1 {
		return 0
	}
	if int64(devices) >= int64(MaxAutoWindow/time.Second)*DefaultStartsPerSecond {
		return MaxAutoWindow
	}
	return time.Duration(devices) * time.Second / DefaultStartsPerSecond
}

// RandomOffset returns the randomized delay of one device for one start: a
// value in [0, window) (0 when window ≤ 0), derived only from its
// arguments, so it is the same in every process, on every restart and on
// every architecture. The product documentation wants the offset to change when the task's
// settings are edited or the task is started manually: pass the task's
// settings revision, and have the task manager bump it (or pass a counter
// of manual starts mixed into it) on those events.
//
// The hash is 64-bit FNV-1a over the length-prefixed task id, the
// length-prefixed device id and the little-endian revision, finished with
// the SplitMix64 mixer and mapped to the window by a 64×64→128-bit
// multiply. This is part of the stable contract: changing it would move
// every device's start.
func RandomOffset(window time.Duration, taskID, deviceID string, revision int64) time.Duration {
	if window <= 0 {
		return 0
	}
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	byteHash := func(c byte) { h ^= uint64(c); h *= prime64 }
	u64 := func(v uint64) {
		for i := 0; i < 8; i++ {
			byteHash(byte(v >> (8 * i)))
		}
	}
	u64(uint64(len(taskID)))
	for i := 0; i < len(taskID); i++ {
		byteHash(taskID[i])
	}
	u64(uint64(len(deviceID)))
	for i := 0; i < len(deviceID); i++ {
		byteHash(deviceID[i])
	}
	u64(uint64(revision))
	// SplitMix64 finalizer: FNV's low bits are weak; this spreads them.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	hi, _ := bits.Mul64(h, uint64(window))
	return time.Duration(hi)
}
