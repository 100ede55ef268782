//go:build !windows && !plan9

package syslogsink

import (
	"context"
	"fmt"
	"log/syslog"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
)

// Config configures a Sink. The zero value writes to the local syslog
// daemon, facility daemon, tag "taskfleet".
type Config struct {
	// Network and Addr name the syslog server as log/syslog.Dial takes
	// them ("unixgram" and a socket path, "udp" and host:port); both
	// empty: the local syslog daemon.
	Network string
	Addr    string
	// Tag is the program name in each message (default "taskfleet").
	Tag string
	// Facility is the syslog facility (default syslog.LOG_DAEMON; the
	// zero value, LOG_KERN, is not for programs and means the default);
	// only the facility bits are used.
	Facility syslog.Priority
}

// Sink is an engine.ResultSink on log/syslog. It is safe for concurrent
// use.
type Sink struct {
	w *syslog.Writer
}

var _ engine.ResultSink = (*Sink)(nil)

// New connects to the syslog server of cfg.
func New(cfg Config) (*Sink, error) {
	if (cfg.Network == "") != (cfg.Addr == "") {
		return nil, errs.Invalid("Network", cfg.Network, "Network and Addr are given together or not at all")
	}
	if cfg.Tag == "" {
		cfg.Tag = "taskfleet"
	}
	fac := cfg.Facility & 0xf8 // the facility bits
	if fac == 0 {
		fac = syslog.LOG_DAEMON // LOG_KERN is not for programs
	}
	w, err := syslog.Dial(cfg.Network, cfg.Addr, fac|syslog.LOG_INFO, cfg.Tag)
	if err != nil {
		return nil, fmt.Errorf("syslogsink: %w", err)
	}
	return &Sink{w: w}, nil
}

// WriteResult writes one result at the priority of its severity.
func (s *Sink) WriteResult(_ context.Context, e engine.ResultEntry) error {
	line := Format(e)
	var err error
	switch e.Severity {
	case task.SeverityError:
		err = s.w.Err(line)
	case task.SeverityWarning:
		err = s.w.Warning(line)
	default:
		err = s.w.Info(line)
	}
	if err != nil {
		return fmt.Errorf("syslogsink: %w", err)
	}
	return nil
}

// Close closes the connection to the syslog server.
func (s *Sink) Close() error { return s.w.Close() }
