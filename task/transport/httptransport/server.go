package httptransport

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Paths the Server answers, relative to where the host mounts it.
const (
	PathSend   = "/v1/send"
	PathPoll   = "/v1/poll"
	PathEnroll = "/v1/enroll"
	PathRotate = "/v1/rotate"
)

// Server defaults and limits.
const (
	// DefaultMaxWait is the longest a poll is held (30 s); MaxMaxWait
	// bounds ServerConfig.MaxWait.
	DefaultMaxWait = 30 * time.Second
	MaxMaxWait     = 5 * time.Minute
	// DefaultCheckIn is how often an agent that cannot hold a connection
	// polls (ClientConfig.CheckIn); a start reaches it within one
	// check-in interval.
	DefaultCheckIn = time.Minute
	// DefaultMaxQueue is how many messages the server queues for one
	// device; more are dropped (the engine resends what matters).
	DefaultMaxQueue = 1000
	// MaxPollBytes bounds one poll answer (decompressed): the server
	// packs queued messages up to it (a single larger message goes
	// alone) and a client reads no more than MaxPollBytes plus one
	// message.
	MaxPollBytes = transport.MaxMessageBytes
	// gzipMin: bodies smaller than this are sent uncompressed.
	gzipMin = 1024
)

// ServerConfig configures a Server. Identity is required.
type ServerConfig struct {
	// Identity authenticates every request (MTLS or *Enrollment).
	Identity Identity
	// Clock drives presence (ConnectedFor); the poll timers use real
	// time.
	Clock  clock.Clock
	Logger zerolog.Logger
	// MaxWait is the longest a poll is held before it is answered empty
	// (DefaultMaxWait, 1 s to MaxMaxWait); a device asking longer gets
	// MaxWait.
	MaxWait time.Duration
	// ConnectedFor: a device that polled or sent within this long is
	// connected (Send queues for it) (default 2 × DefaultCheckIn +
	// MaxWait, so agents checking in every DefaultCheckIn stay
	// connected).
	ConnectedFor time.Duration
	// MaxQueue is how many messages are queued per device
	// (DefaultMaxQueue).
	MaxQueue int
}

// Stats are a Server's counters since it was created.
type Stats struct {
	// Received counts messages handed to the Handler; Polls answered
	// polls; Sent messages delivered in poll answers; Dropped messages
	// not queued because a device's queue was full.
	Received, Polls, Sent, Dropped int64
	// Unauthenticated counts requests answered 401; Malformed bodies
	// answered 400, 413 or 415; Enrolled keys issued; Rotated keys
	// rotated.
	Unauthenticated, Malformed, Enrolled, Rotated int64
	// Polling is the number of polls held now (a poll whose device went
	// away counts until it is let go: see servePoll); Connected the
	// number of devices connected now.
	Polling, Connected int64
}

// Server is the server side of the HTTPS device channel: an http.Handler
// the host mounts in its own http.Server (behind TLS, see ServerTLS) and
// the engine's transport.ServerEndpoint. Attach the engine's Handler
// before serving.
type Server struct {
	cfg ServerConfig
	clk clock.Clock
	log zerolog.Logger
	mux *http.ServeMux

	handler atomic.Pointer[transport.Handler]

	mu       sync.Mutex
	peers    map[transport.DeviceID]*peer
	sweep    int
	sweepDue atomic.Bool // touch asks sweepIdle to forget idle peers

	st struct {
		received, polls, sent, dropped, unauth, malformed, enrolled, rotated, polling atomic.Int64
	}
}

// peer is the server's state of one device.
type peer struct {
	queue []transport.Message
	bytes int
	seen  time.Time // last request
	polls int       // polls held now (a superseded one until it returns)
	cur   *held     // the device's newest held poll, nil when none waits
}

// held is one poll the server holds: what a waiting poll costs it (the
// goroutine and net/http's stream state aside). Its handler waits on c
// alone, closed by Send, by the deadline's timer, or by a newer poll of
// the same device (superseded); the request's context is checked when
// it wakes, not waited on (a select on it and a timer channel cost three
// times the memory).
type held struct {
	c          chan struct{}
	superseded bool // s.mu
}

// release wakes h; s.mu is held.
func (p *peer) release(h *held) {
	if p.cur == h && h != nil {
		close(h.c)
		p.cur = nil
	}
}

var _ transport.ServerEndpoint = (*Server)(nil)

// NewServer returns a Server. Errors match ErrInvalid.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Identity == nil {
		return nil, errs.Invalid("Identity", "", "is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.MaxWait < time.Second || cfg.MaxWait > MaxMaxWait {
		return nil, errs.Invalid("MaxWait", cfg.MaxWait.String(), "must be between 1s and "+MaxMaxWait.String())
	}
	if cfg.ConnectedFor == 0 {
		cfg.ConnectedFor = 2*DefaultCheckIn + cfg.MaxWait
	}
	if cfg.ConnectedFor < cfg.MaxWait {
		return nil, errs.Invalid("ConnectedFor", cfg.ConnectedFor.String(), "must be at least MaxWait")
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if cfg.MaxQueue < 1 || cfg.MaxQueue > 1_000_000 {
		return nil, errs.Range("MaxQueue", cfg.MaxQueue, 1, 1_000_000)
	}
	s := &Server{cfg: cfg, clk: cfg.Clock, log: cfg.Logger, peers: map[transport.DeviceID]*peer{}}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST "+PathSend, s.serveSend)
	s.mux.HandleFunc("GET "+PathPoll, s.servePoll)
	s.mux.HandleFunc("POST "+PathEnroll, s.serveEnroll)
	s.mux.HandleFunc("POST "+PathRotate, s.serveRotate)
	return s, nil
}

// Attach sets the handler of device messages (the engine). Until then
// device messages are answered 503. The handler is called concurrently,
// once per device request (the engine's Handle is safe for that, and
// writes the results of concurrent messages in one store transaction);
// a device's request is answered when Handle returns.
func (s *Server) Attach(h transport.Handler) { s.handler.Store(&h) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A held poll's goroutine keeps every caller's frame on its stack
	// while it waits: polls skip the mux (its frames and pattern
	// matching) so that the stack stays at 4 KiB (the runtime halves a
	// stack at a collection only while less than a quarter is in use).
	if r.Method == http.MethodGet && r.URL.Path == PathPoll {
		s.servePoll(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// statsChunk is how many devices Stats counts per hold of the lock.
const statsChunk = 1024

// Stats returns the counters.
func (s *Server) Stats() Stats {
	st := Stats{Received: s.st.received.Load(), Polls: s.st.polls.Load(), Sent: s.st.sent.Load(), Dropped: s.st.dropped.Load(),
		Unauthenticated: s.st.unauth.Load(), Malformed: s.st.malformed.Load(), Enrolled: s.st.enrolled.Load(), Rotated: s.st.rotated.Load(),
		Polling: s.st.polling.Load()}
	// Counting Connected visits every device; at 100,000 that took
	// 50 ms on the loaded test machine, every Send and poll waiting
	// behind it. The lock is let go every statsChunk devices (a map may
	// change between steps of a range over it), so the count is of a
	// moment that moves while it is taken: a gauge.
	s.mu.Lock()
	now := s.clk.Now()
	n := 0
	for _, p := range s.peers {
		if s.connected(p, now) {
			st.Connected++
		}
		if n++; n%statsChunk == 0 {
			s.mu.Unlock()
			runtime.Gosched()
			s.mu.Lock()
		}
	}
	s.mu.Unlock()
	return st
}

// connected: s.mu is held.
func (s *Server) connected(p *peer, now time.Time) bool {
	return p != nil && (p.polls > 0 || now.Sub(p.seen) < s.cfg.ConnectedFor)
}

// Connected reports whether device holds a poll or made a request within
// ConnectedFor: what a host mirrors into its inventory's Connected flag.
func (s *Server) Connected(device transport.DeviceID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected(s.peers[device], s.clk.Now())
}

// Send implements transport.ServerEndpoint: it queues m for the device's
// next poll, and answers a held poll at once. It returns ErrUnreachable
// for a device that is not connected; a message over a full queue is
// dropped (counted in Stats.Dropped).
func (s *Server) Send(_ context.Context, m transport.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[m.Device]
	if !s.connected(p, s.clk.Now()) {
		return transport.ErrUnreachable
	}
	if len(p.queue) >= s.cfg.MaxQueue {
		s.st.dropped.Add(1)
		return nil
	}
	if m.Version == 0 {
		m.Version = transport.ProtocolVersion
	}
	p.queue = append(p.queue, m)
	p.release(p.cur)
	return nil
}

// touch records a request of device and returns its peer; s.mu is held.
func (s *Server) touch(id transport.DeviceID, now time.Time) *peer {
	p := s.peers[id]
	if p == nil {
		p = &peer{}
		s.peers[id] = p
	}
	p.seen = now
	// Forget idle peers now and then (bounded by the authenticated
	// devices anyway): sweepIdle, after the caller let the lock go.
	if s.sweep++; s.sweep >= 4096 && s.sweep >= len(s.peers) {
		s.sweep = 0
		s.sweepDue.Store(true)
	}
	return p
}

// sweepIdle forgets the peers that are idle (nothing queued, not
// connected) when touch asked for it. It visits every device, letting the
// lock go every statsChunk of them (as Stats does): a sweep of 100,000
// under the lock held every Send and poll for tens of milliseconds. A
// peer touched meanwhile is connected and stays.
func (s *Server) sweepIdle() {
	if !s.sweepDue.Load() || !s.sweepDue.CompareAndSwap(true, false) {
		return
	}
	s.mu.Lock()
	now := s.clk.Now()
	n := 0
	for k, q := range s.peers {
		if len(q.queue) == 0 && !s.connected(q, now) {
			delete(s.peers, k)
		}
		if n++; n%statsChunk == 0 {
			s.mu.Unlock()
			runtime.Gosched()
			s.mu.Lock()
		}
	}
	s.mu.Unlock()
}

// authenticate answers 401 and returns "" for a request without a valid
// identity, and 503 when the identity could not be checked (the key
// store failed): the device retries with backoff instead of enrolling
// again.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) transport.DeviceID {
	id, err := s.cfg.Identity.Authenticate(r)
	if err == nil {
		return id
	}
	var ae *AuthError
	if !errors.As(err, &ae) {
		s.log.Error().Err(err).Msg("httptransport: the device's identity could not be checked")
		w.Header().Set("Retry-After", "1")
		http.Error(w, "the device's identity cannot be checked now", http.StatusServiceUnavailable)
		return ""
	}
	s.st.unauth.Add(1)
	reason := ae.Reason
	s.log.Debug().Str("reason", reason).Str("device", clipID(transport.DeviceID(r.Header.Get(HeaderDevice)))).Msg("httptransport: unauthenticated request")
	w.Header().Set(HeaderAuthError, reason)
	http.Error(w, "a valid device identity is required", http.StatusUnauthorized)
	return ""
}

// readBody reads a request body of at most limit bytes, gzip-decoded
// when Content-Encoding says so (also at most limit bytes decoded: a
// zip bomb is cut off). It returns the HTTP status of a refusal.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, int, error) {
	body := io.Reader(http.MaxBytesReader(w, r.Body, limit))
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, http.StatusBadRequest, errs.Invalid("body", "", "is not gzip")
		}
		defer zr.Close()
		body = zr
	default:
		return nil, http.StatusUnsupportedMediaType, errs.Invalid("Content-Encoding", clipID(transport.DeviceID(enc)), "must be gzip or none")
	}
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig) || int64(len(b)) > limit:
		return nil, http.StatusRequestEntityTooLarge, errs.Invalid("body", "", fmt.Sprintf("is larger than %d bytes", limit))
	case err != nil:
		return nil, http.StatusBadRequest, errs.Invalid("body", "", "cannot be read")
	}
	return b, 0, nil
}

func (s *Server) malformed(w http.ResponseWriter, code int, err error) {
	s.st.malformed.Add(1)
	http.Error(w, err.Error(), code)
}

// serveSend answers POST /v1/send: one message from the authenticated
// device, whose Device field is replaced by it.
func (s *Server) serveSend(w http.ResponseWriter, r *http.Request) {
	id := s.authenticate(w, r)
	if id == "" {
		return
	}
	h := s.handler.Load()
	if h == nil {
		http.Error(w, "the server is starting", http.StatusServiceUnavailable)
		return
	}
	b, code, err := readBody(w, r, transport.MaxMessageBytes)
	if err != nil {
		s.malformed(w, code, err)
		return
	}
	m, err := transport.DecodeBytes(b)
	if err != nil {
		s.malformed(w, http.StatusBadRequest, err)
		return
	}
	m.Device = id
	s.mu.Lock()
	s.touch(id, s.clk.Now())
	s.mu.Unlock()
	s.sweepIdle()
	s.st.received.Add(1)
	(*h).Handle(r.Context(), m)
	w.WriteHeader(http.StatusNoContent)
}

// servePoll answers GET /v1/poll?wait=SECONDS: the messages queued for
// the authenticated device (a JSON array), as soon as there is one or
// after wait seconds (at most MaxWait) with an empty array. A device
// holds one poll: a newer poll answers the older one 409 at once (an
// agent polls one at a time, so the older one is a leftover of a dropped
// connection, or a second agent with the same identity, which then backs
// off). A poll whose request ended (the device went away) is released
// at its deadline, when something is queued for the device or when the
// device polls again, whichever comes first, and takes nothing.
//
// The waiting is in this function and no deeper, and the work before and
// after it is in functions that have returned by then: the frames of a
// waiting handler stay on its stack (see ServeHTTP).
func (s *Server) servePoll(w http.ResponseWriter, r *http.Request) {
	p, h, wait := s.pollStart(w, r)
	if h == nil {
		return
	}
	t := time.AfterFunc(wait, func() { s.expire(p, h) })
	<-h.c
	t.Stop()
	s.pollEnd(w, r, p, h)
}

// pollStart authenticates a poll and answers it at once when something
// is queued or wait is 0; otherwise it returns the poll to hold (nil when
// it is answered).
//
//go:noinline
func (s *Server) pollStart(w http.ResponseWriter, r *http.Request) (*peer, *held, time.Duration) {
	id := s.authenticate(w, r)
	if id == "" {
		return nil, nil, 0
	}
	wait := time.Duration(0)
	if v := r.URL.Query().Get("wait"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || len(v) > 6 {
			s.malformed(w, http.StatusBadRequest, errs.Invalid("wait", clipID(transport.DeviceID(v)), "must be a number of seconds"))
			return nil, nil, 0
		}
		wait = min(time.Duration(n)*time.Second, s.cfg.MaxWait)
	}
	s.mu.Lock()
	p := s.touch(id, s.clk.Now())
	if old := p.cur; old != nil {
		old.superseded = true
		p.release(old)
	}
	if len(p.queue) > 0 || wait == 0 {
		msgs := take(p)
		s.mu.Unlock()
		s.answer(w, r, msgs)
		s.sweepIdle()
		return nil, nil, 0
	}
	h := &held{c: make(chan struct{})}
	p.cur = h
	p.polls++
	s.mu.Unlock()
	s.sweepIdle()
	s.st.polling.Add(1)
	return p, h, wait
}

// expire releases h at its deadline.
func (s *Server) expire(p *peer, h *held) {
	s.mu.Lock()
	p.release(h)
	s.mu.Unlock()
}

// pollEnd answers a held poll once it was released: with what is queued
// (nothing at its deadline), 409 when a newer poll superseded it, nothing
// when its request ended.
//
//go:noinline
func (s *Server) pollEnd(w http.ResponseWriter, r *http.Request, p *peer, h *held) {
	gone := r.Context().Err() != nil
	var msgs []transport.Message
	s.mu.Lock()
	p.polls--
	p.seen = s.clk.Now()
	superseded := h.superseded
	if !gone && !superseded {
		msgs = take(p)
	}
	s.mu.Unlock()
	s.st.polling.Add(-1)
	switch {
	case gone:
	case superseded:
		http.Error(w, "a newer poll of this device is held", http.StatusConflict)
	default:
		s.answer(w, r, msgs)
	}
}

// take removes the messages of one poll answer from p's queue.
func take(p *peer) []transport.Message {
	n, size := 0, 0
	for n < len(p.queue) {
		sz := approxSize(p.queue[n])
		if n > 0 && size+sz > MaxPollBytes {
			break
		}
		size += sz
		n++
	}
	msgs := p.queue[:n:n]
	p.queue = p.queue[n:]
	if len(p.queue) == 0 {
		p.queue = nil
	}
	return msgs
}

// approxSize estimates a message's encoded size without encoding it.
func approxSize(m transport.Message) int {
	n := 256 + len(m.Key) + len(m.TaskID) + 64*len(m.Acks) + 256*len(m.Results) + 256*len(m.Events)
	if m.Definition != nil {
		n += 4096 + len(m.Definition.Task.Description)
	}
	return n
}

// answer writes a poll answer, gzipped when the device accepts it and it
// is not tiny. A failed write loses the messages: allowed, the runtimes
// resend what matters.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, msgs []transport.Message) {
	s.st.polls.Add(1)
	s.st.sent.Add(int64(len(msgs)))
	if msgs == nil {
		msgs = []transport.Message{}
	}
	b, err := json.Marshal(msgs)
	if err != nil {
		s.log.Error().Err(err).Msg("httptransport: encode poll answer")
		http.Error(w, "cannot encode", http.StatusInternalServerError)
		return
	}
	writeBody(w, r, http.StatusOK, b)
}

// writeBody writes b as JSON, gzipped when the client accepts it and b is
// not tiny.
func writeBody(w http.ResponseWriter, r *http.Request, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	if len(b) >= gzipMin && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		var done func()
		b, done = gzipped(b)
		defer done()
		w.Header().Set("Content-Encoding", "gzip")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// EnrollRequest is the body of POST /v1/enroll.
type EnrollRequest struct {
	Device transport.DeviceID `json:"device"`
	Secret string             `json:"secret"`
}

// KeyAnswer is the answer of POST /v1/enroll and /v1/rotate.
type KeyAnswer struct {
	Key string `json:"key"`
}

// maxEnrollBody bounds an enrollment request.
const maxEnrollBody = 4096

// serveEnroll answers POST /v1/enroll when the Identity is an
// *Enrollment: 200 with the key; 401 wrong secret; 403 revoked or not
// known; 409 already enrolled; 429 rate limited and 503 when the key
// store failed (both with Retry-After: 1). A refusal carries its reason
// in the Taskfleet-Auth-Error header.
func (s *Server) serveEnroll(w http.ResponseWriter, r *http.Request) {
	e, ok := s.cfg.Identity.(*Enrollment)
	if !ok {
		http.NotFound(w, r)
		return
	}
	b, code, err := readBody(w, r, maxEnrollBody)
	if err != nil {
		s.malformed(w, code, err)
		return
	}
	var req EnrollRequest
	if err := json.Unmarshal(b, &req); err != nil {
		s.malformed(w, http.StatusBadRequest, errs.Invalid("body", "", "is not an enrollment request"))
		return
	}
	key, err := e.Enroll(r.Context(), req.Device, Secret(req.Secret))
	refuse := func(code int, reason string) {
		w.Header().Set(HeaderAuthError, reason)
		if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, reason, code)
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrRateLimited):
		refuse(http.StatusTooManyRequests, ReasonRateLimited)
		return
	case errors.Is(err, ErrBadSecret):
		s.st.unauth.Add(1)
		refuse(http.StatusUnauthorized, ReasonBadSecret)
		return
	case errors.Is(err, ErrRevoked):
		refuse(http.StatusForbidden, ReasonRevoked)
		return
	case errors.Is(err, ErrNotKnown):
		refuse(http.StatusForbidden, ReasonNotKnown)
		return
	case errors.Is(err, ErrEnrolled):
		refuse(http.StatusConflict, ReasonEnrolled)
		return
	case errors.Is(err, ErrInvalid):
		s.malformed(w, http.StatusBadRequest, err)
		return
	default:
		// The key store failed, or the record changed under the
		// enrollment: nothing refuses the device, it tries again.
		if r.Context().Err() == nil {
			s.log.Warn().Err(err).Str("device", clipID(req.Device)).Msg("httptransport: enrollment failed in the key store")
		}
		refuse(http.StatusServiceUnavailable, ReasonUnavailable)
		return
	}
	s.st.enrolled.Add(1)
	b, _ = json.Marshal(KeyAnswer{Key: string(key)})
	w.Header().Set("Cache-Control", "no-store")
	writeBody(w, r, http.StatusOK, b)
}

// serveRotate answers POST /v1/rotate from an authenticated device with a
// new key.
func (s *Server) serveRotate(w http.ResponseWriter, r *http.Request) {
	e, ok := s.cfg.Identity.(*Enrollment)
	if !ok {
		http.NotFound(w, r)
		return
	}
	id := s.authenticate(w, r)
	if id == "" {
		return
	}
	var held Hash
	if k, ok := bearer(r); ok {
		held = HashKey(k)
	}
	key, err := e.rotate(r.Context(), id, held)
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, ErrConflict) {
			code = http.StatusConflict
		}
		http.Error(w, "rotation failed", code)
		return
	}
	s.st.rotated.Add(1)
	b, _ := json.Marshal(KeyAnswer{Key: string(key)})
	w.Header().Set("Cache-Control", "no-store")
	writeBody(w, r, http.StatusOK, b)
}
