package syslogsink_test

import (
	"fmt"
	"time"

	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/engine/syslogsink"
)

// Format renders one result as a syslog line: a device's message cannot
// break it into two.
func ExampleFormat() {
	fmt.Println(syslogsink.Format(engine.ResultEntry{
		TaskID: "t1", TaskName: "Weekly scan", Application: "ES", Type: "virus_scan", DeviceID: "d00001", RunID: 42,
		State: task.Failed, Severity: task.SeverityError, Message: "disk full\nretry later", At: time.Date(2026, 3, 23, 9, 0, 0, 0, time.UTC),
	}))
	// Output:
	// task="t1" name="Weekly scan" app="ES" type="virus_scan" device="d00001" run=42 state="failed" at=2026-03-23T09:00:00Z message="disk full\nretry later"
}
