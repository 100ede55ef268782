package console_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/console"
)

// FuzzParseDeviceList: any text is either a list of valid, distinct ids
// or an ErrInvalid, never a panic.
func FuzzParseDeviceList(f *testing.F) {
	for _, s := range []string{"dev-1\ndev-2", "a, b,,c", "", "\x00", strings.Repeat("x", 300), "a\r\nb\tc a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := console.ParseDeviceList(s)
		if err != nil {
			if !errors.Is(err, task.ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		seen := map[scope.DeviceID]bool{}
		for _, id := range ids {
			if id == "" || len(id) > scope.MaxIDLength || seen[id] || !utf8.ValidString(string(id)) || strings.ContainsAny(string(id), "\n\r\t ,") {
				t.Fatalf("bad id %q in %q", id, s)
			}
			seen[id] = true
		}
	})
}

// FuzzPageQuery: any query string on the task list, the task page, the
// live fragment and the compare page is answered 200, 400 or 404, never
// 500 or a panic.
func FuzzPageQuery(f *testing.F) {
	fx := setup(f, setupOptions{})
	for _, s := range []string{"", "state=running&after=dev-003", "kind=group", "explain=dev-001&zone_device=dev-002", "a=1&b=2", "state=%00", "after=%ff", "zone_device=" + strings.Repeat("z", 300)} {
		f.Add(s)
	}
	paths := []string{"/", "/tasks/" + fx.group.ID, "/tasks/" + fx.global.ID + "/live", "/tasks/" + fx.group.ID + "/compare", "/tasks/" + fx.global.ID + "/devices/dev-001"}
	f.Fuzz(func(t *testing.T, q string) {
		if _, err := url.ParseQuery(q); err != nil {
			return
		}
		for _, p := range paths {
			r := httptest.NewRequest(http.MethodGet, "http://console.test"+p, nil)
			r.URL.RawQuery = q
			r.Header.Set("X-User", "admin")
			w := httptest.NewRecorder()
			fx.c.ServeHTTP(w, r)
			switch w.Code {
			case http.StatusOK, http.StatusBadRequest, http.StatusNotFound:
			default:
				t.Fatalf("GET %s?%s = %d", p, q, w.Code)
			}
			if strings.Contains(w.Body.String(), secretProxyPassword) {
				t.Fatalf("GET %s?%s shows the secret", p, q)
			}
		}
	})
}
