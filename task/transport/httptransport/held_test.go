package httptransport_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport/testpki"
)

// HTTP/2 frame types and flags the bare client below uses (RFC 9113).
const (
	h2Data, h2Headers, h2RSTStream, h2Settings, h2Ping, h2GoAway, h2WindowUpdate = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8
	h2EndStream, h2Ack, h2EndHeaders                                             = 0x1, 0x1, 0x4
)

// h2conn is a bare HTTP/2 client connection: it opens each stream with
// one HEADERS frame and keeps nothing per stream but a slot in a
// preallocated slice, so that a benchmark in the same process as the
// server measures the server's cost of a held poll, not a client's (Go's
// own client runs goroutines per request).
type h2conn struct {
	c    *tls.Conn
	host string

	wmu  sync.Mutex
	next uint32 // next stream id

	mu      sync.Mutex
	answers chan h2answer // a stream's response HEADERS arrived
	err     error
}

type h2answer struct {
	stream uint32
	status string // the :status, when the server sent it literally or indexed
	at     time.Time
}

// dialH2 connects to addr with TLS (ALPN h2) and sends the preface.
func dialH2(addr string, roots *tls.Config) (*h2conn, error) {
	cfg := roots.Clone()
	cfg.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		c.Close()
		return nil, fmt.Errorf("negotiated %q, want h2", p)
	}
	h := &h2conn{c: c, host: addr, next: 1, answers: make(chan h2answer, 1<<12)}
	if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	// Our SETTINGS: a large connection and stream window, so the server
	// never waits for us.
	settings := binary.BigEndian.AppendUint16(nil, 0x4) // SETTINGS_INITIAL_WINDOW_SIZE
	settings = binary.BigEndian.AppendUint32(settings, 1<<30)
	if err := h.frame(h2Settings, 0, 0, settings); err != nil {
		c.Close()
		return nil, err
	}
	if err := h.frame(h2WindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, 1<<30)); err != nil {
		c.Close()
		return nil, err
	}
	go h.read()
	return h, nil
}

func (h *h2conn) frame(typ, flags byte, stream uint32, payload []byte) error {
	b := make([]byte, 9, 9+len(payload))
	b[0], b[1], b[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	b[3], b[4] = typ, flags
	binary.BigEndian.PutUint32(b[5:], stream)
	b = append(b, payload...)
	h.wmu.Lock()
	defer h.wmu.Unlock()
	_, err := h.c.Write(b)
	return err
}

// hpackString appends a string literal without Huffman coding.
func hpackString(b []byte, s string) []byte { return hpackInt(b, 7, 0, len(s)) }

// hpackInt appends v with an n-bit prefix, the prefix byte's high bits
// being first (RFC 7541 5.1).
func hpackInt(b []byte, n uint, first byte, v int) []byte {
	max := 1<<n - 1
	if v < max {
		return append(b, first|byte(v))
	}
	b = append(b, first|byte(max))
	for v -= max; v >= 128; v >>= 7 {
		b = append(b, byte(v%128+128))
	}
	return append(b, byte(v))
}

// poll opens a stream: GET /v1/poll?wait=SECONDS as device, with the
// headers the package's Client sends. It returns the stream id.
func (h *h2conn) poll(device transport.DeviceID, key httptransport.Secret, wait int) (uint32, error) {
	var blk []byte
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", h.host},
		{":path", httptransport.PathPoll + "?wait=" + strconv.Itoa(wait)}, {"accept-encoding", "gzip"},
		{"taskfleet-device", string(device)}, {"authorization", "Bearer " + string(key)}, {"user-agent", "Go-http-client/2.0"}} {
		blk = append(blk, 0x00) // literal without indexing, new name
		blk = append(hpackString(blk, f[0]), f[0]...)
		blk = append(hpackString(blk, f[1]), f[1]...)
	}
	// Stream ids must reach the server in increasing order: allocate and
	// write under one lock.
	h.wmu.Lock()
	defer h.wmu.Unlock()
	id := h.next
	h.next += 2
	b := make([]byte, 9, 9+len(blk))
	b[0], b[1], b[2] = byte(len(blk)>>16), byte(len(blk)>>8), byte(len(blk))
	b[3], b[4] = h2Headers, h2EndHeaders|h2EndStream
	binary.BigEndian.PutUint32(b[5:], id)
	b = append(b, blk...)
	_, err := h.c.Write(b)
	return id, err
}

// read answers SETTINGS and PING, returns flow-control credit and reports
// each stream's response HEADERS.
func (h *h2conn) read() {
	hdr := make([]byte, 9)
	buf := make([]byte, 1<<14)
	for {
		if _, err := io.ReadFull(h.c, hdr); err != nil {
			h.fail(err)
			return
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		typ, flags, stream := hdr[3], hdr[4], binary.BigEndian.Uint32(hdr[5:])&0x7fffffff
		if n > len(buf) {
			buf = make([]byte, n)
		}
		p := buf[:n]
		if _, err := io.ReadFull(h.c, p); err != nil {
			h.fail(err)
			return
		}
		var err error
		switch typ {
		case h2Settings:
			if flags&h2Ack == 0 {
				err = h.frame(h2Settings, h2Ack, 0, nil)
			}
		case h2Ping:
			if flags&h2Ack == 0 {
				err = h.frame(h2Ping, h2Ack, 0, p)
			}
		case h2Data:
			if n > 0 {
				err = h.frame(h2WindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, uint32(n)))
			}
		case h2Headers:
			st := ""
			// The server's first header is :status, indexed (0x88 is 200,
			// 0x89 204, …) or literal.
			if len(p) > 0 && p[0]&0x80 != 0 {
				st = map[byte]string{0x88: "200", 0x89: "204", 0x8a: "206", 0x8b: "304", 0x8c: "400", 0x8d: "404", 0x8e: "500"}[p[0]]
			}
			select {
			case h.answers <- h2answer{stream: stream, status: st, at: time.Now()}:
			default:
			}
		case h2GoAway:
			h.fail(fmt.Errorf("GOAWAY %x", p))
			return
		case h2RSTStream:
			h.fail(fmt.Errorf("RST_STREAM on stream %d: %x", stream, p))
		}
		if err != nil {
			h.fail(err)
			return
		}
	}
}

func (h *h2conn) fail(err error) {
	h.mu.Lock()
	if h.err == nil {
		h.err = err
	}
	h.mu.Unlock()
}

func (h *h2conn) failed() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// heldFixture is a Server behind TLS 1.3 and HTTP/2 as a host mounts it
// (ServerTLS, a stream limit for n polls over conns connections), n
// enrolled devices
// and conns bare HTTP/2 connections to it.
type heldFixture struct {
	srv   *httptransport.Server
	hs    *http.Server
	ids   []transport.DeviceID
	keys  []httptransport.Secret
	conns []*h2conn
}

func newHeldFixture(tb testing.TB, n, conns int) *heldFixture {
	tb.Helper()
	ctx := context.Background()
	enr, err := httptransport.NewEnrollment(httptransport.EnrollmentConfig{Secret: secret, Rate: 1e9, Burst: 1 << 30})
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := httptransport.NewServer(httptransport.ServerConfig{Identity: enr, MaxWait: time.Minute})
	if err != nil {
		tb.Fatal(err)
	}
	srv.Attach(transport.HandlerFunc(func(context.Context, transport.Message) {}))
	f := &heldFixture{srv: srv, ids: make([]transport.DeviceID, n), keys: make([]httptransport.Secret, n)}
	for i := range n {
		f.ids[i] = transport.DeviceID(fmt.Sprintf("dev-%06d", i))
		if f.keys[i], err = enr.Enroll(ctx, f.ids[i], secret); err != nil {
			tb.Fatal(err)
		}
	}
	ca, err := testpki.New(time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := ca.Server(time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f.hs = &http.Server{Handler: srv, TLSConfig: httptransport.ServerTLS(cert, nil), ReadHeaderTimeout: 10 * time.Second,
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: (n+conns-1)/conns + 10}}
	go func() { _ = f.hs.ServeTLS(ln, "", "") }()
	tb.Cleanup(func() { _ = f.hs.Close() })
	for range conns {
		c, err := dialH2(ln.Addr().String(), &tls.Config{RootCAs: ca.Pool})
		if err != nil {
			tb.Fatal(err)
		}
		f.conns = append(f.conns, c)
	}
	return f
}

// holdAll opens a poll for every device (device i on connection i %
// conns) and waits until the server holds them all.
func (f *heldFixture) holdAll(tb testing.TB) {
	tb.Helper()
	var wg sync.WaitGroup
	errc := make(chan error, len(f.conns))
	for k, c := range f.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; i < len(f.ids); i += len(f.conns) {
				if _, err := c.poll(f.ids[i], f.keys[i], 60); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		tb.Fatal(err)
	}
	f.waitPolling(tb, int64(len(f.ids)))
}

func (f *heldFixture) waitPolling(tb testing.TB, n int64) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for f.srv.Stats().Polling != n {
		for _, c := range f.conns {
			if err := c.failed(); err != nil {
				tb.Fatal(err)
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d polls held, want %d", f.srv.Stats().Polling, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// release answers every held poll (a message for each device) and waits
// until none is held.
func (f *heldFixture) release(tb testing.TB) {
	tb.Helper()
	for _, id := range f.ids {
		if err := f.srv.Send(context.Background(), transport.Message{Kind: transport.Heartbeat, Device: id, Key: "release"}); err != nil {
			tb.Fatal(err)
		}
	}
	f.waitPolling(tb, 0)
	for _, c := range f.conns {
		for len(c.answers) > 0 {
			<-c.answers
		}
	}
}

// liveBytes is the heap in use and the goroutine stacks after
// collections (three: stacks shrink at a collection, by half each).
func liveBytes() (heap, stack uint64) {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.StackInuse
}

// BenchmarkHeldPoll: the server's memory per held poll, over HTTP/2 and
// TLS 1.3 as fleetload and a host serve it: 10,000 devices' polls held
// on 10 connections (bare HTTP/2 clients, so the client side costs next
// to nothing), the growth of the live heap and of the goroutine stacks
// from before the polls, per poll. The goal is 12 KiB per held poll
// (100,000 in well under 2 GiB, garbage included).
func BenchmarkHeldPoll(b *testing.B) {
	const n, conns = 10000, 10
	f := newHeldFixture(b, n, conns)
	var heap, stack float64
	for range b.N {
		h0, s0 := liveBytes()
		f.holdAll(b)
		h1, s1 := liveBytes()
		heap += float64(int64(h1) - int64(h0))
		stack += float64(int64(s1) - int64(s0))
		f.release(b)
	}
	b.ReportMetric(heap/float64(b.N*n), "heap-B/poll")
	b.ReportMetric(stack/float64(b.N*n), "stack-B/poll")
	b.ReportMetric((heap+stack)/float64(b.N*n), "B/poll")
}

// BenchmarkHeldPollWake: the server's latency from Send to the answer's
// HEADERS frame on the wire, for one device while 10,000 polls are held:
// the wake-up path of a start (authentication and the engine are not in
// it). Each iteration wakes one device and opens its next poll.
func BenchmarkHeldPollWake(b *testing.B) {
	const n, conns = 10000, 10
	f := newHeldFixture(b, n, conns)
	f.holdAll(b)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		d := (i * 7919) % n // spread over the devices and connections
		c := f.conns[d%conns]
		t0 := time.Now()
		if err := f.srv.Send(context.Background(), transport.Message{Kind: transport.StartRun, Device: f.ids[d], Key: "k",
			Start: &transport.Start{TaskID: "task-1", RunID: int64(i + 1), At: t0, Manual: true}}); err != nil {
			b.Fatal(err)
		}
		select {
		case a := <-c.answers:
			if a.status != "200" {
				b.Fatalf("answer on stream %d: status %q", a.stream, a.status)
			}
			lat = append(lat, a.at.Sub(t0))
		case <-time.After(10 * time.Second):
			b.Fatal("no answer within 10 s", c.failed())
		}
		if _, err := c.poll(f.ids[d], f.keys[d], 60); err != nil {
			b.Fatal(err)
		}
		// The next poll of d is held before d is woken again.
		f.waitPolling(b, n)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	f.release(b)
}
