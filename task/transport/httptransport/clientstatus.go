package httptransport

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// Operations of a Client, in Failure.Op.
const (
	OpEnroll = "enroll" // POST /v1/enroll
	OpRotate = "rotate" // POST /v1/rotate
	OpPoll   = "poll"   // GET /v1/poll
	OpSend   = "send"   // POST /v1/send
)

// Reasons of a Failure that the client gives itself (the server's own
// come in the Taskfleet-Auth-Error header: the Reason constants of
// identity.go, ReasonBadSecret, ReasonEnrolled, ReasonNotKnown).
const (
	// ReasonUnreachable: no answer (no connection, the connection broke,
	// the request timed out).
	ReasonUnreachable = "unreachable"
	// ReasonNotEnrolled: Send was called before the client had a key (its
	// enrollment is under way or failing); nothing was sent.
	ReasonNotEnrolled = "not_enrolled"
	// ReasonBadAnswer: an answer the client cannot read.
	ReasonBadAnswer = "bad_answer"
	// ReasonSaveKey: ClientConfig.SaveKey failed; the key was not used.
	ReasonSaveKey = "save_key"
	// ReasonRefused: a message refused as malformed or too large (400,
	// 413, 415).
	ReasonRefused = "refused"
	// ReasonUnauthenticated: 401 without a reason.
	ReasonUnauthenticated = "unauthenticated"
	// ReasonForbidden: 403 without a reason.
	ReasonForbidden = "forbidden"
	// ReasonServerError: a 5xx answer other than 503.
	ReasonServerError = "server_error"
	// ReasonUnexpected: any other status.
	ReasonUnexpected = "unexpected_status"
)

// DefaultWarnEvery is ClientConfig.WarnEvery's default.
const DefaultWarnEvery = time.Minute

// Failure is one failed exchange of a Client with the server. It holds
// no key or secret.
type Failure struct {
	// Op is the operation: OpEnroll, OpRotate, OpPoll or OpSend.
	Op string
	// Status is the HTTP status of the server's answer; 0 when there was
	// none (Reason ReasonUnreachable or ReasonNotEnrolled).
	Status int
	// Reason says why, in a word: the server's reason code (the
	// Taskfleet-Auth-Error header: bad_key, unknown_device, expired,
	// revoked, bad_secret, already_enrolled, not_known, rate_limited,
	// unavailable …) or one of the client's (ReasonUnreachable …).
	Reason string
	// Err is the underlying error of a failure without an answer (the
	// connection's), else nil.
	Err error
	// At is when it happened (UTC, on the client's Clock).
	At time.Time
}

// Kind is the Failure without its time and error, for counting failures
// by kind: "poll 401 bad_key", "enroll 503 unavailable", "send
// unreachable".
func (f Failure) Kind() string {
	if f.Status == 0 {
		return f.Op + " " + f.Reason
	}
	return f.Op + " " + strconv.Itoa(f.Status) + " " + f.Reason
}

// Error implements error.
func (f Failure) Error() string {
	s := "httptransport: " + f.Kind()
	if f.Err != nil {
		s += ": " + f.Err.Error()
	}
	return s
}

// Unwrap returns Err.
func (f Failure) Unwrap() error { return f.Err }

// ClientStatus is what a Client knows of its connection, for the host
// (Client.Status): whether and when the device last got in, and its
// failures.
type ClientStatus struct {
	// HasKey: the client holds a key (enrollment identity).
	HasKey bool
	// LastContact is when the server last accepted a request with the
	// device's identity (a poll or a Send answered 2xx); zero: never.
	LastContact time.Time
	// Enrollments counts the keys the client received (enrollments and
	// rotations).
	Enrollments int64
	// Failures counts every failure; Consecutive those since the last
	// success (an accepted request or a key received).
	Failures    int64
	Consecutive int
	// Last is the latest failure (zero Op: none).
	Last Failure
}

// Status returns the client's status.
func (c *Client) Status() ClientStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	st.HasKey = c.key != ""
	return st
}

// answerFailure describes an answer that is not a success. The server's
// reason header is used when it is a short word; else the status names
// the reason.
func answerFailure(op string, resp *http.Response) Failure {
	f := Failure{Op: op, Status: resp.StatusCode, Reason: resp.Header.Get(HeaderAuthError)}
	if !reasonWord(f.Reason) {
		f.Reason = statusReason(resp.StatusCode)
	}
	return f
}

// reasonWord reports whether s is 1 to 32 bytes of a-z, 0-9 and _ (the
// server's reason header is outside input).
func reasonWord(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '_') {
			return false
		}
	}
	return true
}

func statusReason(code int) string {
	switch {
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge || code == http.StatusUnsupportedMediaType:
		return ReasonRefused
	case code == http.StatusUnauthorized:
		return ReasonUnauthenticated
	case code == http.StatusForbidden:
		return ReasonForbidden
	case code == http.StatusConflict:
		return ReasonEnrolled
	case code == http.StatusTooManyRequests:
		return ReasonRateLimited
	case code == http.StatusServiceUnavailable:
		return ReasonUnavailable
	case code >= 500:
		return ReasonServerError
	}
	return ReasonUnexpected
}

// failed records a failure: counted, kept as the last one, handed to
// OnFailure, and logged: at warn level at most once per WarnEvery (with
// the number of failures since the last warning), else at debug level.
// A failure caused by ctx ending (the host stopping the client) is not
// one.
func (c *Client) failed(ctx context.Context, f Failure) {
	if ctx.Err() != nil {
		return
	}
	f.At = c.clk.Now().UTC()
	c.mu.Lock()
	c.st.Failures++
	c.st.Consecutive++
	c.st.Last = f
	c.sinceWarn++
	warn := c.cfg.WarnEvery >= 0 && (c.lastWarn.IsZero() || f.At.Sub(c.lastWarn) >= c.cfg.WarnEvery)
	n, consecutive := c.sinceWarn, c.st.Consecutive
	if warn {
		c.lastWarn, c.sinceWarn, c.warned = f.At, 0, true
	}
	c.mu.Unlock()
	ev := c.log.Debug()
	if warn {
		ev = c.log.Warn().Int("since_last_warning", n)
	}
	ev.Str("device", clipID(c.cfg.Device)).Str("op", f.Op).Int("status", f.Status).Str("reason", f.Reason).
		Int("consecutive", consecutive).AnErr("error", f.Err).Msg("httptransport: the device cannot get through to the server")
	if c.cfg.OnFailure != nil {
		c.cfg.OnFailure(f)
	}
}

// reached records a request the server accepted with the device's
// identity: the failure streak and the enrollment backoff end.
func (c *Client) reached() {
	now := c.clk.Now().UTC()
	c.mu.Lock()
	n, warned := c.st.Consecutive, c.warned
	c.st.Consecutive, c.st.LastContact, c.warned = 0, now, false
	c.enrollTries, c.enrollAfter = 0, time.Time{}
	c.mu.Unlock()
	if warned && n > 0 {
		c.log.Info().Str("device", clipID(c.cfg.Device)).Int("failures", n).Msg("httptransport: the device got through to the server again")
	}
}
