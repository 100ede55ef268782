package httptransport_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/task/transport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
	"github.com/taskfleet/taskfleet/task/transport/httptransport/testpki"
)

func TestMTLSIdentity(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureConfig{mtls: true})
	ctx := context.Background()
	c := f.client(t, httptransport.ClientConfig{Device: "dev-1", HTTPClient: f.httpClient(t, "dev-1")})
	// The message claims to be from dev-2: the certificate says dev-1.
	if err := c.Send(ctx, heartbeat("dev-2")); err != nil {
		t.Fatal(err)
	}
	got := f.rec.all()
	if len(got) != 1 || got[0].Device != "dev-1" {
		t.Fatalf("handler got %+v, want one message from dev-1", got)
	}

	// No certificate: 401, nothing handled.
	code, reason := f.raw(t, http.MethodPost, httptransport.PathSend, nil, encode(t, heartbeat("dev-1")))
	if code != http.StatusUnauthorized || reason != httptransport.ReasonMissing {
		t.Errorf("without a certificate: %d %q, want 401 %q", code, reason, httptransport.ReasonMissing)
	}
	// A certificate of another CA does not even get through TLS.
	other, err := testpki.New(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := other.Client("dev-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hc := httptransport.NewHTTPClient(&tls.Config{RootCAs: f.ca.Pool, Certificates: []tls.Certificate{cert}})
	oc := f.client(t, httptransport.ClientConfig{Device: "dev-1", HTTPClient: hc})
	if err := oc.Send(ctx, heartbeat("dev-1")); !errors.Is(err, transport.ErrUnreachable) {
		t.Errorf("a foreign certificate: %v, want ErrUnreachable", err)
	}
	if n := len(f.rec.all()); n != 1 {
		t.Errorf("handler got %d messages, want 1", n)
	}
	if st := f.srv.Stats(); st.Unauthenticated != 1 {
		t.Errorf("Stats.Unauthenticated = %d, want 1", st.Unauthenticated)
	}
}

func TestEnrollmentIdentity(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureConfig{})
	ctx := context.Background()
	c, key := f.enrolled(t, "dev-1")
	if err := c.Send(ctx, heartbeat("dev-9")); err != nil {
		t.Fatal(err)
	}
	if got := f.rec.all(); len(got) != 1 || got[0].Device != "dev-1" {
		t.Fatalf("handler got %+v, want one message from dev-1", got)
	}
	// Only the key's SHA-256 is stored.
	rec, err := f.keys.Key(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Hash != sha256.Sum256([]byte(key)) || strings.Contains(fmt.Sprintf("%+v", rec), string(key)) {
		t.Errorf("stored record %+v is not just the key's hash", rec)
	}
	if len(key) < 43 {
		t.Errorf("key of %d characters, want 256 bits", len(key))
	}
	// The key never prints.
	if s := fmt.Sprintf("%v %s %+v %#v", key, key, key, key); strings.Contains(s, string(key)) {
		t.Errorf("a Secret prints its value: %s", s)
	}

	_, key2 := f.enrolled(t, "dev-2")
	hb := encode(t, heartbeat("dev-1"))
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		reason string
	}{
		{"no headers", nil, httptransport.ReasonMissing},
		{"no key", map[string]string{httptransport.HeaderDevice: "dev-1"}, httptransport.ReasonMissing},
		{"wrong key", auth("dev-1", "not-the-key"), httptransport.ReasonBadKey},
		{"dev-2's key as dev-1", auth("dev-1", key2), httptransport.ReasonBadKey},
		{"dev-1's key as dev-2", auth("dev-2", key), httptransport.ReasonBadKey},
		{"unknown device", auth("dev-3", key), httptransport.ReasonUnknown},
		{"secret as key", auth("dev-1", secret), httptransport.ReasonBadKey},
	} {
		for _, path := range []string{httptransport.PathSend, httptransport.PathPoll + "?wait=0"} {
			method := http.MethodPost
			if strings.HasPrefix(path, httptransport.PathPoll) {
				method = http.MethodGet
			}
			code, reason := f.raw(t, method, path, tc.hdr, hb)
			if code != http.StatusUnauthorized || reason != tc.reason {
				t.Errorf("%s %s: %d %q, want 401 %q", tc.name, path, code, reason, tc.reason)
			}
		}
	}
	if n := len(f.rec.all()); n != 1 {
		t.Errorf("handler got %d messages, want 1: a refused request changed something", n)
	}
	if code, _ := f.raw(t, http.MethodPost, httptransport.PathSend, auth("dev-1", key), hb); code != http.StatusNoContent {
		t.Errorf("dev-1 with its key: %d, want 204", code)
	}

	// Enrollment: a wrong secret, an enrolled device, a bad id.
	for _, tc := range []struct {
		device transport.DeviceID
		secret httptransport.Secret
		want   error
	}{
		{"dev-5", "wrong-secret-0123456789abcdef", httptransport.ErrBadSecret},
		{"dev-1", secret, httptransport.ErrEnrolled},
		{"dev\x00bad", secret, httptransport.ErrInvalid},
		{transport.DeviceID(strings.Repeat("d", httptransport.MaxDeviceIDBytes+1)), secret, httptransport.ErrInvalid},
	} {
		_, err := f.enr.Enroll(ctx, tc.device, tc.secret)
		if !errors.Is(err, tc.want) {
			t.Errorf("Enroll(%.20q): %v, want %v", tc.device, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), string(tc.secret)) {
			t.Errorf("the error quotes the secret: %v", err)
		}
	}
	// Over HTTP too: a wrong secret is 401 and issues nothing.
	bad := f.client(t, httptransport.ClientConfig{Device: "dev-6", EnrollSecret: "wrong-secret-0123456789abcdef"})
	if err := bad.Enroll(ctx); !errors.Is(err, httptransport.ErrBadSecret) {
		t.Errorf("Enroll with a wrong secret: %v", err)
	}
	if _, err := f.keys.Key(ctx, "dev-6"); !errors.Is(err, httptransport.ErrNotFound) {
		t.Errorf("a refused enrollment stored a key: %v", err)
	}
	if strings.Contains(f.srvLog.String(), string(secret)) || strings.Contains(f.srvLog.String(), string(key)) {
		t.Errorf("the server logged a secret:\n%s", f.srvLog.String())
	}
}

func TestRevokedKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureConfig{})
	ctx := context.Background()
	c, key := f.enrolled(t, "dev-1")
	if err := f.enr.Revoke(ctx, "dev-1"); err != nil {
		t.Fatal(err)
	}
	code, reason := f.raw(t, http.MethodPost, httptransport.PathSend, auth("dev-1", key), encode(t, heartbeat("dev-1")))
	if code != http.StatusUnauthorized || reason != httptransport.ReasonRevoked {
		t.Errorf("revoked key: %d %q, want 401 revoked", code, reason)
	}
	if err := c.Send(ctx, heartbeat("dev-1")); !errors.Is(err, transport.ErrUnreachable) {
		t.Errorf("Send with a revoked key: %v", err)
	}
	if n := len(f.rec.all()); n != 0 {
		t.Errorf("handler got %d messages from a revoked device", n)
	}
	// The client tried to enroll again (it has the secret): refused.
	if err := c.Enroll(ctx); !errors.Is(err, httptransport.ErrRevoked) {
		t.Errorf("enroll after revocation: %v, want ErrRevoked", err)
	}
	if err := c.Rotate(ctx); err == nil {
		t.Error("a revoked device rotated its key")
	}
	// The operator lets it back in.
	if err := f.enr.Reset(ctx, "dev-1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, heartbeat("dev-1")); err != nil {
		t.Errorf("after Reset and enrollment: %v", err)
	}
	if err := f.enr.Revoke(ctx, "dev-404"); !errors.Is(err, httptransport.ErrNotFound) {
		t.Errorf("Revoke of an unknown device: %v", err)
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureConfig{})
	ctx := context.Background()
	var saved []httptransport.Secret
	c := f.client(t, httptransport.ClientConfig{Device: "dev-1", EnrollSecret: secret,
		SaveKey: func(_ context.Context, k httptransport.Secret) error { saved = append(saved, k); return nil }})
	if err := c.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if len(saved) != 2 || saved[0] == saved[1] {
		t.Fatalf("saved keys %d, want 2 different", len(saved))
	}
	old, cur := saved[0], saved[1]
	hb := encode(t, heartbeat("dev-1"))
	// The old key works until the new one is used (the rotation's answer
	// may have been lost).
	if code, _ := f.raw(t, http.MethodPost, httptransport.PathSend, auth("dev-1", old), hb); code != http.StatusNoContent {
		t.Errorf("old key before the new one was used: %d, want 204", code)
	}
	if err := c.Send(ctx, heartbeat("dev-1")); err != nil {
		t.Fatal(err)
	}
	if code, reason := f.raw(t, http.MethodPost, httptransport.PathSend, auth("dev-1", old), hb); code != http.StatusUnauthorized || reason != httptransport.ReasonBadKey {
		t.Errorf("old key after the new one was used: %d %q, want 401", code, reason)
	}
	if code, _ := f.raw(t, http.MethodPost, httptransport.PathSend, auth("dev-1", cur), hb); code != http.StatusNoContent {
		t.Errorf("new key: %d, want 204", code)
	}
	if st := f.srv.Stats(); st.Rotated != 1 || st.Enrolled != 1 {
		t.Errorf("stats %+v, want 1 enrolled and 1 rotated", st)
	}
}

// A key expires after KeyTTL (on the injected clock); a client with the
// enrollment secret enrolls again once on the 401 and logs why at info
// level; a rotating client never expires.
func TestKeyExpiryReenrollsOnce(t *testing.T) {
	t.Parallel()
	mock := clock.NewMock()
	mock.Set(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	f := newFixture(t, fixtureConfig{clock: mock, enroll: httptransport.EnrollmentConfig{KeyTTL: time.Hour}})
	ctx := context.Background()
	logs := &syncBuffer{}
	var saved []httptransport.Secret
	c := f.client(t, httptransport.ClientConfig{Device: "dev-1", EnrollSecret: secret, Logger: zerologTo(logs),
		SaveKey: func(_ context.Context, k httptransport.Secret) error { saved = append(saved, k); return nil }})
	if err := c.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	mock.Add(2 * time.Hour)
	if err := c.Send(ctx, heartbeat("dev-1")); !errors.Is(err, transport.ErrUnreachable) {
		t.Fatalf("Send with an expired key: %v, want ErrUnreachable", err)
	}
	if len(saved) != 2 {
		t.Fatalf("%d keys saved, want 2 (enrolled again on the 401)", len(saved))
	}
	if !strings.Contains(logs.String(), `"level":"info"`) || !strings.Contains(logs.String(), `"reason":"expired"`) {
		t.Errorf("the 401 was not logged at info level with its reason:\n%s", logs)
	}
	if err := c.Send(ctx, heartbeat("dev-1")); err != nil {
		t.Fatalf("Send after enrolling again: %v", err)
	}
	// Revoked: one enrollment attempt, refused; no loop of enrollments.
	if err := f.enr.Revoke(ctx, "dev-1"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_ = c.Send(ctx, heartbeat("dev-1"))
	}
	if n := strings.Count(logs.String(), "enrolling again"); n != 2 {
		t.Errorf("%d re-enrollments logged, want 2 (one per 401 episode):\n%s", n, logs)
	}
	if len(saved) != 2 {
		t.Errorf("%d keys saved, want 2", len(saved))
	}
	if strings.Contains(logs.String(), string(saved[1])) || strings.Contains(logs.String(), string(secret)) {
		t.Error("the client logged a secret")
	}
}

func TestEnrollmentRateLimit(t *testing.T) {
	t.Parallel()
	mock := clock.NewMock()
	f := newFixture(t, fixtureConfig{clock: mock, enroll: httptransport.EnrollmentConfig{Rate: 1, Burst: 2}})
	ctx := context.Background()
	for i, want := range []error{nil, nil, httptransport.ErrRateLimited} {
		c := f.client(t, httptransport.ClientConfig{Device: transport.DeviceID(fmt.Sprintf("dev-%d", i)), EnrollSecret: secret})
		if err := c.Enroll(ctx); !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("enrollment %d: %v, want %v", i, err, want)
		}
	}
	// Guessing the secret costs tokens too.
	mock.Add(time.Second)
	if _, err := f.enr.Enroll(ctx, "dev-x", "guess-guess-guess-guess"); !errors.Is(err, httptransport.ErrBadSecret) {
		t.Errorf("a guess: %v", err)
	}
	if _, err := f.enr.Enroll(ctx, "dev-y", secret); !errors.Is(err, httptransport.ErrRateLimited) {
		t.Errorf("after a guess took the token: %v, want ErrRateLimited", err)
	}
	mock.Add(time.Second)
	if _, err := f.enr.Enroll(ctx, "dev-y", secret); err != nil {
		t.Errorf("a second later: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	if _, err := httptransport.NewEnrollment(httptransport.EnrollmentConfig{Secret: "short"}); !errors.Is(err, httptransport.ErrInvalid) || strings.Contains(err.Error(), "short") {
		t.Errorf("short secret: %v", err)
	}
	if _, err := httptransport.NewServer(httptransport.ServerConfig{}); !errors.Is(err, httptransport.ErrInvalid) {
		t.Errorf("no identity: %v", err)
	}
	id := httptransport.MTLS{Device: httptransport.CommonName}
	for _, sc := range []httptransport.ServerConfig{{Identity: id, MaxWait: time.Millisecond}, {Identity: id, MaxWait: time.Hour}, {Identity: id, MaxQueue: -1}, {Identity: id, MaxWait: 10 * time.Second, ConnectedFor: time.Second}} {
		if _, err := httptransport.NewServer(sc); !errors.Is(err, httptransport.ErrInvalid) {
			t.Errorf("%+v: %v", sc, err)
		}
	}
	for _, cc := range []httptransport.ClientConfig{{URL: "ftp://x", Device: "d"}, {URL: "https://x"}, {URL: "https://x", Device: "d", Wait: time.Hour}, {URL: "https://x", Device: "d", BackoffMin: time.Minute, BackoffMax: time.Second}} {
		if _, err := httptransport.NewClient(cc); !errors.Is(err, httptransport.ErrInvalid) {
			t.Errorf("%+v: %v", cc, err)
		}
	}
}

// The answer to an enrollment may be lost: until the key is used the
// device enrolls again (the unused key is replaced); once it is used,
// nobody can enroll as the device with the secret alone.
func TestEnrollmentAnswerLost(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureConfig{})
	ctx := context.Background()
	lost, err := f.enr.Enroll(ctx, "dev-1", secret)
	if err != nil {
		t.Fatal(err)
	}
	c, key := f.enrolled(t, "dev-1") // enrolls again: the first answer was "lost"
	if code, reason := f.raw(t, http.MethodPost, httptransport.PathSend, auth("dev-1", lost), encode(t, heartbeat("dev-1"))); code != http.StatusUnauthorized || reason != httptransport.ReasonBadKey {
		t.Errorf("the replaced key: %d %q, want 401 bad_key", code, reason)
	}
	if err := c.Send(ctx, heartbeat("dev-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.enr.Enroll(ctx, "dev-1", secret); !errors.Is(err, httptransport.ErrEnrolled) {
		t.Errorf("enrolling an established device: %v, want ErrEnrolled", err)
	}
	if code, _ := f.raw(t, http.MethodPost, httptransport.PathSend, auth("dev-1", key), encode(t, heartbeat("dev-1"))); code != http.StatusNoContent {
		t.Errorf("the device's key after the refused enrollment: %d", code)
	}
}
