package schedule_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
)

var sinkTime time.Time

// BenchmarkNext: one Next per iteration, for 1024 instants in the 60 days
// after 2026-11-01 in Europe/Berlin (a DST zone). Besides ns/op it reports
// cpu-ns/op, the process CPU time per call, which other processes
// competing for the cores inflate much less than wall time:
//
//	go test -run '^$' -bench BenchmarkNext -benchtime 200ms ./schedule/
func BenchmarkNext(b *testing.B) {
	berlin := mustLoad(b, "Europe/Berlin")
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, berlin)
	r := rand.New(rand.NewPCG(1, 2))
	queries := make([]time.Time, 1024)
	for i := range queries {
		queries[i] = start.Add(time.Duration(r.Int64N(int64(60 * 24 * time.Hour))))
	}
	daily := schedule.Default(schedule.EveryDays, start, berlin)
	daily.Time = schedule.Clock(18, 0, 0)
	nth := schedule.Default(schedule.NthWeekday, start, berlin)
	nth.Weeks, nth.Weekdays, nth.Time = schedule.SecondWeek, schedule.NewWeekdays(time.Tuesday), schedule.Clock(19, 0, 0)
	last := schedule.Default(schedule.Monthly, start, berlin)
	last.Day, last.Time = 31, schedule.Clock(18, 0, 0)
	every := schedule.Default(schedule.EveryMinutes, start, berlin)
	every.Every, every.Start = 30, start.UTC()
	for _, c := range []struct {
		name string
		s    schedule.Schedule
	}{{"DailyBerlin", daily}, {"SecondTuesdayBerlin", nth}, {"LastDayOfMonthBerlin", last}, {"Every30Min", every}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			for i := 0; b.Loop(); i++ {
				sinkTime, _ = c.s.Next(queries[i&1023], berlin)
			}
			if used := processCPU() - cpu; used > 0 {
				b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
			}
		})
	}
}
