package hierarchyhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/task/hierarchy"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
)

// Paths a Link answers, relative to where the host mounts it.
const (
	PathTasks   = "/v1/hierarchy/tasks"
	PathReport  = "/v1/hierarchy/report"
	PathQueries = "/v1/hierarchy/queries"
	PathAnswer  = "/v1/hierarchy/answer"
)

// Limits and defaults.
const (
	// MaxBodyBytes bounds every request and answer body.
	MaxBodyBytes = 32 << 20
	// MaxTasks is the most tasks in one task set.
	MaxTasks = 10000
	// MaxFigures is the most figures in one report.
	MaxFigures = 100000
	// MaxPageResults is the most results in one page (the storage's
	// MaxListLimit).
	MaxPageResults = 10000
	// MaxPendingQueries is the most result queries waiting for one child.
	MaxPendingQueries = 64
	// DefaultPollWait is how long a child's query poll is held.
	DefaultPollWait = 25 * time.Second
	// DefaultQueryTimeout is how long FetchResults waits for a child.
	DefaultQueryTimeout = 30 * time.Second
)

// ErrImpersonation is the refusal of a request in which a server speaks
// for another (a report whose From is not the authenticated server). It
// matches hierarchy.ErrInvalid.
var ErrImpersonation = fmt.Errorf("hierarchyhttp: a server may only speak for itself: %w", errs.ErrInvalid)

// ErrRefused is returned by a Link call the other server refused as
// malformed (400). It matches hierarchy.ErrInvalid.
var ErrRefused = fmt.Errorf("hierarchyhttp: refused by the other server: %w", errs.ErrInvalid)

// Config configures a Link. A server with a parent sets ParentURL and
// HTTPClient; a server with children sets Identity and mounts the Link in
// its HTTPS server. A secondary that is also a parent sets both.
type Config struct {
	// ID is this server's id in the hierarchy. Required.
	ID string
	// ParentURL is the base URL of the parent's Link ("" for the primary),
	// for example "https://primary.example:8443/hierarchy".
	ParentURL string
	// HTTPClient connects to the parent. Its TLS configuration carries
	// this server's own client certificate (mTLS) and the parent's CA.
	// Required with ParentURL.
	HTTPClient *http.Client
	// Identity authenticates the children's requests: a child's identity
	// (for httptransport.MTLS, its verified certificate) is its server id.
	// Required for a server with children.
	Identity httptransport.Identity
	// PollWait is how long the parent holds a child's query poll
	// (0: DefaultPollWait).
	PollWait time.Duration
	// QueryTimeout is how long FetchResults waits for a child's answer
	// (0: DefaultQueryTimeout).
	QueryTimeout time.Duration
	// Logger receives the refused requests (default: none).
	Logger zerolog.Logger
}

// Link is the server-to-server link over HTTPS: a hierarchy.Link, a
// hierarchy.TaskPuller and a hierarchy.ResultsFetcher. Every connection
// is opened by the child, so a secondary behind NAT needs only outgoing
// HTTPS to its parent:
//
//   - tasks go down by pull: SendTasks keeps the latest set per child and
//     the child's sync loop fetches it (GET PathTasks);
//   - reports go up by POST PathReport;
//   - a query for per-device results waits for the child's long poll
//     (GET PathQueries), which answers it (POST PathAnswer).
//
// It is safe for concurrent use.
type Link struct {
	cfg    Config
	parent *url.URL

	mu      sync.Mutex
	node    *hierarchy.Node
	sets    map[string]hierarchy.TaskSet // child -> latest set
	queries map[string]*childQueue       // child -> pending queries
	waiting map[uint64]*pending          // query id -> its waiter
	nextID  uint64
}

type childQueue struct {
	queue []wireQuery
	wake  chan struct{} // closed and replaced when a query is queued
}

type pending struct {
	child string
	done  chan wireAnswer
}

var (
	_ hierarchy.Link           = (*Link)(nil)
	_ hierarchy.TaskPuller     = (*Link)(nil)
	_ hierarchy.ResultsFetcher = (*Link)(nil)
	_ hierarchy.QueryServer    = (*Link)(nil)
	_ http.Handler             = (*Link)(nil)
)

// New returns a Link. Errors: ValidationErrors naming each bad field.
func New(cfg Config) (*Link, error) {
	var bad errs.ValidationErrors
	if cfg.ID == "" {
		bad = append(bad, errs.Invalid("id", "", "is required"))
	}
	var parent *url.URL
	if cfg.ParentURL != "" {
		u, err := url.Parse(cfg.ParentURL)
		switch {
		case err != nil || u.Host == "":
			bad = append(bad, errs.Invalid("parent_url", cfg.ParentURL, "must be an absolute URL"))
		case u.Scheme != "https":
			bad = append(bad, errs.Invalid("parent_url", cfg.ParentURL, "must be https"))
		}
		parent = u
		if cfg.HTTPClient == nil {
			bad = append(bad, errs.Invalid("http_client", "", "is required with parent_url"))
		}
	}
	if cfg.PollWait < 0 || cfg.QueryTimeout < 0 {
		bad = append(bad, errs.Invalid("poll_wait", "", "and query_timeout must not be negative"))
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	if cfg.PollWait == 0 {
		cfg.PollWait = DefaultPollWait
	}
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = DefaultQueryTimeout
	}
	return &Link{cfg: cfg, parent: parent, sets: map[string]hierarchy.TaskSet{}, queries: map[string]*childQueue{}, waiting: map[uint64]*pending{}}, nil
}

// Attach sets the local Node that handles the children's reports and the
// parent's queries. Call it once the Node exists (the Node needs the Link
// first).
func (l *Link) Attach(n *hierarchy.Node) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.node = n
}

func (l *Link) localNode() *hierarchy.Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.node
}

// SendTasks implements hierarchy.Link: it keeps m as the latest set for
// m.To, which fetches it with its next PullTasks. An older set than the
// one kept is ignored.
func (l *Link) SendTasks(_ context.Context, m hierarchy.TaskSet) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.sets[m.To]; ok && cur.Version.Compare(m.Version) > 0 {
		return nil
	}
	l.sets[m.To] = m
	return nil
}

// PullTasks implements hierarchy.TaskPuller: GET PathTasks from the
// parent.
func (l *Link) PullTasks(ctx context.Context, server string) (hierarchy.TaskSet, bool, error) {
	if server != l.cfg.ID {
		return hierarchy.TaskSet{}, false, errs.Invalid("server", server, fmt.Sprintf("must be this Link's server %q", l.cfg.ID))
	}
	body, code, err := l.call(ctx, http.MethodGet, PathTasks, nil, nil)
	if err != nil {
		return hierarchy.TaskSet{}, false, err
	}
	if code == http.StatusNoContent {
		return hierarchy.TaskSet{}, false, nil
	}
	m, err := decodeTaskSet(body)
	if err != nil {
		return hierarchy.TaskSet{}, false, fmt.Errorf("hierarchyhttp: task set from the parent: %w", err)
	}
	return m, true, nil
}

// SendReport implements hierarchy.Link: POST PathReport to the parent.
func (l *Link) SendReport(ctx context.Context, r hierarchy.Report) error {
	b, err := json.Marshal(wireReport{From: r.From, To: r.To, Version: r.Version, Complete: r.Complete, Statistics: r.Statistics})
	if err != nil {
		return err
	}
	_, _, err = l.call(ctx, http.MethodPost, PathReport, nil, b)
	return err
}

// FetchResults implements hierarchy.ResultsFetcher: the query waits for
// q.To's next query poll, and the answer for QueryTimeout; then it is
// ErrUnreachable.
func (l *Link) FetchResults(ctx context.Context, q hierarchy.ResultsQuery) (hierarchy.ResultsPage, error) {
	l.mu.Lock()
	cq := l.queue(q.To)
	if len(cq.queue) >= MaxPendingQueries {
		l.mu.Unlock()
		return hierarchy.ResultsPage{}, fmt.Errorf("hierarchyhttp: %d queries already wait for %q: %w", MaxPendingQueries, q.To, hierarchy.ErrUnreachable)
	}
	l.nextID++
	id := l.nextID
	p := &pending{child: q.To, done: make(chan wireAnswer, 1)}
	l.waiting[id] = p
	cq.queue = append(cq.queue, wireQuery{ID: id, Query: q})
	close(cq.wake)
	cq.wake = make(chan struct{})
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.waiting, id)
		if cq := l.queries[q.To]; cq != nil {
			for i, w := range cq.queue {
				if w.ID == id {
					cq.queue = append(cq.queue[:i], cq.queue[i+1:]...)
					break
				}
			}
		}
		l.mu.Unlock()
	}()
	t := time.NewTimer(l.cfg.QueryTimeout)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return hierarchy.ResultsPage{}, ctx.Err()
	case <-t.C:
		return hierarchy.ResultsPage{}, fmt.Errorf("hierarchyhttp: %q did not answer within %v: %w", q.To, l.cfg.QueryTimeout, hierarchy.ErrUnreachable)
	case a := <-p.done:
		if a.Error != nil {
			return hierarchy.ResultsPage{}, answerErr(q.To, a.Error)
		}
		if a.Page == nil {
			return hierarchy.ResultsPage{}, fmt.Errorf("hierarchyhttp: %q answered without a page: %w", q.To, ErrRefused)
		}
		return *a.Page, nil
	}
}

func (l *Link) queue(child string) *childQueue {
	cq := l.queries[child]
	if cq == nil {
		cq = &childQueue{wake: make(chan struct{})}
		l.queries[child] = cq
	}
	return cq
}

func answerErr(child string, e *wireError) error {
	var kind error
	switch e.Kind {
	case "invalid":
		kind = hierarchy.ErrInvalid
	case "not_found":
		kind = hierarchy.ErrNotFound
	default:
		kind = hierarchy.ErrUnreachable
	}
	return fmt.Errorf("hierarchyhttp: %q: %s: %w", child, e.Message, kind)
}

func kindOf(err error) string {
	switch {
	case errors.Is(err, hierarchy.ErrInvalid):
		return "invalid"
	case errors.Is(err, hierarchy.ErrNotFound):
		return "not_found"
	}
	return "unavailable"
}

// Serve answers the parent's queries for per-device results until ctx
// ends: it long-polls PathQueries, has the attached Node answer each
// query (Node.ServeResults) and posts the answers. After a failure it
// waits a second, doubling up to a minute.
func (l *Link) Serve(ctx context.Context) error {
	if l.parent == nil {
		return errs.Invalid("parent_url", "", "is required to serve the parent's queries")
	}
	wait := time.Second
	for ctx.Err() == nil {
		err := l.serveOnce(ctx)
		if err == nil {
			wait = time.Second
			continue
		}
		if ctx.Err() != nil {
			break
		}
		l.cfg.Logger.Debug().Err(err).Str("server", l.cfg.ID).Msg("hierarchy query poll failed")
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, time.Minute)
	}
	return ctx.Err()
}

func (l *Link) serveOnce(ctx context.Context) error {
	q := url.Values{"wait": {strconv.Itoa(int(l.cfg.PollWait / time.Second))}}
	body, code, err := l.call(ctx, http.MethodGet, PathQueries, q, nil)
	if err != nil {
		return err
	}
	if code == http.StatusNoContent {
		return nil
	}
	qs, err := decodeQueries(body)
	if err != nil {
		return fmt.Errorf("hierarchyhttp: queries from the parent: %w", err)
	}
	n := l.localNode()
	for _, wq := range qs {
		a := wireAnswer{ID: wq.ID}
		if n == nil {
			a.Error = &wireError{Kind: "unavailable", Message: "no Node attached"}
		} else if page, err := n.ServeResults(ctx, wq.Query); err != nil {
			a.Error = &wireError{Kind: kindOf(err), Message: err.Error()}
		} else {
			a.Page = &page
		}
		b, err := json.Marshal(a)
		if err != nil {
			return err
		}
		if _, _, err := l.call(ctx, http.MethodPost, PathAnswer, nil, b); err != nil {
			return err
		}
	}
	return nil
}

// call sends a request to the parent and returns the answer's body (at
// most MaxBodyBytes) for 200 and 204. A refusal is ErrRefused (400, 413),
// httptransport.ErrUnauthenticated (401), ErrImpersonation (403) or
// hierarchy.ErrNotFound (404); anything else, the network included, is
// hierarchy.ErrUnreachable.
func (l *Link) call(ctx context.Context, method, path string, query url.Values, body []byte) ([]byte, int, error) {
	if l.parent == nil {
		return nil, 0, &hierarchy.UnknownServerError{Server: "parent of " + l.cfg.ID, As: "registered"}
	}
	u := *l.parent
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := l.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("hierarchyhttp: %s %s: %v: %w", method, path, err, hierarchy.ErrUnreachable)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("hierarchyhttp: %s %s: read: %v: %w", method, path, err, hierarchy.ErrUnreachable)
	}
	if len(b) > MaxBodyBytes {
		return nil, 0, fmt.Errorf("hierarchyhttp: %s %s: answer over %d bytes: %w", method, path, MaxBodyBytes, ErrRefused)
	}
	msg := strings.TrimSpace(string(b[:min(len(b), 512)]))
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent:
		return b, resp.StatusCode, nil
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return nil, resp.StatusCode, fmt.Errorf("%w: %s %s: %s", ErrRefused, method, path, msg)
	case http.StatusUnauthorized:
		return nil, resp.StatusCode, fmt.Errorf("hierarchyhttp: %s %s: %s (%w)", method, path, resp.Header.Get("Taskfleet-Auth-Error"), httptransport.ErrUnauthenticated)
	case http.StatusForbidden:
		return nil, resp.StatusCode, fmt.Errorf("%w: %s %s: %s", ErrImpersonation, method, path, msg)
	case http.StatusNotFound:
		return nil, resp.StatusCode, fmt.Errorf("hierarchyhttp: %s %s: %s: %w", method, path, msg, hierarchy.ErrNotFound)
	}
	return nil, resp.StatusCode, fmt.Errorf("hierarchyhttp: %s %s: %d %s: %w", method, path, resp.StatusCode, msg, hierarchy.ErrUnreachable)
}
