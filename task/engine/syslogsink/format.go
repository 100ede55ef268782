package syslogsink

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/taskfleet/taskfleet/task/engine"
)

// MaxMessage is how many bytes of a result's message Format keeps (a
// device may send any length; syslog transports drop long datagrams).
const MaxMessage = 1024

// Format renders a result entry as one line of key=value pairs, each
// text value quoted (see the package documentation).
func Format(e engine.ResultEntry) string {
	msg := e.Message
	if len(msg) > MaxMessage {
		msg = msg[:MaxMessage]
		for !utf8.ValidString(msg) { // do not cut a character in two
			msg = msg[:len(msg)-1]
		}
		msg += "…"
	}
	var b strings.Builder
	b.Grow(160 + len(msg))
	b.WriteString("task=")
	b.WriteString(strconv.Quote(e.TaskID))
	b.WriteString(" name=")
	b.WriteString(strconv.Quote(e.TaskName))
	b.WriteString(" app=")
	b.WriteString(strconv.Quote(e.Application))
	b.WriteString(" type=")
	b.WriteString(strconv.Quote(e.Type))
	b.WriteString(" device=")
	b.WriteString(strconv.Quote(string(e.DeviceID)))
	b.WriteString(" run=")
	b.WriteString(strconv.FormatInt(e.RunID, 10))
	b.WriteString(" state=")
	b.WriteString(strconv.Quote(string(e.State)))
	b.WriteString(" at=")
	b.WriteString(e.At.UTC().Format(time.RFC3339))
	b.WriteString(" message=")
	b.WriteString(strconv.Quote(msg))
	return b.String()
}
