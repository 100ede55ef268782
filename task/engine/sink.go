package engine

import (
	"context"
	"time"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
)

// ResultSink receives the final result of every device run the server
// records: the product documentation's "execution results of tasks are
// saved in the operating system event log on the Administration Server".
// Set Config.ResultSink to turn it on (nil, the default, writes nowhere).
//
// Package task/engine/syslogsink implements it on the standard library's
// log/syslog for Unix hosts (a subpackage, so the engine does not link
// log/syslog unless a host uses it). A Windows host implements it on the
// Windows Event Log (golang.org/x/sys/windows/svc/eventlog): register an
// event source (e.g. "taskfleet") once at install, and write each entry
// with the severity's call (SeverityError: Error, SeverityWarning:
// Warning, else Info) and an event id per state (the index of the state
// in task.States plus 1000, say), the text formatted as
// syslogsink.Format does.
//
// WriteResult is called from Tick and Handle with the server's lock held,
// once per result as the server records it: it must return quickly (hand
// slow work to a goroutine). An error is logged and does not fail the
// recording. A result a device resends (its acknowledgement was lost) is
// written once: the server remembers the last sinkMemory results it
// wrote.
type ResultSink interface {
	WriteResult(ctx context.Context, e ResultEntry) error
}

// ResultEntry is one final result of a device's run, for the server's
// OS event log. It carries no secret: no account, password or task
// settings.
type ResultEntry struct {
	// TaskID, TaskName, Application and Type name the task.
	TaskID      string
	TaskName    string
	Application string
	Type        string
	// DeviceID is the device that ran (or missed) the run; RunID the run.
	DeviceID scope.DeviceID
	RunID    int64
	// State is the final state; Severity its severity (task.EventOf).
	State    task.State
	Severity task.Severity
	// Message is the device's or the server's message (device input:
	// a sink must escape it).
	Message string
	// At is when the run ended (UTC).
	At time.Time
}

// sinkMemory bounds the results remembered to write each once.
const sinkMemory = 4096

type sinkKey struct {
	task   string
	device scope.DeviceID
	run    int64
	seq    int64
}

// sinkResults writes the final results among rs to the ResultSink, each
// (task, device, run, seq) once within the last sinkMemory.
func (s *Server) sinkResults(ctx context.Context, rs []task.Result) {
	if s.cfg.ResultSink == nil {
		return
	}
	for _, r := range rs {
		if !r.State.Final() {
			continue
		}
		k := sinkKey{r.TaskID, r.DeviceID, r.RunID, r.Seq}
		if s.sunk[k] {
			continue
		}
		if s.sunk == nil {
			s.sunk = make(map[sinkKey]bool, sinkMemory)
		}
		if len(s.sunkRing) == sinkMemory {
			delete(s.sunk, s.sunkRing[s.sunkNext])
			s.sunkRing[s.sunkNext] = k
			s.sunkNext = (s.sunkNext + 1) % sinkMemory
		} else {
			s.sunkRing = append(s.sunkRing, k)
		}
		s.sunk[k] = true
		e := ResultEntry{TaskID: r.TaskID, DeviceID: r.DeviceID, RunID: r.RunID, State: r.State, Message: r.Message, At: r.FinishedAt.UTC()}
		if e.At.IsZero() {
			e.At = r.UpdatedAt.UTC()
		}
		_, e.Severity = task.EventOf(r.State)
		if ts := s.tasks[r.TaskID]; ts != nil {
			e.TaskName, e.Application, e.Type = ts.t.Name, ts.t.Application, ts.t.Type
		}
		if err := s.cfg.ResultSink.WriteResult(ctx, e); err != nil {
			s.log.Error().Err(err).Str("task", r.TaskID).Str("device", string(r.DeviceID)).Msg("engine: result sink write failed")
		}
	}
}
