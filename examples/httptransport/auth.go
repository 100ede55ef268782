package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/taskfleet/taskfleet/scope"
)

// Device authentication. Every request names its device (?device=ID) and
// carries that device's token (Authorization: Bearer TOKEN). A token is
// HMAC-SHA256(fleet key, device id): the server holds the fleet key
// (HTTPTRANSPORT_KEY), each agent only its own token (HTTPTRANSPORT_TOKEN),
// so a device can speak only as itself. Keys and tokens travel in the
// environment, never on the command line, and are never logged.
const (
	keyEnv   = "HTTPTRANSPORT_KEY"
	tokenEnv = "HTTPTRANSPORT_TOKEN"
)

// deviceToken returns the token of device id under the fleet key.
func deviceToken(key string, id scope.DeviceID) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte("taskfleet-device:"))
	mac.Write([]byte(id))
	return hex.EncodeToString(mac.Sum(nil))
}

// newKey returns a random fleet key (the demo's).
func newKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// authenticate returns the device a request is from, or "" when its token
// is missing or wrong (compared in constant time).
func authenticate(key string, r *http.Request) scope.DeviceID {
	id := scope.DeviceID(r.URL.Query().Get("device"))
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if id == "" || len(id) > 256 || !ok || key == "" {
		return ""
	}
	if !hmac.Equal([]byte(tok), []byte(deviceToken(key, id))) {
		return ""
	}
	return id
}
