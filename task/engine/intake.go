package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

// The intake is the one way device messages take through the server:
// decode (the transport) → check every item against the authenticated
// sender and what the server knows → record → acknowledge. Nothing a
// device sends is stored or acted on before its item passed the checks;
// an item that fails them is dropped, counted (Stats.Rejected) and logged
// with the device and the reason, and the other items of the message are
// recorded and acknowledged.

// Windows of the run-id check (see the package documentation, "Device
// input").
const (
	// DeviceRunWindow is how far back from the server's clock the
	// activation of a run a device started on its own schedule may lie.
	DeviceRunWindow = 31 * 24 * time.Hour
	// MaxClockSkew is how far ahead of the server's clock the
	// activations of a device's own runs may lie.
	MaxClockSkew = time.Hour
	// MaxDeviceTimeAhead is how far ahead of the server's clock the
	// times a device reports (a result's due, start, finish and update
	// times, an event's time) may lie. They are data only (the server
	// orders runs by run id and Seq, and dates triggers by its own
	// clock), so the bound is wide: a device whose clock is ahead, or a
	// server whose clock was set back, loses no result; a time further
	// ahead (9999-12-31) is rejected.
	MaxDeviceTimeAhead = 7 * 24 * time.Hour
	// MaxUnknownWithdraws bounds the Withdraw answers one heartbeat gets
	// for held task ids the server does not know (deleted tasks).
	MaxUnknownWithdraws = 64
	// maxOutbreakKeys bounds the remembered outbreak report keys.
	maxOutbreakKeys = 4096
)

// RejectReason says why the server dropped an item of a device message.
type RejectReason string

// Reject reasons, the keys of Stats.RejectedBy.
const (
	// RejectOtherDevice: the item names a device other than the sender.
	RejectOtherDevice RejectReason = "other_device"
	// RejectUnknownTask: no such task.
	RejectUnknownTask RejectReason = "unknown_task"
	// RejectNotAssigned: the task is not the sender's (not in its scope,
	// not held, and no run of it issued to the sender).
	RejectNotAssigned RejectReason = "not_assigned"
	// RejectNotOwner: a local edit of a task that is not the sender's
	// own local task.
	RejectNotOwner RejectReason = "not_owner"
	// RejectState: a state a device never reports (scheduled) or no
	// state at all.
	RejectState RejectReason = "state"
	// RejectRun: a run id the server did not issue to the sender and the
	// sender's own schedule does not produce within the windows.
	RejectRun RejectReason = "run"
	// RejectSeq: Seq outside SeqDevice..transport.MaxSeq.
	RejectSeq RejectReason = "seq"
	// RejectTooLong: a text over its limit (transport.MaxText,
	// MaxKeyBytes, MaxUserBytes, MaxEditBytes).
	RejectTooLong RejectReason = "too_long"
	// RejectTooMany: items beyond transport.MaxItems or MaxHeld, or
	// withdraw answers beyond MaxUnknownWithdraws.
	RejectTooMany RejectReason = "too_many"
	// RejectInvalid: a malformed item (progress, level, severity, a time
	// ahead of MaxClockSkew, an application type, an undecodable edit).
	RejectInvalid RejectReason = "invalid"
	// RejectUnknownDevice: an outbreak report from a device the
	// inventory does not know.
	RejectUnknownDevice RejectReason = "unknown_device"
	// RejectMessage: a whole message of an unknown kind or an
	// unsupported protocol version (answered with transport.Error).
	RejectMessage RejectReason = "message"
)

// deviceStates are the states a device may report: all but scheduled,
// which only the server sets. A device reports pending for a start that
// waits for its application to run ("run missed tasks"); like every
// state, it is taken only for a run issued to the sender or produced by
// its own schedule, so it cannot start anything.
var deviceStates = map[string]task.State{}

func init() {
	for _, st := range task.States {
		if st != task.Scheduled {
			deviceStates[string(st)] = st
		}
	}
}

// intake is the state of the device-message path.
type intake struct {
	// off turns the item checks off (a benchmark measures their cost).
	off bool
	// outbreaks remembers report keys, so a resent report starts nothing.
	outbreaks map[string]bool
	// results are the checked results waiting for flushResults, acks the
	// keys to acknowledge once they are stored (per message, in order).
	results []task.Result
	acks    []pendingAck
	// flushBuf and ackBuf are writeBatch's reusable buffers.
	flushBuf []task.Result
	ackBuf   []pendingAck
	// writing: a batch is being written with the server's lock released
	// (writeBatch); written is signalled on s.mu when it ends.
	writing bool
	written *sync.Cond
	// holdLock writes with the lock held, as before group commit (the
	// benchmark compares both; a server never sets it).
	holdLock bool
}

// pendingAck is one message's keys and the range of its results in
// intake.results.
type pendingAck struct {
	device   scope.DeviceID
	key      string
	merged   []string
	from, to int
}

// reject counts and logs dropped items.
func (s *Server) reject(d scope.DeviceID, why RejectReason, n int, taskID, detail string) {
	if n <= 0 {
		return
	}
	s.stats.Rejected += int64(n)
	if s.stats.RejectedBy == nil {
		s.stats.RejectedBy = map[RejectReason]int64{}
	}
	s.stats.RejectedBy[why] += int64(n)
	s.met.rejected.Add(context.Background(), int64(n), s.met.reason(why)...)
	s.log.Warn().Str("device", clipLog(string(d))).Str("reason", string(why)).Int("items", n).Str("task", clipLog(taskID)).Str("detail", detail).Msg("engine: device items rejected")
}

// clipLog keeps a device-chosen string short in a log line.
func clipLog(s string) string { return transport.Clip(s, 128) }

// Handle implements transport.Handler for messages from devices: the
// intake. m.Device is the sender the transport authenticated.
func (s *Server) Handle(ctx context.Context, m transport.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.opened || s.closed {
		return // before Open or after Close: the device resends it
	}
	s.receive(ctx, m, s.clk.Now())
}

func (s *Server) receive(ctx context.Context, m transport.Message, now time.Time) {
	d := m.Device
	if d == "" {
		s.reject(d, RejectMessage, 1, "", "a message without a sender")
		return
	}
	if m.Version != 0 && m.Version < transport.MinProtocolVersion {
		s.refuse(ctx, m, transport.ErrVersion, fmt.Sprintf("protocol version %d is older than %d", m.Version, transport.MinProtocolVersion))
		return
	}
	if len(m.Key) > transport.MaxKeyBytes || len(m.Merged) > transport.MaxItems {
		s.reject(d, RejectTooLong, 1, "", "message key or merged keys over their limit")
		return
	}
	ack := true
	switch m.Kind {
	case transport.Heartbeat:
		s.heartbeat(ctx, m, now)
		return
	case transport.Ack:
		acks := m.Acks
		if len(acks) > transport.MaxItems {
			s.reject(d, RejectTooMany, len(acks)-transport.MaxItems, "", "acknowledged keys")
			acks = acks[:transport.MaxItems]
		}
		s.acked(d, acks)
		return
	case transport.Results:
		s.takeResults(ctx, m, now)
		return
	case transport.Events:
		ack = s.takeEvents(ctx, m, now)
	case transport.UpdatesDownloaded:
		if !s.knownDevice(ctx, d) {
			s.reject(d, RejectUnknownDevice, 1, "", "updates downloaded")
			break
		}
		s.updatesDownloaded(ctx, m.Key, now)
	case transport.VirusOutbreak:
		s.takeOutbreak(ctx, m, now)
	case transport.LocalEdit:
		ack = s.takeEdit(ctx, m)
	case transport.Error:
		if e := m.Error; e != nil {
			s.log.Error().Str("device", string(d)).Str("code", clipLog(e.Code)).Str("kind", clipLog(string(e.Kind))).Msg("engine: a device refused a message")
		}
		return
	default:
		s.refuse(ctx, m, transport.ErrUnknownKind, fmt.Sprintf("the server does not take %q messages from devices", clipLog(string(m.Kind))))
		return
	}
	if ack && m.Key != "" {
		_ = s.send(ctx, transport.Message{Kind: transport.Ack, Device: d, Acks: []string{m.Key}})
	}
}

// refuse answers a message the server cannot process at all.
func (s *Server) refuse(ctx context.Context, m transport.Message, code, why string) {
	s.reject(m.Device, RejectMessage, 1, "", why)
	_ = s.send(ctx, transport.Message{Kind: transport.Error, Device: m.Device,
		Error: &transport.ErrorInfo{Code: code, Kind: transport.Kind(clipLog(string(m.Kind))), Key: m.Key, Message: why}})
}

// assigned reports whether device d may report about task ts: it is in
// the task's scope (a device task it holds, or a server-run task's
// device). A device that left the scope may still report the runs issued
// to it (checked by the run id against its stored result).
func assigned(ts *taskState, d scope.DeviceID) bool { return ts.has(d) }

// window is the span of activation times, in Unix milliseconds, in
// which a device's own runs may lie: DeviceRunWindow before and
// MaxClockSkew after the server's clock.
type window struct{ lo, hi int64 }

func windowAt(now time.Time) window {
	return window{now.Add(-DeviceRunWindow).UnixMilli(), now.Add(MaxClockSkew).UnixMilli()}
}

// ownRun reports whether run is one a device's own schedule of ts
// produces: a scheduled (or, for "when new updates are downloaded", a
// triggered) run id of a task the device runs itself, whose activation
// lies within w, or the task's Once or Immediately activation; for a
// server-run "when new updates are downloaded" task, the scheduled run
// ids of the device's hourly fallback within w.
func ownRun(ts *taskState, run int64, w window) bool {
	if run <= 0 {
		return false
	}
	sch := &ts.t.Schedule
	if ts.onServer {
		// A device-selection "when new updates are downloaded" task is
		// the server's, but a device in its scope whose distribution
		// point is unreachable runs it every hour on its own (a
		// scheduled run id within w).
		ms := run / 4
		return sch.Kind == schedule.OnUpdates && transport.RunKind(run%4) == transport.Scheduled && ms >= w.lo && ms <= w.hi
	}
	switch transport.RunKind(run % 4) {
	case transport.Scheduled:
		if !sch.Timed() && sch.Kind != schedule.OnUpdates {
			return false
		}
	case transport.Triggered:
		if sch.Kind != schedule.OnUpdates {
			return false
		}
	default:
		return false
	}
	ms := run / 4
	if ms >= w.lo && ms <= w.hi {
		return true
	}
	switch sch.Kind {
	case schedule.Once:
		return run == transport.RunID(sch.At, transport.Scheduled)
	case schedule.Immediately:
		return !ts.since.IsZero() && ms <= ts.since.UnixMilli()+1 && ms >= ts.since.UnixMilli()-1
	}
	return false
}

// runCheck says how a device's run id relates to what the server knows.
type runCheck int

const (
	runBad   runCheck = iota // not the device's run
	runOK                    // issued to it, or its own schedule's
	runStale                 // older than its stored run: storage ignores it
	runRetry                 // the store could not answer: neither reject nor acknowledge
)

// checkRun decides whether run of ts is one the server issued to d or d's
// own schedule produces (see ownRun). The stored result is read only
// when the cheaper checks do not decide.
func (s *Server) checkRun(ctx context.Context, ts *taskState, d scope.DeviceID, run int64, in bool, w window) runCheck {
	if run <= 0 {
		return runBad
	}
	if in {
		if ownRun(ts, run, w) {
			return runOK
		}
		if dp := s.disp.pending[dkey{ts.t.ID, d}]; dp != nil && dp.start.RunID == run {
			return runOK
		}
		if ts.manual != nil && ts.manual.RunID == run {
			return runOK
		}
	}
	// The device's request may be gone (it timed out while the server
	// was busy): the check does not depend on it.
	rec, err := s.cfg.Store.GetResult(context.WithoutCancel(ctx), ts.t.ID, string(d))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return runBad
	case err != nil:
		// Not knowing is no reason to drop a device's report: the
		// message is left unacknowledged, so the device resends it.
		s.log.Warn().Err(err).Str("device", string(d)).Str("task", ts.t.ID).Msg("engine: a device's run could not be checked; the device will resend")
		return runRetry
	case rec.RunID == run:
		return runOK
	case run < rec.RunID && in:
		return runStale
	}
	return runBad
}

// saneTime reports whether a device's time is zero or between the Unix
// epoch and MaxDeviceTimeAhead after now.
func saneTime(t, now time.Time) bool {
	return t.IsZero() || (t.Unix() >= 0 && !t.After(now.Add(MaxDeviceTimeAhead)))
}

// checker checks the items of one message of sender d; it keeps the
// task of the previous item (a device's results come grouped by task).
type checker struct {
	s    *Server
	d    scope.DeviceID
	now  time.Time
	w    window
	id   string
	ts   *taskState
	in   bool
	seen bool
}

func (s *Server) checker(d scope.DeviceID, now time.Time) checker {
	return checker{s: s, d: d, now: now, w: windowAt(now)}
}

// task returns the task of an item and whether the sender is assigned
// to it.
func (c *checker) task(id string) (*taskState, bool) {
	if !c.seen || id != c.id {
		c.id, c.seen = id, true
		c.ts = c.s.cat.tasks[id]
		c.in = c.ts != nil && assigned(c.ts, c.d)
	}
	return c.ts, c.in
}

// result checks one result; a reason means it is rejected.
func (c *checker) result(ctx context.Context, r *transport.Result) (task.State, RejectReason, runCheck) {
	if r.Device != "" && r.Device != c.d {
		return "", RejectOtherDevice, runBad
	}
	st, ok := deviceStates[r.State]
	if !ok {
		return "", RejectState, runBad
	}
	if r.Seq < transport.SeqDevice || r.Seq > transport.MaxSeq {
		return "", RejectSeq, runBad
	}
	if len(r.Message) > transport.MaxText || len(r.TaskID) > transport.MaxKeyBytes {
		return "", RejectTooLong, runBad
	}
	now := c.now
	if r.Progress < 0 || r.Progress > 100 || !saneTime(r.DueAt, now) || !saneTime(r.StartedAt, now) || !saneTime(r.FinishedAt, now) || !saneTime(r.UpdatedAt, now) {
		return "", RejectInvalid, runBad
	}
	ts, in := c.task(r.TaskID)
	if ts == nil {
		return "", RejectUnknownTask, runBad
	}
	switch c.s.checkRun(ctx, ts, c.d, r.RunID, in, c.w) {
	case runOK:
		return st, "", runOK
	case runStale:
		return st, "", runStale
	case runRetry:
		return st, "", runRetry
	}
	if !in {
		return "", RejectNotAssigned, runBad
	}
	return "", RejectRun, runBad
}

// takeResults checks a Results message's items and buffers the valid
// ones: Tick records every buffered result in one batch and acknowledges
// the messages afterwards (flushResults).
func (s *Server) takeResults(ctx context.Context, m transport.Message, now time.Time) {
	d := m.Device
	items := m.Results
	if len(items) > transport.MaxItems {
		s.reject(d, RejectTooMany, len(items)-transport.MaxItems, "", "results beyond the per-message limit")
		items = items[:transport.MaxItems]
	}
	for s.in.writing && len(s.in.results) >= maxBuffered {
		s.in.written.Wait() // a batch is being written and the next is full
	}
	if s.closed {
		return // closed meanwhile: the device resends it to the next server
	}
	from := len(s.in.results)
	c := s.checker(d, now)
	retry := false
	for i := range items {
		r := &items[i]
		var st task.State
		if s.in.off {
			st = task.State(r.State)
		} else {
			var why RejectReason
			var rc runCheck
			st, why, rc = c.result(ctx, r)
			if why != "" {
				s.reject(d, why, 1, r.TaskID, fmt.Sprintf("run %d seq %d state %q", r.RunID, r.Seq, clipLog(r.State)))
				continue
			}
			if rc == runStale {
				continue // an older run than the stored one: nothing to store
			}
			if rc == runRetry {
				retry = true // checked again when the device resends
				continue
			}
		}
		s.in.results = append(s.in.results, task.Result{TaskID: r.TaskID, DeviceID: d, RunID: r.RunID, Seq: r.Seq, State: st, DueAt: r.DueAt, StartedAt: r.StartedAt,
			FinishedAt: r.FinishedAt, UpdatedAt: r.UpdatedAt, Progress: r.Progress, Message: r.Message, RestartRequired: r.RestartRequired})
	}
	if retry {
		// The checked items are recorded; nothing is acknowledged, so
		// the device resends the message (recording again is idempotent).
		s.in.acks = append(s.in.acks, pendingAck{device: d, from: from, to: len(s.in.results)})
	} else {
		s.in.acks = append(s.in.acks, pendingAck{device: d, key: m.Key, merged: m.Merged, from: from, to: len(s.in.results)})
	}
	if len(s.in.results) >= IntakeBatch {
		_ = s.flushResults(ctx, now) // logged; the devices resend
	}
}

// takeEvents checks an Events message's items and records the valid ones
// (their keys in the sender's own key space). It reports whether the
// message may be acknowledged (not after a storage failure).
func (s *Server) takeEvents(ctx context.Context, m transport.Message, now time.Time) bool {
	d := m.Device
	items := m.Events
	if len(items) > transport.MaxItems {
		s.reject(d, RejectTooMany, len(items)-transport.MaxItems, "", "events beyond the per-message limit")
		items = items[:transport.MaxItems]
	}
	evs := make([]task.EventInput, 0, len(items))
	c := s.checker(d, now)
	retry := false
	for _, e := range items {
		why := c.event(ctx, &e)
		if why == rejectRetry {
			retry = true // checked again when the device resends
			continue
		}
		if why != "" {
			s.reject(d, why, 1, e.TaskID, "event")
			continue
		}
		key := ""
		if e.Key != "" {
			key = deviceKeyPrefix + string(d) + "/" + e.Key
		}
		evs = append(evs, task.EventInput{TaskID: e.TaskID, DeviceID: d, RunID: e.RunID, At: e.At, Level: task.EventLevel(e.Level), Severity: task.Severity(e.Severity), Message: e.Message, Key: key})
	}
	if len(evs) == 0 {
		return !retry
	}
	if _, err := s.m.Runtime().RecordEvents(ctx, evs); err != nil {
		if errors.Is(err, task.ErrInvalid) {
			s.reject(d, RejectInvalid, len(evs), "", err.Error())
			return !retry
		}
		s.log.Error().Err(err).Str("device", string(d)).Msg("engine: events not recorded; the device will resend")
		return false
	}
	return !retry
}

// rejectRetry is what event answers when the store could not say whether
// the event's run is the device's: the event is neither stored nor
// rejected, and its message is not acknowledged.
const rejectRetry RejectReason = "retry"

// deviceKeyPrefix starts the stored key of every device event: the
// server's own records never start with it.
const deviceKeyPrefix = "device/"

// event checks one event; a reason means it is rejected.
func (c *checker) event(ctx context.Context, e *transport.Event) RejectReason {
	s, d, now := c.s, c.d, c.now
	switch {
	case e.Device != "" && e.Device != d:
		return RejectOtherDevice
	case len(e.Message) > transport.MaxText || len(e.Key) > transport.MaxKeyBytes || len(e.TaskID) > transport.MaxKeyBytes:
		return RejectTooLong
	case e.Level != string(task.EventResult) && e.Level != string(task.EventProgress) && e.Level != string(task.EventInfo),
		e.Severity != string(task.SeverityInfo) && e.Severity != string(task.SeverityWarning) && e.Severity != string(task.SeverityError),
		e.RunID < 0, !saneTime(e.At, now):
		return RejectInvalid
	}
	ts, in := c.task(e.TaskID)
	if ts == nil {
		return RejectUnknownTask
	}
	if e.RunID != 0 {
		// An event about a run: a run of the device's (issued to it, or
		// of its own schedule).
		switch s.checkRun(ctx, ts, d, e.RunID, in, c.w) {
		case runBad:
			if !in {
				return RejectNotAssigned
			}
			return RejectRun
		case runRetry:
			return rejectRetry
		}
		return ""
	}
	if !in {
		if _, err := s.cfg.Store.GetResult(context.WithoutCancel(ctx), ts.t.ID, string(d)); errors.Is(err, storage.ErrNotFound) {
			return RejectNotAssigned
		} else if err != nil {
			return rejectRetry
		}
	}
	return ""
}

// knownDevice reports whether device d is in the inventory (or is the
// server's own agent): only those report fleet-wide events (outbreaks,
// downloaded updates).
func (s *Server) knownDevice(ctx context.Context, d scope.DeviceID) bool {
	if d == task.ServerDevice {
		return true
	}
	_, err := s.cfg.Inventory.Device(ctx, d)
	return err == nil
}

// takeOutbreak starts the "on virus outbreak" tasks for a report of a
// device the inventory knows. The outbreak is dated by the server's clock
// when it arrives (to the minute: reports of the fleet received within the
// same minute are one outbreak); the device's time is logged only.
func (s *Server) takeOutbreak(ctx context.Context, m transport.Message, now time.Time) {
	d := m.Device
	o := m.Outbreak
	if o == nil || o.AppType == 0 || schedule.AppTypes(o.AppType)&^schedule.AllAppTypes != 0 {
		s.reject(d, RejectInvalid, 1, "", "virus outbreak without a valid application type")
		return
	}
	if !s.knownDevice(ctx, d) {
		s.reject(d, RejectUnknownDevice, 1, "", "virus outbreak")
		return
	}
	if m.Key != "" {
		if s.in.outbreaks[m.Key] {
			return // a resent report
		}
		if s.in.outbreaks == nil || len(s.in.outbreaks) >= maxOutbreakKeys {
			s.in.outbreaks = map[string]bool{}
		}
		s.in.outbreaks[m.Key] = true
	}
	s.log.Info().Str("device", string(d)).Uint8("app_type", o.AppType).Time("device_at", o.At).Msg("engine: virus outbreak reported")
	s.virusOutbreak(ctx, schedule.AppTypes(o.AppType), now.UTC().Truncate(time.Minute), now)
}

// takeEdit merges the device user's edit of the sender's own local task.
// The actor is the device's user ("device:<device>/<user>"), never a name
// the payload chooses. It reports whether the message may be
// acknowledged.
func (s *Server) takeEdit(ctx context.Context, m transport.Message) bool {
	d := m.Device
	e := m.Edit
	switch {
	case e == nil:
		s.reject(d, RejectInvalid, 1, "", "local edit without an edit")
		return true
	case len(e.User) > transport.MaxUserBytes || len(e.Task) > transport.MaxEditBytes:
		s.reject(d, RejectTooLong, 1, "", "local edit")
		return true
	case !utf8.ValidString(e.User):
		s.reject(d, RejectInvalid, 1, "", "local edit: the user name is not UTF-8")
		return true
	}
	var sp transport.TaskSpec
	if err := json.Unmarshal(e.Task, &sp); err != nil {
		s.reject(d, RejectInvalid, 1, "", "local edit: the task cannot be decoded")
		return true
	}
	ts := s.cat.tasks[sp.ID]
	if ts == nil {
		s.reject(d, RejectUnknownTask, 1, sp.ID, "local edit")
		return true
	}
	if ts.t.Kind() != task.Local || ts.t.Scope.Device != d {
		s.reject(d, RejectNotOwner, 1, sp.ID, "local edit of a task that is not the device's own local task")
		return true
	}
	edited := editedTask(*ts.t, sp)
	actor := DeviceActor(d, e.User)
	s.mu.Unlock() // the Manager calls TaskSaved
	_, err := s.m.MergeDeviceEdit(ctx, actor, edited.ID, e.BaseRevision, edited)
	s.mu.Lock()
	if err != nil {
		s.log.Error().Err(err).Str("device", string(d)).Str("task", edited.ID).Msg("engine: local edit not merged")
		return !errors.Is(err, errs.ErrRetryable)
	}
	return true
}

// DeviceActor is the actor of a device user's edit of a local task: its
// ID is "device:<device>/<user>", so revisions show which user of which
// device made it. No server account has such an ID.
func DeviceActor(d scope.DeviceID, user string) task.Actor {
	return task.Actor{ID: "device:" + string(d) + "/" + user}
}

// Group commit. The intake checks each device message under the
// server's lock as it arrives and buffers its valid results; a batch of
// buffered results (at most IntakeBatch) is written in one
// RecordResults call (one store transaction) with the lock released, so
// the messages arriving meanwhile are checked while the batch is
// written. One batch is written at a time, in arrival order. A batch is
// written when it is full (by the goroutine whose message filled it) and
// at every Tick (so a result waits at most one Run interval); while a
// batch is being written, at most maxBuffered results wait and the
// messages after them wait for the write to end. Only when RecordResults
// returned are the batch's messages acknowledged and their follow-ups
// run; a storage error acknowledges none of them, so every device of the
// batch resends.

// IntakeBatch is the most results the intake writes in one store call.
const IntakeBatch = 10000

// maxBuffered bounds the results buffered while a batch is written.
const maxBuffered = 2 * IntakeBatch

// flushResults writes the buffered results (called with s.mu held; it
// releases the lock during the store call). When another batch is being
// written it returns at once: that writer takes the full batches that
// piled up meanwhile, and the next Tick the rest. A storage error is
// returned (logged; nothing of the batch is acknowledged).
func (s *Server) flushResults(ctx context.Context, now time.Time) error {
	for len(s.in.acks) > 0 && !s.in.writing {
		if err := s.writeBatch(ctx, now); err != nil {
			return err
		}
		if len(s.in.results) < IntakeBatch {
			return nil
		}
	}
	return nil
}

// waitWrites waits until no batch is being written (s.mu held; Close).
func (s *Server) waitWrites() {
	for s.in.writing {
		s.in.written.Wait()
	}
}

// writeBatch records the buffered results through the Manager in one
// call with s.mu released, then acknowledges their messages and runs
// their follow-ups. Every buffered result passed the intake's checks;
// should the Manager still reject the batch as invalid, it is retried
// message by message so one message cannot hold back the others. A
// storage failure acknowledges nothing, so devices resend; its error is
// returned.
func (s *Server) writeBatch(ctx context.Context, now time.Time) error {
	all, acks := s.in.results, s.in.acks
	s.in.results, s.in.acks = s.in.flushBuf[:0], s.in.ackBuf[:0]
	s.in.flushBuf, s.in.ackBuf = nil, nil
	defer func() {
		// Keep the buffers for the next results (they arrive all day).
		clear(all)
		s.in.flushBuf = all[:0]
		clear(acks)
		s.in.ackBuf = acks[:0]
	}()
	ok, recorded := acks, all
	var invalid []invalidBatch
	var applied int
	var err error
	if len(all) > 0 {
		s.in.writing = true
		if !s.in.holdLock {
			s.mu.Unlock()
		}
		// The device whose message filled the batch may hang up: its
		// batch is everyone's, so the write does not end with its request.
		wctx := context.WithoutCancel(ctx)
		began := s.clk.Now()
		applied, err = s.m.Runtime().RecordResults(wctx, all)
		s.storeCall(ctx, "RecordResults", began)
		if errors.Is(err, task.ErrInvalid) {
			ok, recorded, applied = nil, nil, 0
			for _, a := range acks {
				n, err := s.m.Runtime().RecordResults(wctx, all[a.from:a.to])
				if err != nil && !errors.Is(err, task.ErrInvalid) {
					continue
				}
				if err != nil {
					invalid = append(invalid, invalidBatch{a, err})
				} else {
					recorded = append(recorded, all[a.from:a.to]...)
				}
				applied += n
				ok = append(ok, a)
			}
			err = nil
		}
		if !s.in.holdLock {
			s.mu.Lock()
		}
		s.in.writing = false
		s.in.written.Broadcast()
		if err != nil {
			s.log.Error().Err(err).Int("results", len(all)).Int("messages", len(acks)).Msg("engine: results not recorded; devices will resend")
			return err
		}
		for _, x := range invalid {
			s.reject(x.a.device, RejectInvalid, x.a.to-x.a.from, "", x.err.Error())
		}
		s.stats.ResultsApplied += int64(applied)
		s.met.recorded.Add(ctx, int64(applied))
	}
	s.acknowledge(ctx, ok)
	s.sinkResults(ctx, recorded)
	var trig plan
	for _, r := range recorded {
		if r.RestartRequired && r.State.Final() {
			s.log.Info().Str("task", r.TaskID).Str("device", string(r.DeviceID)).Int64("run", r.RunID).Msg("engine: restart pending: the device must restart to finish the run")
		}
		s.afterResult(ctx, &trig, r, now)
	}
	s.commit(ctx, trig) // "on completing another task" starts, in one batch
	return nil
}

// invalidBatch is a message whose results the Manager refused as invalid.
type invalidBatch struct {
	a   pendingAck
	err error
}

// acknowledge sends each device one Ack with the keys of its recorded
// messages.
func (s *Server) acknowledge(ctx context.Context, ok []pendingAck) {
	if len(ok) == 1 { // one message (the usual batch): no grouping
		a := ok[0]
		switch {
		case len(a.merged) > 0:
			_ = s.send(ctx, transport.Message{Kind: transport.Ack, Device: a.device, Acks: a.merged[:len(a.merged):len(a.merged)]})
		case a.key != "":
			_ = s.send(ctx, transport.Message{Kind: transport.Ack, Device: a.device, Acks: []string{a.key}})
		}
		return
	}
	byDev := map[scope.DeviceID][]string{}
	var order []scope.DeviceID
	for _, a := range ok {
		cur, seen := byDev[a.device]
		if !seen {
			order = append(order, a.device)
		}
		switch {
		case len(a.merged) > 0 && cur == nil:
			// Usually the device's only message: ack its keys as they
			// are (clipped, so a later append copies them).
			byDev[a.device] = a.merged[:len(a.merged):len(a.merged)]
		case len(a.merged) > 0:
			byDev[a.device] = append(cur, a.merged...)
		case a.key != "":
			byDev[a.device] = append(cur, a.key)
		}
	}
	for _, d := range order {
		if len(byDev[d]) > 0 {
			_ = s.send(ctx, transport.Message{Kind: transport.Ack, Device: d, Acks: byDev[d]})
		}
	}
}

// statsCopy returns the counters with their own RejectedBy map.
func (st Stats) statsCopy() Stats {
	st.RejectedBy = maps.Clone(st.RejectedBy)
	return st
}
