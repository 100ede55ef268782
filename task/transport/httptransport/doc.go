// Package httptransport is the device channel over HTTPS: a vendor
// imports it to connect the Administration Server runtime (package
// task/engine) with device agents (package task/agent) over the network.
// It speaks the wire protocol of package task/transport (Encode, Decode,
// MaxMessageBytes) on standard library net/http, with HTTP/2 and TLS 1.3.
//
// # Server
//
// Server is an http.Handler the host mounts in its own http.Server
// (serve it with ServerTLS's configuration, so TLS 1.3 and HTTP/2) and the
// engine's transport.ServerEndpoint:
//
//	enr, _ := httptransport.NewEnrollment(httptransport.EnrollmentConfig{Secret: secret, Keys: keys})
//	ch, _ := httptransport.NewServer(httptransport.ServerConfig{Identity: enr})
//	ch.Attach(eng)                 // the engine handles device messages
//	_ = eng.Open(ctx, manager, ch) // and sends through the channel
//	hs := &http.Server{Handler: ch, TLSConfig: httptransport.ServerTLS(cert, nil)}
//	go hs.ListenAndServeTLS("", "")
//
// It answers, relative to where it is mounted:
//
//   - POST /v1/send: one transport.Message from the device (gzip allowed).
//     The body is read up to transport.MaxMessageBytes, compressed and
//     decompressed (a zip bomb gets 413 after MaxMessageBytes of output);
//     400 for a body that is not a message, 415 for an unknown
//     Content-Encoding. The message's Device is replaced by the
//     authenticated device before the engine sees it, so a device can
//     never act as another; what it says about other devices inside is
//     rejected item by item by the engine (package task/engine, "Device
//     input"). 204 when handed over.
//   - GET /v1/poll?wait=SECONDS: the long poll. The answer (a JSON array
//     of messages, gzipped when the device accepts it and it is 1 KiB or
//     more, at most MaxPollBytes unless one message is larger) comes as
//     soon as something is queued for the device, or empty after wait
//     seconds (at most ServerConfig.MaxWait, DefaultMaxWait 30 s). A
//     device holds one poll: a newer poll of the same device answers the
//     held one 409 at once (an agent polls one at a time, so the older
//     poll is a leftover of a dropped connection, or a second agent with
//     the same identity, which then backs off). A poll whose request
//     ended takes nothing; it is let go at its deadline, at the device's
//     next poll or when something is queued for the device.
//   - POST /v1/enroll, POST /v1/rotate: the enrollment identity (below).
//
// Every request is authenticated before its body is read; one without a
// valid identity gets 401 with the reason in the Taskfleet-Auth-Error
// header and changes nothing. One whose identity cannot be checked (the
// Identity failed, e.g. its key store) gets 503 with Retry-After: the
// device retries with backoff and does not enroll again.
//
// Send queues a message for a device that polled or sent within
// ServerConfig.ConnectedFor (Connected reports it; a host mirrors it into
// its inventory's Connected flag) and returns transport.ErrUnreachable
// for the others; a held poll is answered at once. Each device's queue
// holds at most MaxQueue messages. Messages taken by a poll whose answer
// is lost are lost: the runtimes resend what matters (package
// task/transport, "Delivery and retries"). Device messages reach the
// Handler one at a time.
//
// # Identity
//
// Identity is the one small interface behind which a device is
// authenticated. Two implementations:
//
//   - MTLS: the host's TLS configuration verifies client certificates
//     against the fleet's CA (ServerTLS with clientCAs) and a host
//     function maps the verified certificate to a device id (CommonName
//     is one).
//   - Enrollment: a device presents the fleet's enrollment secret once
//     (POST /v1/enroll {"device","secret"}) and receives a per-device key
//     (256 random bits), which it presents on every request afterwards
//     (Taskfleet-Device: ID and Authorization: Bearer KEY), the model of
//     osquery's TLS API and Fleet's node keys. The server stores only the
//     key's SHA-256 (KeyRecord, in a KeyStore: MemKeyStore in memory,
//     lost with the process so that every device enrolls again after a
//     restart; StoreKeys on a storage.DeviceKeyStore such as sqlstore,
//     SQLite or PostgreSQL, durable, so a restart needs no enrollment;
//     or the host's own) and compares in constant time. Enrollments
//     are rate limited (EnrollmentConfig.Rate and Burst, 429 beyond). A
//     device that holds a valid key it has used cannot enroll again (409)
//     unless AllowReenroll: the secret alone never takes an established
//     device's identity over. Until its key first authenticates a
//     request, a device may enroll again (the answer to its enrollment
//     may have been lost), which replaces the unused key. Revoke refuses
//     a key at once (401 "revoked") and blocks re-enrollment until Reset;
//     a device rotates its key with POST /v1/rotate (Client.Rotate,
//     ClientConfig.RotateEvery), the key it holds staying valid until the
//     new one is first used, however many rotation answers were lost, and
//     the device staying established meanwhile; keys expire after KeyTTL
//     (on the injected clock).
//
// A refused enrollment says why in the Taskfleet-Auth-Error header: 401
// bad_secret, 403 revoked or not_known (EnrollmentConfig.Known refused
// it), 409 already_enrolled, 429 rate_limited, and 503 unavailable (with
// Retry-After) when the key store failed: that refuses nothing, the
// device tries again.
//
// Keys and secrets are of type Secret, which prints as "[redacted]": they
// never appear in logs or errors.
//
// # Client
//
// Client is the agent's transport.DeviceEndpoint (Send) and the loop that
// receives the server's messages (Run):
//
//	c, _ := httptransport.NewClient(httptransport.ClientConfig{URL: url, Device: id, Key: key, EnrollSecret: secret, SaveKey: save})
//	a.Attach(c)
//	go c.Run(ctx, a) // polls and hands messages to the agent
//	_ = a.Run(ctx, time.Second)
//
// Delivery: by default the client long-polls (ClientConfig.Wait,
// DefaultWait 25 s), so a start reaches a connected device as soon as the
// engine sends it. An agent that cannot hold a connection (a proxy that
// cuts idle requests, a metered link) sets ClientConfig.CheckIn: it then
// polls without waiting every CheckIn (DefaultCheckIn, 1 minute, is the
// documented interval), and a start reaches it within one check-in
// interval; the server keeps it connected for ConnectedFor (by default two
// check-in intervals plus MaxWait).
//
// Reconnect: after a failed poll the client waits a jittered exponential
// backoff (between half and all of min(BackoffMax, BackoffMin × 2ⁿ⁻¹)
// after the n-th failure in a row; DefaultBackoffMin 1 s,
// DefaultBackoffMax 2 minutes), so devices coming back after a server
// restart spread out instead of arriving in the same second. Meanwhile
// Send returns transport.ErrUnreachable and the agent keeps its outbox.
//
// On 401 the client logs the reason at info level. With an EnrollSecret
// it enrolls again (a new key, saved with SaveKey) and carries on with
// it. An enrollment can fail without the device being refused: its answer
// lost after the server issued the key (the connection broke, the request
// timed out under load), the server busy (503) or rate limiting (429). So
// a later 401 enrolls again, after a backoff that grows with the
// enrollments since the last accepted request (Backoff of their number):
// a device that holds the secret gets in once the server is healthy, and
// a refused one (revoked, not known) costs the server at most one
// enrollment per BackoffMax. A 401 enrolls only when the refused request
// carried the key the client still holds, and Send sends nothing before
// the client has a key: an answer to an old request never replaces a
// newer key. Without a secret the client keeps polling with backoff until
// an operator lets the device back in (Reset, then the device enrolls
// again).
//
// Failures are visible to the host. Each failed exchange is a Failure:
// the operation (enroll, rotate, poll, send), the HTTP status (0: no
// answer) and the reason (the server's reason code, or the client's:
// unreachable, not_enrolled, bad_answer …); never a key or secret. The
// client counts them (Client.Status: last accepted request, failures in
// all and in a row, the last one), hands each to ClientConfig.OnFailure
// if set, and logs them: at warn level at most once per
// ClientConfig.WarnEvery (DefaultWarnEvery, a minute) with the number of
// failures since the last warning, else at debug level, and at info level
// when the device gets through again after a warning. A device that the
// server keeps refusing is so never out without a trace.
//
// Compression: the client gzips request bodies of 1 KiB or more and
// accepts gzipped answers, which it decompresses up to their limits
// (MaxPollBytes plus one message for a poll).
//
// Clients of many simulated devices can share one http.Client
// (ClientConfig.HTTPClient), and so its HTTP/2 connections: each request
// still carries its own device's identity.
//
// # Time
//
// The injected clock (clock.Clock) drives what is policy: key expiry, the
// enrollment rate limit, presence, the client's backoff, check-ins and
// rotation. The HTTP timeouts and the poll's hold use real time.
//
// # Errors
//
// ErrUnauthenticated (every *AuthError), ErrBadSecret, ErrRevoked,
// ErrNotKnown, ErrEnrolled (an ErrConflict), ErrRateLimited, ErrRefused
// (an ErrInvalid), Failure (a client's failed exchange), and the shared
// ErrInvalid, ErrNotFound, ErrConflict.
//
// # Holding many polls
//
// A held poll costs the server a goroutine and net/http's HTTP/2 stream
// state, and this package next to nothing: BenchmarkHeldPoll measures
// about 11 KiB of live memory per held poll over HTTP/2 and TLS 1.3, of
// which 4 KiB is net/http's response buffer for the stream and 4 KiB the
// handler goroutine's stack, both fixed; the rest is the request, its
// headers and the stream (the package's own share: one channel, one
// timer and the device's entry, about 0.5 KiB). The garbage collector's
// default headroom (GOGC=100) lets the process grow to about twice its
// live memory, so a host holding 100,000 polls in a bounded amount of
// memory sets a soft limit (GOMEMLIMIT, or debug.SetMemoryLimit) a few
// hundred MiB above its live memory; the collector then runs more often
// instead of growing. Polls are streams: agents behind one connection
// (a simulator, a gateway) need http.Server's HTTP2.MaxConcurrentStreams
// at least as large as the polls they hold on it (default 250). Polls
// carry no body, so the per-stream receive windows cost nothing.
//
// # Load
//
// examples/fleetload runs one server process and many simulated agents in
// separate processes over HTTPS on loopback, and measures delivery,
// steady state and a server kill, and counts the agents' failures by
// kind; bench/README.md has its figures.
package httptransport
