package hierarchyhttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/taskfleet/taskfleet/task/hierarchy"
	"github.com/taskfleet/taskfleet/task/hierarchy/hierarchyhttp"
)

// TestHostileRequests: authenticated children sending malformed,
// oversize or foreign requests get a clear status and change nothing on
// the primary.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tr := newTree(t)
	before := tr.primary.node.StatisticsFromSecondaries(tr.all)
	sde := tr.pki.client(t, tr.pki.ca, "s-de")
	sus := tr.pki.client(t, tr.pki.ca, "s-us")
	do := func(c *http.Client, method, path string, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, tr.primary.url+path, bytes.NewReader(body))
		must(t, err)
		resp, err := c.Do(req)
		must(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	report := func(from string, seq int64, extra string) []byte {
		return fmt.Appendf(nil, `{"from":%q,"to":"primary","version":{"epoch":%d,"seq":%d},"complete":true,"statistics":[%s]}`, from, time.Now().Add(time.Hour).UnixNano(), seq, extra)
	}
	big := make([]byte, hierarchyhttp.MaxBodyBytes+10)
	for i := range big {
		big[i] = ' '
	}
	cases := []struct {
		name   string
		c      *http.Client
		method string
		path   string
		body   []byte
		want   int
	}{
		{"not JSON", sde, http.MethodPost, hierarchyhttp.PathReport, []byte("{"), http.StatusBadRequest},
		{"unknown field", sde, http.MethodPost, hierarchyhttp.PathReport, []byte(`{"from":"s-de","evil":1}`), http.StatusBadRequest},
		{"trailing data", sde, http.MethodPost, hierarchyhttp.PathReport, append(report("s-de", 1, ""), "{}"...), http.StatusBadRequest},
		{"over the body limit", sde, http.MethodPost, hierarchyhttp.PathReport, big, http.StatusRequestEntityTooLarge},
		{"figure with a path not from the sender", sde, http.MethodPost, hierarchyhttp.PathReport,
			report("s-de", 1, fmt.Sprintf(`{"TaskID":%q,"Server":"x","Path":["s-us","x"]}`, tr.all)), http.StatusBadRequest},
		{"report as another server", sus, http.MethodPost, hierarchyhttp.PathReport, report("s-de", 1, ""), http.StatusForbidden},
		{"bad wait", sde, http.MethodGet, hierarchyhttp.PathQueries + "?wait=soon", nil, http.StatusBadRequest},
		{"unknown path", sde, http.MethodGet, "/v1/hierarchy/everything", nil, http.StatusNotFound},
		{"answer not JSON", sde, http.MethodPost, hierarchyhttp.PathAnswer, []byte("]"), http.StatusBadRequest},
		{"answer with too many results", sde, http.MethodPost, hierarchyhttp.PathAnswer,
			fmt.Appendf(nil, `{"id":1,"page":{"server":"s-de","results":[%s{}]}}`, strings.Repeat("{},", hierarchyhttp.MaxPageResults)), http.StatusBadRequest},
	}
	for _, tc := range cases {
		if code, msg := do(tc.c, tc.method, tc.path, tc.body); code != tc.want {
			t.Errorf("%s: %d %q, want %d", tc.name, code, msg, tc.want)
		}
	}
	if d := cmp.Diff(before, tr.primary.node.StatisticsFromSecondaries(tr.all)); d != "" {
		t.Fatalf("hostile requests changed the primary (-before +after):\n%s", d)
	}

	// s-us answers a query meant for s-de: 403, and s-de's real answer
	// still gets through.
	type result struct {
		page hierarchy.ResultsPage
		err  error
	}
	got := make(chan result, 1)
	// s-us runs no query server in this tree: the test answers for it.
	go func() {
		p, err := tr.primary.link.FetchResults(ctx, hierarchy.ResultsQuery{From: "primary", To: "s-us", TaskID: tr.all, Server: "s-us"})
		got <- result{p, err}
	}()
	var qs []struct {
		ID uint64 `json:"id"`
	}
	for deadline := time.Now().Add(5 * time.Second); len(qs) == 0 && time.Now().Before(deadline); {
		code, body := do(sus, http.MethodGet, hierarchyhttp.PathQueries+"?wait=1", nil)
		if code == http.StatusOK {
			must(t, json.Unmarshal([]byte(body), &qs))
		}
	}
	if len(qs) != 1 {
		t.Fatalf("s-us received queries %+v", qs)
	}
	answer := fmt.Appendf(nil, `{"id":%d,"page":{"server":"s-us","results":[{"task_id":"x","device_id":"forged","state":"failed"}]}}`, qs[0].ID)
	if code, _ := do(sde, http.MethodPost, hierarchyhttp.PathAnswer, answer); code != http.StatusForbidden {
		t.Fatalf("s-de answered s-us's query: %d, want 403", code)
	}
	answer = fmt.Appendf(nil, `{"id":%d,"page":{"server":"s-us","results":[{"task_id":%q,"device_id":"us-1","state":"failed"}]}}`, qs[0].ID, tr.all)
	if code, _ := do(sus, http.MethodPost, hierarchyhttp.PathAnswer, answer); code != http.StatusNoContent {
		t.Fatalf("s-us's own answer: %d", code)
	}
	r := <-got
	if r.err != nil || len(r.page.Results) != 1 || r.page.Results[0].DeviceID != "us-1" {
		t.Fatalf("FetchResults = %+v, %v", r.page, r.err)
	}
}
