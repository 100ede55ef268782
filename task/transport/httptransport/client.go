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
	Clock  clock.Clock
	Logger zerolog.Logger
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
	// Compress gzips request bodies of at least 1 KiB (default on; set
	// NoCompress to turn it off for a server that refuses gzip).
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
	enrollMu   sync.Mutex
	mu         sync.Mutex
	key        Secret
	reenrolled bool // re-enrolled since the last authenticated request
	enrolling  bool
	rotatedAt  time.Time
	rnd        *rand.Rand
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
// refuses as malformed (ErrRefused). A 401 starts the re-enrollment
// described at Run.
func (c *Client) Send(ctx context.Context, m transport.Message) error {
	if m.Version == 0 {
		m.Version = transport.ProtocolVersion
	}
	body, err := transport.Encode(m)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPost, PathSend, body, DefaultRequestTimeout)
	if err != nil {
		return transport.ErrUnreachable
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		c.authenticated()
		return nil
	case resp.StatusCode == http.StatusUnauthorized:
		c.unauthorized(ctx, resp.Header.Get(HeaderAuthError))
		return transport.ErrUnreachable
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestEntityTooLarge || resp.StatusCode == http.StatusUnsupportedMediaType:
		return ErrRefused
	}
	return transport.ErrUnreachable
}

// do sends one request with the device's identity.
func (c *Client) do(ctx context.Context, method, path string, body []byte, timeout time.Duration) (*http.Response, error) {
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
		return nil, err
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
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
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

func (c *Client) authenticated() {
	c.mu.Lock()
	c.reenrolled = false
	c.mu.Unlock()
}

// unauthorized handles a 401: the reason is logged at info level, and the
// client re-enrolls once with its EnrollSecret, if it has one, until a
// request is authenticated again.
func (c *Client) unauthorized(ctx context.Context, reason string) {
	c.mu.Lock()
	try := c.cfg.EnrollSecret != "" && !c.reenrolled && !c.enrolling
	if try {
		c.reenrolled, c.enrolling = true, true
	}
	seen := c.key
	c.mu.Unlock()
	if !try {
		c.log.Info().Str("device", clipID(c.cfg.Device)).Str("reason", reason).Msg("httptransport: the server refused this device's identity; retrying with backoff")
		return
	}
	c.log.Info().Str("device", clipID(c.cfg.Device)).Str("reason", reason).Msg("httptransport: the server refused this device's identity; enrolling again with the enrollment secret")
	err := c.enrollUnless(ctx, seen)
	c.mu.Lock()
	c.enrolling = false
	c.mu.Unlock()
	if err != nil {
		c.log.Info().Str("device", clipID(c.cfg.Device)).Err(err).Msg("httptransport: enrollment failed; retrying with backoff")
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
	resp, err := c.do(ctx, http.MethodPost, PathEnroll, body, DefaultRequestTimeout)
	if err != nil {
		return fmt.Errorf("httptransport: enroll: %w (%w)", transport.ErrUnreachable, err)
	}
	return c.takeKey(ctx, resp)
}

// Rotate asks the server for a new key, saves it with SaveKey and uses
// it. Errors: ErrUnauthenticated, ErrUnreachable, or SaveKey's error.
func (c *Client) Rotate(ctx context.Context) error {
	c.enrollMu.Lock()
	defer c.enrollMu.Unlock()
	resp, err := c.do(ctx, http.MethodPost, PathRotate, nil, DefaultRequestTimeout)
	if err != nil {
		return transport.ErrUnreachable
	}
	if err := c.takeKey(ctx, resp); err != nil {
		return err
	}
	c.mu.Lock()
	c.rotatedAt = c.clk.Now()
	c.mu.Unlock()
	return nil
}

func (c *Client) takeKey(ctx context.Context, resp *http.Response) error {
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		if resp.Header.Get(HeaderAuthError) == "bad_secret" {
			return ErrBadSecret
		}
		return &AuthError{Device: c.cfg.Device, Reason: resp.Header.Get(HeaderAuthError)}
	case http.StatusForbidden:
		return ErrRevoked
	case http.StatusConflict:
		return ErrEnrolled
	case http.StatusTooManyRequests:
		return ErrRateLimited
	case http.StatusBadRequest:
		return errs.Invalid("device", clipID(c.cfg.Device), "refused by the server")
	default:
		return fmt.Errorf("httptransport: %s: %w", resp.Status, transport.ErrUnreachable)
	}
	var a KeyAnswer
	if err := readAnswer(resp, 4096, &a); err != nil || a.Key == "" {
		return fmt.Errorf("httptransport: a key answer that is not one: %w", transport.ErrUnreachable)
	}
	key := Secret(a.Key)
	if c.cfg.SaveKey != nil {
		if err := c.cfg.SaveKey(ctx, key); err != nil {
			return fmt.Errorf("httptransport: save key: %w", err)
		}
	}
	c.mu.Lock()
	c.key = key
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
// On 401 (revoked, expired or unknown key): the reason is logged at info
// level; a client with an EnrollSecret enrolls again once (a new key,
// saved with SaveKey) and goes on with it; without a secret, or when
// that enrollment fails (a revoked device cannot enroll), it keeps
// polling with backoff, logging each refusal, until an operator lets the
// device back in. A client without a Key but with an EnrollSecret
// enrolls first.
func (c *Client) Run(ctx context.Context, h transport.Handler) error {
	failures := 0
	c.mu.Lock()
	need := c.key == "" && c.cfg.EnrollSecret != ""
	c.mu.Unlock()
	for ctx.Err() == nil {
		if need {
			if err := c.enrollUnless(ctx, ""); err != nil {
				c.log.Info().Str("device", clipID(c.cfg.Device)).Err(err).Msg("httptransport: enrollment failed; retrying with backoff")
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
			c.log.Debug().Str("device", clipID(c.cfg.Device)).Err(err).Int("failures", failures).Msg("httptransport: poll failed")
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
	resp, err := c.do(ctx, http.MethodGet, PathPoll+"?wait="+strconv.Itoa(int(wait/time.Second)), nil, wait+DefaultRequestTimeout)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		reason := resp.Header.Get(HeaderAuthError)
		c.unauthorized(ctx, reason)
		return nil, &AuthError{Device: c.cfg.Device, Reason: reason}
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("httptransport: poll: %s", resp.Status)
	}
	c.authenticated()
	var msgs []transport.Message
	if err := readAnswer(resp, MaxPollBytes+transport.MaxMessageBytes, &msgs); err != nil {
		return nil, err
	}
	return msgs, nil
}
