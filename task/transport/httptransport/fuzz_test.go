package httptransport_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/task/transport/httptransport"
)

// FuzzServeHTTP feeds random requests (path, headers, body, encoding) to
// a Server: it never panics, answers with one of the documented
// statuses, and hands the handler only messages of the device whose key
// the request presented, with that device as the sender.
func FuzzServeHTTP(f *testing.F) {
	f.Add(uint8(0), "dev-1", uint8(1), "", []byte(`{"kind":"heartbeat","device":"dev-2"}`), "")
	f.Add(uint8(0), "dev-2", uint8(1), "", []byte(`{"kind":"results","results":[{"task_id":"t","device_id":"dev-2"}]}`), "")
	f.Add(uint8(0), "dev-1", uint8(1), "gzip", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}, "")
	f.Add(uint8(1), "dev-1", uint8(1), "", []byte(nil), "wait=0")
	f.Add(uint8(1), "dev-1", uint8(2), "", []byte(nil), "wait=-5")
	f.Add(uint8(2), "dev-9", uint8(0), "", []byte(`{"device":"dev-9","secret":"fleet-enrollment-secret-0123456789"}`), "")
	f.Add(uint8(3), "dev-1", uint8(1), "", []byte(nil), "")
	f.Add(uint8(0), "dev-1", uint8(1), "br", []byte(`{"kind":"ack"}`), "")
	f.Fuzz(func(t *testing.T, path uint8, device string, keyChoice uint8, enc string, body []byte, query string) {
		ctx := context.Background()
		mock := clock.NewMock()
		keys := httptransport.NewMemKeyStore()
		enr, err := httptransport.NewEnrollment(httptransport.EnrollmentConfig{Secret: secret, Keys: keys, Clock: mock})
		if err != nil {
			t.Fatal(err)
		}
		key, err := enr.Enroll(ctx, "dev-1", secret)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := httptransport.NewServer(httptransport.ServerConfig{Identity: enr, Clock: mock, MaxWait: 1e9})
		if err != nil {
			t.Fatal(err)
		}
		rec := newRecorder()
		srv.Attach(rec)
		method, p := http.MethodPost, httptransport.PathSend
		switch path % 4 {
		case 1:
			method, p = http.MethodGet, httptransport.PathPoll
		case 2:
			p = httptransport.PathEnroll
		case 3:
			p = httptransport.PathRotate
		}
		req := httptest.NewRequest(method, p, bytes.NewReader(body))
		req.URL.RawQuery = query
		req.Header.Set(httptransport.HeaderDevice, device)
		switch keyChoice % 3 {
		case 1:
			req.Header.Set("Authorization", "Bearer "+string(key))
		case 2:
			req.Header.Set("Authorization", "Bearer "+device)
		}
		if enc != "" {
			req.Header.Set("Content-Encoding", enc)
		}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		switch w.Code {
		case 200, 204, 400, 401, 403, 404, 405, 409, 413, 415, 429, 503:
		default:
			t.Fatalf("status %d", w.Code)
		}
		authentic := device == "dev-1" && keyChoice%3 == 1
		for _, m := range rec.all() {
			if !authentic || m.Device != "dev-1" {
				t.Fatalf("handler got a message from %q (request as %q, key choice %d)", m.Device, device, keyChoice)
			}
		}
		if w.Code == http.StatusNoContent && len(rec.all()) != 1 {
			t.Fatalf("204 but %d messages handled", len(rec.all()))
		}
	})
}
