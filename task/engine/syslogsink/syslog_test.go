//go:build !windows && !plan9

package syslogsink_test

import (
	"context"
	"errors"
	"log/syslog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/engine/syslogsink"
)

// A result goes to the syslog server as one datagram at its severity's
// priority, in the facility asked for, with the device's message escaped
// and cut.
func TestSinkWritesResultsToSyslog(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "log.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sink, err := syslogsink.New(syslogsink.Config{Network: "unixgram", Addr: path, Tag: "tf", Facility: syslog.LOG_LOCAL3})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	at := time.Date(2026, 3, 23, 9, 0, 0, 0, time.UTC)
	hostile := "disk full\n<11>Mar 23 09:00:00 host tf: forged" + strings.Repeat("x", 5000)
	for _, c := range []struct {
		e    engine.ResultEntry
		pri  syslog.Priority
		want []string
	}{
		{engine.ResultEntry{TaskID: "t1", TaskName: "Weekly scan", Application: "ES", Type: "scan", DeviceID: "d1", RunID: 42, State: task.Completed, Severity: task.SeverityInfo, At: at},
			syslog.LOG_LOCAL3 | syslog.LOG_INFO, []string{`task="t1"`, `name="Weekly scan"`, `device="d1"`, `run=42`, `state="completed"`, `at=2026-03-23T09:00:00Z`}},
		{engine.ResultEntry{TaskID: "t1", DeviceID: "d2", RunID: 42, State: task.Failed, Severity: task.SeverityError, Message: hostile, At: at},
			syslog.LOG_LOCAL3 | syslog.LOG_ERR, []string{`state="failed"`, `message="disk full\n<11>Mar 23`}},
		{engine.ResultEntry{TaskID: "t1", DeviceID: "d3", RunID: 42, State: task.CompletedWithWarnings, Severity: task.SeverityWarning, At: at},
			syslog.LOG_LOCAL3 | syslog.LOG_WARNING, []string{`state="completed_with_warnings"`}},
	} {
		if err := sink.WriteResult(context.Background(), c.e); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64<<10)
		_ = l.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := l.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got := string(buf[:n])
		pri := "<" + strconv.Itoa(int(c.pri)) + ">"
		if !strings.HasPrefix(got, pri) || !strings.Contains(got, " tf[") {
			t.Errorf("datagram %q: want priority %s and tag tf", got, pri)
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("datagram %q lacks %s", got, w)
			}
		}
		if strings.Count(strings.TrimSuffix(got, "\n"), "\n") != 0 {
			t.Errorf("datagram %q has more than one line", got)
		}
		if len(got) > syslogsink.MaxMessage+400 {
			t.Errorf("datagram of %d bytes: the message is not cut", len(got))
		}
	}
}

func TestNewRejectsHalfAnAddress(t *testing.T) {
	t.Parallel()
	_, err := syslogsink.New(syslogsink.Config{Network: "unixgram"})
	if !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("err %v, want ErrInvalid", err)
	}
}
