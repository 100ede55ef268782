package restart_test

import (
	"context"
	"fmt"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/restart"
)

// printDevice is a Device that prints what the agent would do.
type printDevice struct{ clock clock.Clock }

func (d printDevice) ShowPrompt(_ context.Context, msg string) error {
	fmt.Println(d.clock.Now().Format("15:04"), "prompt:", msg)
	return nil
}
func (d printDevice) SessionLocked(context.Context) (bool, error) { return false, nil }
func (d printDevice) CloseApplications(context.Context) error     { return nil }
func (d printDevice) Restart(context.Context) error {
	fmt.Println(d.clock.Now().Format("15:04"), "restart")
	return nil
}

// The default policy with a mock clock: prompts every 5 minutes, then a
// forced restart after 30 minutes. The test advances the clock to each
// wake-up the runner asks for.
func ExampleRunner_Run() {
	mock := clock.NewMock()
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	mock.Set(start)

	p := restart.Default()
	p.Message = "Updates need a restart."
	p.RepeatPrompt.Minutes = 10

	waiting := make(chan time.Time)
	r, err := restart.NewRunner(restart.Config{
		Policy:  p,
		Device:  printDevice{clock: mock},
		Clock:   mock,
		Waiting: func(next time.Time) { waiting <- next },
	})
	if err != nil {
		panic(err)
	}
	done := make(chan restart.Outcome)
	go func() {
		out, _ := r.Run(context.Background(), start)
		done <- out
	}()
	for {
		select {
		case next := <-waiting:
			mock.Add(next.Sub(mock.Now()))
			continue
		case out := <-done:
			fmt.Println(out.Result, out.Reason, len(out.Prompts), "prompts")
		}
		break
	}
	// Output:
	// 09:00 prompt: Updates need a restart.
	// 09:10 prompt: Updates need a restart.
	// 09:20 prompt: Updates need a restart.
	// 09:30 restart
	// restarted restart_after_elapsed 3 prompts
}

// Plan previews a policy's timeline without running it.
func ExamplePlan() {
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	tl, err := restart.Plan(restart.Default(), start, start.Add(time.Hour))
	if err != nil {
		panic(err)
	}
	for _, p := range tl.Prompts {
		fmt.Println("prompt", p.Format("15:04"))
	}
	fmt.Println("restart", tl.RestartAt.Format("15:04"))
	// Output:
	// prompt 09:00
	// prompt 09:05
	// prompt 09:10
	// prompt 09:15
	// prompt 09:20
	// prompt 09:25
	// restart 09:30
}

// Decoding is strict: omitted fields keep the product documentation's defaults, and an
// out-of-range value is an error naming the field.
func ExamplePolicy_UnmarshalJSON() {
	var p restart.Policy
	err := p.UnmarshalJSON([]byte(`{"restart_after":{"minutes":60}}`))
	fmt.Println(p, err)
	err = p.UnmarshalJSON([]byte(`{"repeat_prompt":{"minutes":0}}`))
	fmt.Println(err)
	// Output:
	// prompt (repeat every 5 min, restart after 60 min, keep locked sessions) <nil>
	// invalid repeat_prompt.minutes "0": must be between 1 and 1440
}
