package agent_test

import (
	"time"

	"github.com/benbjohnson/clock"
)

// fuzzClock is a clock.Mock stepped with Set, which fuzzing can afford.
type fuzzClock struct{ *clock.Mock }

func newClock() fuzzClock {
	m := clock.NewMock()
	m.Set(t0)
	return fuzzClock{m}
}

func (c fuzzClock) add(d time.Duration) {
	if d > 0 {
		c.Set(c.Now().Add(d))
	}
}
