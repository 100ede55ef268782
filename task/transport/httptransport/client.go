package httptransport

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/task/transport"
)

// Client defaults.
const (
	// DefaultWait is how long a client asks the server to hold a poll.
	DefaultWait = 25 * time.Second
	// DefaultBackoffMin and DefaultBackoffMax bound the client's
	// reconnect delay: after the n-th failure in a row it waits a random
	// time between half and all of min(Max, Min × 2ⁿ⁻¹).
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = 2 * time.Minute
	// DefaultRequestTimeout bounds a request beyond the poll's wait.
	DefaultRequestTimeout = 30 * time.Second
)

// ClientConfig configures a Client. URL and Device are required.
type ClientConfig struct {
	// URL is where the host mounted the Server, "https://host:port" or
	// "https://host:port/prefix".
	URL string
	// Device is this device's id (it must match what the Identity
	// authenticates: the certificate's device with MTLS).
	Device transport.DeviceID
	// HTTPClient sends the requests (default NewHTTPClient(nil)). Clients
	// of many simulated devices may share one, and so its HTTP/2
	// connections; each still presents its own identity.
	HTTPClient *http.Client
	// Key is the device's key (enrollment identity), if it has one.
	Key Secret
	// EnrollSecret is the fleet's enrollment secret: the client enrolls
	// with it when it has no Key, and once more after a 401 (see Run).
	EnrollSecret Secret
	// SaveKey persists a key the client received (enrollment, rotation)
	// before it uses it; an error keeps the old key. Optional.
	SaveKey func(ctx context.Context, key Secret) error
	// Clock drives the reconnect backoff, check-ins and key rotation; the
	// HTTP timeouts use real time.
	Clock clock.Clock
	// Logger receives the client's failures (see WarnEvery) and identity
	// events (default zerolog.Nop()). Never a key or secret.
	Logger zerolog.Logger
	// WarnEvery bounds the client's warnings: a failure to get through to
	// the server (no answer, a refused identity or enrollment, a server
	// error) is logged at warn level at most once per WarnEvery, with the
	// number of failures since the last warning, and at debug level
	// otherwise; the first success after a warning is logged at info
	// level. Default DefaultWarnEvery; negative: never at warn level.
	WarnEvery time.Duration
	// OnFailure, if set, is called with every failure (Failure: the
	// operation, the HTTP status and the server's reason), for a host
	// that counts them (see also Client.Status). It is called
	// synchronously on the failing request's goroutine: it must be quick.
	OnFailure func(Failure)
	// Wait is how long the client asks the server to hold a poll
	// (DefaultWait; the server holds at most its MaxWait).
	Wait time.Duration
	// CheckIn, for an agent that cannot hold a connection, turns long
	// polls off: the client then polls without waiting every CheckIn
	// (DefaultCheckIn is the documented interval), and a start reaches
	// it within one CheckIn. Zero: long polls.
	CheckIn time.Duration
	// BackoffMin and BackoffMax bound the reconnect delay
	// (DefaultBackoffMin, DefaultBackoffMax).
	BackoffMin, BackoffMax time.Duration
	// RotateEvery rotates the key this often (zero: never); keep it
	// below the server's KeyTTL.
	RotateEvery time.Duration
	// NoCompress turns off the gzip compression of request bodies of at
	// least 1 KiB (on by default), for a server that refuses gzip.
	NoCompress bool
}

// Client is the device side of the HTTPS channel: the agent's
// transport.DeviceEndpoint (Send) and the loop that polls for the
// server's messages and reconnects (Run).
type Client struct {
	cfg  ClientConfig
	clk  clock.Clock
	log  zerolog.Logger
	hc   *http.Client
	base string

	// enrollMu serializes enrollments and rotations, so the key the
	// server issued last is the key saved last and used.
	enrollMu  sync.Mutex
	mu        sync.Mutex
	key       Secret
	enrolling bool // an enrollment after a 401 is under way
	// enrollTries counts the enrollments after a 401 since the last
	// accepted request; the next may start at enrollAfter (a backoff).
	enrollTries int
	enrollAfter time.Time
	rotatedAt   time.Time
	rnd         *rand.Rand

	st        ClientStatus
	lastWarn  time.Time
	sinceWarn int  // failures since the last warning
	warned    bool // a warning was logged in this failure streak
}

var _ transport.DeviceEndpoint = (*Client)(nil)

// NewClient returns a Client. Errors match ErrInvalid.
func NewClient(cfg ClientConfig) (*Client, error) {
	if !strings.HasPrefix(cfg.URL, "https://") && !strings.HasPrefix(cfg.URL, "http://") {
		return nil, errs.Invalid("URL", cfg.URL, "must be an https:// URL")
	}
	if !validID(cfg.Device) {
		return nil, errs.Invalid("Device", clipID(cfg.Device), fmt.Sprintf("must be 1 to %d bytes of text", MaxDeviceIDBytes))
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = NewHTTPClient(nil)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.New()
	}
	if cfg.Wait == 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.WarnEvery == 0 {
		cfg.WarnEvery = DefaultWarnEvery
	}
	switch {
	case cfg.Wait < time.Second || cfg.Wait > MaxMaxWait:
		return nil, errs.Invalid("Wait", cfg.Wait.String(), "must be between 1s and "+MaxMaxWait.String())
	case cfg.CheckIn < 0 || cfg.RotateEvery < 0:
		return nil, errs.Invalid("CheckIn", cfg.CheckIn.String(), "CheckIn and RotateEvery must not be negative")
	case cfg.BackoffMin <= 0 || cfg.BackoffMax < cfg.BackoffMin:
		return nil, errs.Invalid("BackoffMax", cfg.BackoffMax.String(), "BackoffMin must be positive and BackoffMax at least BackoffMin")
	}
	return &Client{cfg: cfg, clk: cfg.Clock, log: cfg.Logger, hc: cfg.HTTPClient, base: strings.TrimSuffix(cfg.URL, "/"),
		key: cfg.Key, rotatedAt: cfg.Clock.Now(), rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}, nil
}

// NewHTTPClient returns an http.Client for the channel: HTTP/2 over TLS
// 1.3 (TLS 1.3 is the minimum whatever base says), with base's roots and
// client certificates (nil: the system roots). It does not decompress
// on its own: the Client bounds what it decompresses.
func NewHTTPClient(base *tls.Config) *http.Client {
	var tc *tls.Config
	if base != nil {
		tc = base.Clone()
	} else {
		tc = &tls.Config{}
	}
	tc.MinVersion = tls.VersionTLS13
	tr := &http.Transport{
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   true,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	tr.Protocols.SetHTTP2(true)
	return &http.Client{Transport: tr}
}

// ServerTLS returns the TLS configuration of the host's http.Server: TLS
// 1.3 only, HTTP/2 and HTTP/1.1, the server's certificate, and, when
// clientCAs is not nil, client certificates verified against it if given
// (MTLS refuses requests without one; the enrollment identity ignores
// them).
func ServerTLS(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	if clientCAs != nil {
		c.ClientCAs = clientCAs
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return c
}

// ErrRefused is returned by Send for a message the server refused as
// malformed or too large (400, 413, 415): sending it again cannot help.
// It matches ErrInvalid.
var ErrRefused = fmt.Errorf("httptransport: message refused by the server: %w", errs.ErrInvalid)

// Send implements transport.DeviceEndpoint: it POSTs m (gzipped when it
// is 1 KiB or more). Any failure to hand it over is ErrUnreachable (the
// agent keeps it in its outbox and retries), but for a message the server
// refuses as malformed (ErrRefused). A client with an EnrollSecret but no
// key yet (its enrollment is under way or failing) sends nothing and
// returns ErrUnreachable. A 401 starts the enrollment again described at
// Run.
func (c *Client) Send(ctx context.Context, m transport.Message) error {
	if m.Version == 0 {
		m.Version = transport.ProtocolVersion
	}
	body, err := transport.Encode(m)
	if err != nil {
		return err
	}
	c.mu.Lock()
	keyless := c.key == "" && c.cfg.EnrollSecret != ""
	c.mu.Unlock()
	if keyless {
		// A request without a key would be answered 401, and a 401 makes
		// the client enroll again: that replaced the key the poll loop's
		// enrollment was receiving.
		c.failed(ctx, Failure{Op: OpSend, Reason: ReasonNotEnrolled})
		return transport.ErrUnreachable
	}
	resp, sent, err := c.do(ctx, http.MethodPost, PathSend, body, DefaultRequestTimeout)
	if err != nil {
		c.failed(ctx, Failure{Op: OpSend, Reason: ReasonUnreachable, Err: err})
		return transport.ErrUnreachable
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		c.reached()
		return nil
	}
	f := answerFailure(OpSend, resp)
	c.failed(ctx, f)
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		c.unauthorized(ctx, sent, f.Reason)
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestEntityTooLarge || resp.StatusCode == http.StatusUnsupportedMediaType:
		return ErrRefused
	}
	return transport.ErrUnreachable
}

// do sends one request with the device's identity; it returns the key it
// presented.
func (c *Client) do(ctx context.Context, method, path string, body []byte, timeout time.Duration) (*http.Response, Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	var rd io.Reader
	gz := false
	if body != nil {
		if len(body) >= gzipMin && !c.cfg.NoCompress {
			// The transport may read the body after Do returns (and
			// again on a retry): it gets its own copy.
			z, done := gzipped(body)
			body, gz = bytes.Clone(z), true
			done()
		}
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		cancel()
		return nil, "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set(HeaderDevice, string(c.cfg.Device))
	c.mu.Lock()
	key := c.key
	c.mu.Unlock()
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+string(key))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		cancel()
		return nil, key, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, key, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error { err := b.ReadCloser.Close(); b.cancel(); return err }

// readAnswer reads a JSON answer of at most limit bytes, decompressed.
func readAnswer(resp *http.Response, limit int64, v any) error {
	body := io.Reader(io.LimitReader(resp.Body, limit+1))
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			return errs.Invalid("answer", "", "is not gzip")
		}
		defer zr.Close()
		body = zr
	}
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return err
	}
	if int64(len(b)) > limit {
		return errs.Invalid("answer", "", fmt.Sprintf("is larger than %d bytes", limit))
	}
	return json.Unmarshal(b, v)
}

// unauthorized handles a 401 to a request that presented the key sent:
// a client with an EnrollSecret enrolls again, unless it holds another
// key by now (enrolled or rotated meanwhile), another enrollment is under
// way, or its last enrollment since the last accepted request was less
// than a backoff ago (Backoff of the number of such enrollments): so a
// failed enrollment (its answer lost, the server busy) is tried again
// until the device gets in, without a storm of enrollments.
func (c *Client) unauthorized(ctx context.Context, sent Secret, reason string) {
	now := c.clk.Now()
	c.mu.Lock()
	try := c.cfg.EnrollSecret != "" && !c.enrolling && c.key == sent && !now.Before(c.enrollAfter)
	if try {
		c.enrolling = true
	}
	c.mu.Unlock()
	if !try {
		return
	}
	c.log.Info().Str("device", clipID(c.cfg.Device)).Str("reason", reason).Msg("httptransport: the server refused this device's identity; enrolling again with the enrollment secret")
	err := c.enrollUnless(ctx, sent)
	c.mu.Lock()
	c.enrollTries++
	n := c.enrollTries
	c.mu.Unlock()
	d := c.Backoff(n)
	c.mu.Lock()
	c.enrolling = false
	c.enrollAfter = c.clk.Now().Add(d)
	c.mu.Unlock()
	if err != nil {
		c.log.Info().Str("device", clipID(c.cfg.Device)).Err(err).Dur("next_try_in", d).Msg("httptransport: enrollment failed; another try at a later refusal, after the backoff")
	}
}

// Enroll obtains a key for the device with the EnrollSecret, saves it
// with SaveKey and uses it. Errors: ErrBadSecret, ErrRevoked,
// ErrEnrolled, ErrRateLimited, ErrInvalid, or ErrUnreachable when the
// server cannot be reached.
func (c *Client) Enroll(ctx context.Context) error {
	c.enrollMu.Lock()
	defer c.enrollMu.Unlock()
	return c.enroll(ctx)
}

// enrollUnless enrolls unless the device's key is no longer seen: another
// goroutine (the poll loop, or a Send refused with 401) enrolled or
// rotated meanwhile, and enrolling again would replace a key that may be
// in use already.
func (c *Client) enrollUnless(ctx context.Context, seen Secret) error {
	c.enrollMu.Lock()
	defer c.enrollMu.Unlock()
	c.mu.Lock()
	cur := c.key
	c.mu.Unlock()
	if cur != seen {
		return nil
	}
	return c.enroll(ctx)
}

func (c *Client) enroll(ctx context.Context) error {
	if c.cfg.EnrollSecret == "" {
		return errs.Invalid("EnrollSecret", "", "is required to enroll")
	}
	body, _ := json.Marshal(EnrollRequest{Device: c.cfg.Device, Secret: string(c.cfg.EnrollSecret)})
	resp, _, err := c.do(ctx, http.MethodPost, PathEnroll, body, DefaultRequestTimeout)
	if err != nil {
		c.failed(ctx, Failure{Op: OpEnroll, Reason: ReasonUnreachable, Err: err})
		return fmt.Errorf("httptransport: enroll: %w (%w)", transport.ErrUnreachable, err)
	}
	return c.takeKey(ctx, OpEnroll, resp)
}

// Rotate asks the server for a new key, saves it with SaveKey and uses
// it. Errors: ErrUnauthenticated, ErrUnreachable, or SaveKey's error.
func (c *Client) Rotate(ctx context.Context) error {
	c.enrollMu.Lock()
	defer c.enrollMu.Unlock()
	resp, _, err := c.do(ctx, http.MethodPost, PathRotate, nil, DefaultRequestTimeout)
	if err != nil {
		c.failed(ctx, Failure{Op: OpRotate, Reason: ReasonUnreachable, Err: err})
		return transport.ErrUnreachable
	}
	if err := c.takeKey(ctx, OpRotate, resp); err != nil {
		return err
	}
	c.mu.Lock()
	c.rotatedAt = c.clk.Now()
	c.mu.Unlock()
	return nil
}

// takeKey reads the answer of an enrollment or rotation (op) and, for a
// key, saves it (SaveKey) and uses it.
func (c *Client) takeKey(ctx context.Context, op string, resp *http.Response) error {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		f := answerFailure(op, resp)
		c.failed(ctx, f)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			if f.Reason == ReasonBadSecret {
				return ErrBadSecret
			}
			return &AuthError{Device: c.cfg.Device, Reason: f.Reason}
		case http.StatusForbidden:
			if f.Reason == ReasonNotKnown {
				return ErrNotKnown
			}
			return ErrRevoked
		case http.StatusConflict:
			return ErrEnrolled
		case http.StatusTooManyRequests:
			return ErrRateLimited
		case http.StatusBadRequest:
			return errs.Invalid("device", clipID(c.cfg.Device), "refused by the server")
		}
		return fmt.Errorf("httptransport: %s: %s: %w", op, f.Kind(), transport.ErrUnreachable)
	}
	var a KeyAnswer
	if err := readAnswer(resp, 4096, &a); err != nil || a.Key == "" {
		c.failed(ctx, Failure{Op: op, Status: resp.StatusCode, Reason: ReasonBadAnswer, Err: err})
		return fmt.Errorf("httptransport: a key answer that is not one: %w", transport.ErrUnreachable)
	}
	key := Secret(a.Key)
	if c.cfg.SaveKey != nil {
		if err := c.cfg.SaveKey(ctx, key); err != nil {
			c.failed(ctx, Failure{Op: op, Status: resp.StatusCode, Reason: ReasonSaveKey, Err: err})
			return fmt.Errorf("httptransport: save key: %w", err)
		}
	}
	c.mu.Lock()
	c.key = key
	c.st.Enrollments++
	c.st.Consecutive = 0
	c.mu.Unlock()
	return nil
}

// Run polls the server and hands every message it answers to h, one at
// a time, until ctx is done (it then returns ctx.Err()).
//
// Long polls by default: a poll is held by the server until it has a
// message for the device (then answered at once) or for Wait. With
// CheckIn set, the client polls without waiting every CheckIn instead.
//
// Reconnect: after a failed poll (no connection, a server error, a 401)
// the client waits a jittered exponential backoff, a random time between
// half and all of min(BackoffMax, BackoffMin × 2ⁿ⁻¹) after the n-th
// failure in a row, so devices coming back after a server restart spread
// out; a successful poll resets it. Meanwhile Send returns
// ErrUnreachable and the agent keeps its outbox.
//
// On 401 (revoked, expired, replaced or unknown key): the reason is
// logged at info level; a client with an EnrollSecret enrolls again (a
// new key, saved with SaveKey) and goes on with it. When that enrollment
// fails (its answer lost, the server busy or rate limiting, a revoked
// device that cannot enroll) the client keeps polling with backoff and
// enrolls again at a later 401, each time after a longer backoff (Backoff
// of the number of enrollments since the last accepted request), so a
// device that holds the secret gets in once the server is healthy, and a
// refused one costs the server one enrollment per BackoffMax at most.
// Without a secret it keeps polling with backoff until an operator lets
// the device back in. A client without a Key but with an EnrollSecret
// enrolls first, with backoff until it has a key.
//
// Every failure is counted and reported (Status, OnFailure, and the
// Logger, see WarnEvery) with its HTTP status and the server's reason.
func (c *Client) Run(ctx context.Context, h transport.Handler) error {
	failures := 0
	c.mu.Lock()
	need := c.key == "" && c.cfg.EnrollSecret != ""
	c.mu.Unlock()
	for ctx.Err() == nil {
		if need {
			if err := c.enrollUnless(ctx, ""); err != nil {
				failures++
				c.sleep(ctx, c.Backoff(failures))
				continue
			}
			need = false
		}
		c.maybeRotate(ctx)
		msgs, err := c.poll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			c.sleep(ctx, c.Backoff(failures))
			continue
		}
		failures = 0
		for _, m := range msgs {
			h.Handle(ctx, m)
		}
		if c.cfg.CheckIn > 0 && len(msgs) == 0 {
			c.sleep(ctx, c.cfg.CheckIn)
		}
	}
	return ctx.Err()
}

func (c *Client) maybeRotate(ctx context.Context) {
	if c.cfg.RotateEvery <= 0 {
		return
	}
	c.mu.Lock()
	due := c.key != "" && c.clk.Since(c.rotatedAt) >= c.cfg.RotateEvery
	c.mu.Unlock()
	if !due {
		return
	}
	if err := c.Rotate(ctx); err != nil {
		c.log.Info().Str("device", clipID(c.cfg.Device)).Err(err).Msg("httptransport: key rotation failed; retrying at the next poll")
	} else {
		c.log.Info().Str("device", clipID(c.cfg.Device)).Msg("httptransport: key rotated")
	}
}

// Backoff returns the reconnect delay after the n-th failure in a row
// (n ≥ 1): uniformly random between half and all of min(BackoffMax,
// BackoffMin × 2ⁿ⁻¹).
func (c *Client) Backoff(n int) time.Duration {
	d := c.cfg.BackoffMax
	if n < 1 {
		n = 1
	}
	if n < 40 {
		if e := c.cfg.BackoffMin << (n - 1); e > 0 && e < d {
			d = e
		}
	}
	c.mu.Lock()
	j := time.Duration(c.rnd.Int64N(int64(d/2) + 1))
	c.mu.Unlock()
	return d/2 + j
}

func (c *Client) sleep(ctx context.Context, d time.Duration) {
	t := c.clk.Timer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// poll makes one poll and returns the messages of its answer.
func (c *Client) poll(ctx context.Context) ([]transport.Message, error) {
	wait := c.cfg.Wait
	if c.cfg.CheckIn > 0 {
		wait = 0
	}
	resp, sent, err := c.do(ctx, http.MethodGet, PathPoll+"?wait="+strconv.Itoa(int(wait/time.Second)), nil, wait+DefaultRequestTimeout)
	if err != nil {
		c.failed(ctx, Failure{Op: OpPoll, Reason: ReasonUnreachable, Err: err})
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		f := answerFailure(OpPoll, resp)
		c.failed(ctx, f)
		if resp.StatusCode == http.StatusUnauthorized {
			c.unauthorized(ctx, sent, f.Reason)
			return nil, &AuthError{Device: c.cfg.Device, Reason: f.Reason}
		}
		return nil, f
	}
	c.reached()
	var msgs []transport.Message
	if err := readAnswer(resp, MaxPollBytes+transport.MaxMessageBytes, &msgs); err != nil {
		c.failed(ctx, Failure{Op: OpPoll, Status: resp.StatusCode, Reason: ReasonBadAnswer, Err: err})
		return nil, err
	}
	return msgs, nil
}
