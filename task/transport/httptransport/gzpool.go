package httptransport

import (
	"bytes"
	"compress/gzip"
	"sync"
)

// A gzip.Writer allocates about 1 MiB of compressor state; a new one per
// poll answer made compression most of the channel's CPU and garbage at
// 10,000 devices (the fleet load test's profile). Writers and their
// buffers are reused instead.
var (
	gzipWriters = sync.Pool{New: func() any {
		zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
		return zw
	}}
	gzipBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// maxPooledBuffer bounds the buffers kept for reuse, so one large answer
// does not pin its memory.
const maxPooledBuffer = 256 << 10

// gzipped compresses b into a pooled buffer; done returns the buffer to
// the pool once its bytes are no longer used.
func gzipped(b []byte) (out []byte, done func()) {
	buf := gzipBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	zw.Reset(nil)
	gzipWriters.Put(zw)
	return buf.Bytes(), func() {
		if buf.Cap() <= maxPooledBuffer {
			gzipBuffers.Put(buf)
		}
	}
}
