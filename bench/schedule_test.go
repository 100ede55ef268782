package bench

// Schedule benchmarks: taskfleet/schedule side by side with robfig/cron/v3,
// go-co-op/gocron/v2 and teambition/rrule-go. Run from this directory:
//
//	go test -run '^$' -bench Schedule -benchmem
//
// Every peer computes the same activations; TestSchedulePeersAgree checks
// that before the numbers mean anything.

import (
	"math/rand/v2"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"
	"github.com/robfig/cron/v3"
	"github.com/teambition/rrule-go"

	"github.com/taskfleet/taskfleet/schedule"
)

var berlin = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		panic(err)
	}
	return loc
}()

// dtstart is where rrule-go's recurrences start; queries fall in the 60
// days after it, because rrule-go iterates from DTSTART on every query.
var dtstart = time.Date(2026, 11, 1, 0, 0, 0, 0, berlin)

// queries are 1024 pseudo-random instants in the 60 days after dtstart
// (crossing no DST change), the `after` of each single Next benchmark.
var queries = func() []time.Time {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]time.Time, 1024)
	for i := range out {
		out[i] = dtstart.Add(time.Duration(r.Int64N(int64(60 * 24 * time.Hour))))
	}
	return out
}()

var sink time.Time

// The four schedules in each library's terms.
type peerCase struct {
	name     string
	ours     schedule.Schedule
	robfig   cron.Schedule // nil: cannot express
	rrule    *rrule.RRule
	rrNote   string
	cronNote string
}

func mustRRule(o rrule.ROption) *rrule.RRule {
	r, err := rrule.NewRRule(o)
	if err != nil {
		panic(err)
	}
	return r
}

func mustCron(spec string) cron.Schedule {
	s, err := cron.ParseStandard(spec)
	if err != nil {
		panic(err)
	}
	return s
}

func peerCases() []peerCase {
	created := dtstart
	daily := schedule.Default(schedule.EveryDays, created, berlin)
	daily.Time = schedule.Clock(18, 0, 0)
	every30 := schedule.Default(schedule.EveryMinutes, created, berlin)
	every30.Every = 30
	every30.Start = dtstart.UTC()
	nth := schedule.Default(schedule.NthWeekday, created, berlin)
	nth.Weeks, nth.Weekdays, nth.Time = schedule.SecondWeek, schedule.NewWeekdays(time.Tuesday), schedule.Clock(19, 0, 0)
	last := schedule.Default(schedule.Monthly, created, berlin)
	last.Day, last.Time = 31, schedule.Clock(18, 0, 0)
	at := func(h int) time.Time { return time.Date(2026, 11, 1, h, 0, 0, 0, berlin) }
	return []peerCase{
		{name: "Daily1800Berlin", ours: daily,
			robfig: mustCron("CRON_TZ=Europe/Berlin 0 18 * * *"),
			rrule:  mustRRule(rrule.ROption{Freq: rrule.DAILY, Dtstart: at(18)})},
		{name: "Every30Min", ours: every30,
			robfig: mustCron("CRON_TZ=Europe/Berlin */30 * * * *"),
			rrule:  mustRRule(rrule.ROption{Freq: rrule.MINUTELY, Interval: 30, Dtstart: at(0)})},
		{name: "SecondTuesday1900", ours: nth,
			cronNote: "cron ORs day-of-month and day-of-week",
			rrule:    mustRRule(rrule.ROption{Freq: rrule.MONTHLY, Byweekday: []rrule.Weekday{rrule.TU.Nth(2)}, Dtstart: at(19)})},
		{name: "LastDayOfMonth1800", ours: last,
			cronNote: "robfig/cron has no L",
			rrule:    mustRRule(rrule.ROption{Freq: rrule.MONTHLY, Bymonthday: []int{-1}, Dtstart: at(18)})},
	}
}

// BenchmarkScheduleNext: one "next activation after t" computation.
// gocron/v2 is absent: it computes next runs only inside a running
// scheduler, from the job's last run, with no `after` argument.
func BenchmarkScheduleNext(b *testing.B) {
	for _, c := range peerCases() {
		b.Run(c.name+"/taskfleet", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink, _ = c.ours.Next(queries[i&1023], berlin)
			}
		})
		if c.robfig != nil {
			b.Run(c.name+"/robfig-cron", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					sink = c.robfig.Next(queries[i&1023])
				}
			})
		}
		b.Run(c.name+"/rrule-go", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sink = c.rrule.After(queries[i&1023], false)
			}
		})
	}
}

const successive = 10_000

// BenchmarkScheduleSuccessive10k: the next 10,000 daily 18:00 Berlin
// activations (27 years, 54 DST changes) from 2026-11-01.
func BenchmarkScheduleSuccessive10k(b *testing.B) {
	c := peerCases()[0]
	b.Run("taskfleet", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			t := dtstart
			for range successive {
				t, _ = c.ours.Next(t, berlin)
			}
			sink = t
		}
	})
	b.Run("taskfleet-Between", func(b *testing.B) {
		b.ReportAllocs()
		end := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
		for b.Loop() {
			n := 0
			for t := range c.ours.Between(dtstart, end, berlin) {
				sink = t
				if n++; n == successive {
					break
				}
			}
		}
	})
	b.Run("robfig-cron", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			t := dtstart
			for range successive {
				t = c.robfig.Next(t)
			}
			sink = t
		}
	})
	b.Run("rrule-go-Iterator", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			next := c.rrule.Iterator()
			for range successive {
				sink, _ = next()
			}
		}
	})
	b.Run("gocron-NextRuns", func(b *testing.B) {
		b.ReportAllocs()
		job, stop := gocronDaily(b)
		defer stop()
		for b.Loop() {
			runs, err := job.NextRuns(successive)
			if err != nil || len(runs) != successive {
				b.Fatal(len(runs), err)
			}
			sink = runs[successive-1]
		}
	})
}

// gocronDaily starts a gocron scheduler on a fake clock at dtstart with a
// daily 18:00 Berlin job; gocron exposes next runs only this way.
func gocronDaily(tb testing.TB) (gocron.Job, func()) {
	s, err := gocron.NewScheduler(gocron.WithLocation(berlin), gocron.WithClock(clockwork.NewFakeClockAt(dtstart)))
	if err != nil {
		tb.Fatal(err)
	}
	j, err := s.NewJob(gocron.DailyJob(1, gocron.NewAtTimes(gocron.NewAtTime(18, 0, 0))), gocron.NewTask(func() {}))
	if err != nil {
		tb.Fatal(err)
	}
	s.Start()
	return j, func() { _ = s.Shutdown() }
}

// TestSchedulePeersAgree checks that every peer computes the same
// activations as taskfleet for the benchmarked schedules, so the benchmarks
// compare equal work.
func TestSchedulePeersAgree(t *testing.T) {
	for _, c := range peerCases() {
		for _, q := range queries[:200] {
			want, ok := c.ours.Next(q, berlin)
			if !ok {
				t.Fatalf("%s: no activation after %v", c.name, q)
			}
			if got := c.rrule.After(q, false); !got.Equal(want) {
				t.Errorf("%s: rrule-go After(%v) = %v, taskfleet %v", c.name, q, got, want)
			}
			if c.robfig != nil {
				if got := c.robfig.Next(q); !got.Equal(want) {
					t.Errorf("%s: robfig Next(%v) = %v, taskfleet %v", c.name, q, got, want)
				}
			}
		}
	}
	c := peerCases()[0]
	job, stop := gocronDaily(t)
	defer stop()
	runs, err := job.NextRuns(successive)
	if err != nil {
		t.Fatal(err)
	}
	next := c.rrule.Iterator()
	tf, rc := dtstart, dtstart
	for i := range successive {
		tf, _ = c.ours.Next(tf, berlin)
		rc = c.robfig.Next(rc)
		rr, _ := next()
		if !rr.Equal(tf) || !runs[i].Equal(tf) || !rc.Equal(tf) {
			t.Fatalf("activation %d: taskfleet %v, rrule-go %v, gocron %v, robfig %v", i, tf, rr, runs[i], rc)
		}
	}
}
