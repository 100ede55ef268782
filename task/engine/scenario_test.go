package engine_test

import (
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

// "Tasks whose scope is specified by using other methods are run on the
// local time of a device" — in 12 zones at once, across the European and
// North American DST transitions.
func TestGroupTaskRunsOnDeviceLocalTimeIn12ZonesAcrossDST(t *testing.T) {
	t.Parallel()
	b := setup(t, 24, nil)
	s := sched(schedule.Weekly, func(s *schedule.Schedule) {
		s.Weekdays = schedule.AllWeekdays
		s.Time = schedule.Clock(2, 30, 0) // inside the spring-forward gap in Berlin
	})
	tk := b.create(t, task.Task{Scope: groupScope("g-all"), Schedule: s})
	from := b.sim.Clock.Now()
	b.step(t, 14*24*time.Hour)
	to := b.sim.Clock.Now()
	for i := range 24 {
		d := scope.DeviceID(fmtID(i))
		l := loc(t, zones[i%len(zones)])
		runs := b.sim.Exec.Runs(tk.ID, d)
		want := expect(s, from, to, l)
		if len(runs) != want {
			t.Errorf("%s (%s): %d runs, want %d", d, l, len(runs), want)
		}
		for _, r := range runs {
			lt := r.At.In(l)
			if (lt.Hour() != 2 || lt.Minute() != 30) && (lt.Hour() != 3 || lt.Minute() != 0) || r.StartedAt.Sub(r.At) >= 10*time.Minute {
				t.Errorf("%s: run at %s local, want 02:30 (03:00 on the spring-forward day)", d, lt)
			}
		}
		if got := b.result(t, tk.ID, d).State; got != task.Completed {
			t.Errorf("%s: state %s, want completed", d, got)
		}
	}
}

func fmtID(i int) string { return "d" + pad5(i) }

func pad5(i int) string {
	s := []byte("00000")
	for p := 4; p >= 0 && i > 0; p-- {
		s[p] = byte('0' + i%10)
		i /= 10
	}
	return string(s)
}
