// Package syslogsink writes the engine's final task results to the
// operating system's log on Unix hosts, through the standard library's
// log/syslog: an engine.ResultSink for the product documentation's
// "execution results of tasks are saved in the operating system event log
// on the Administration Server". It is off unless a host sets it as
// engine.Config.ResultSink:
//
//	sink, err := syslogsink.New(syslogsink.Config{Tag: "taskfleet"}) // the local syslog daemon
//	if err != nil { ... }
//	defer sink.Close()
//	srv, _ := engine.New(engine.Config{Store: store, Inventory: inv, ResultSink: sink})
//
// # Messages
//
// Each result is one message at the priority of its severity (error:
// LOG_ERR, warning: LOG_WARNING, otherwise LOG_INFO) in Config.Facility
// (default LOG_DAEMON), formatted by Format as key=value pairs:
//
//	task="t1" name="Weekly scan" app="Endpoint Security" type="virus_scan" device="d00001" run=7097025600000 state=completed at=2026-03-23T09:00:00Z message="..."
//
// Every text value is quoted with strconv.Quote, so a device's message
// cannot forge a line (newlines and control characters are escaped), and
// the message is cut to MaxMessage bytes. No secret is written (entries
// carry none).
//
// # Windows
//
// log/syslog does not exist on Windows (nor Plan 9): there New is not
// available and the package holds only Format. engine.ResultSink
// documents the shape of a Windows Event Log sink.
package syslogsink
